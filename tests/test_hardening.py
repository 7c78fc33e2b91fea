"""Public entry points under misuse: clear errors, no silent wrong results, deep trees,
and an interpreter that still works afterwards."""

import threading

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import hax
from hax import nn


def passthrough_apply(tree, global_config, x):
    """`x` unchanged; no layer spec, so a node may hold any params."""
    return tree, x


def _chain(depth):
    node = hax.fill_tree({"params": {"w": jnp.ones(2)}, "apply": passthrough_apply})
    for _ in range(depth):
        node = {**hax.empty_tree(passthrough_apply), "submodules": {"c": node}}
    return node


def test_loss_scale_stops_growing_at_max_scale_and_steps_keep_applying():
    optimizer = hax.optim.dynamic_loss_scale(optax.sgd(0.1), period=1)
    params = {"w": jnp.ones(3)}
    state = optimizer.init(params)
    for _ in range(200):  # float32: gradients never overflow, the scale doubles each step
        updates, state = optimizer.update({"w": jnp.ones(3)}, state, params)
    assert float(state.scale) == 2.0**24 and bool(state.finite)
    np.testing.assert_allclose(updates["w"], -0.1 * np.ones(3) / 2.0**24, rtol=1e-6)
    with pytest.raises(ValueError, match="max_scale < inf"):
        hax.optim.dynamic_loss_scale(optax.sgd(0.1), max_scale=float("inf"))
    with pytest.raises(ValueError, match="factor > 1"):
        hax.optim.dynamic_loss_scale(optax.sgd(0.1), factor=1.0)


@pytest.mark.debug_off
@pytest.mark.wrong_types
def test_running_something_that_is_not_a_tree_names_the_mistake():
    tree, config = nn.Linear(2, 3, rng=0)
    with pytest.raises(TypeError, match="look swapped: the order is \\(tree, config\\)"):
        hax.apply_tree(config, tree, jnp.ones(2))
    with pytest.raises(TypeError, match=r"bind_module: expected a structure tree .* found a dict"):
        hax.bind_module({"train_mode": True}, {})
    with pytest.raises(TypeError, match="bind_module: expected the global config"):
        hax.bind_module(tree, None)
    state, apply = hax.bind_module(tree, config)
    with pytest.raises(TypeError, match=r"the order is unbind_module\(state, apply\)"):
        hax.unbind_module(apply, state)
    with pytest.raises(TypeError, match="merge_configs: config 1 is a NoneType"):
        hax.merge_configs({}, None)


@pytest.mark.wrong_types
@pytest.mark.parametrize("rng", [0.5, "0", True, np.ones(3, np.float32), [0, 1]])
def test_bad_seeds_are_type_errors(rng):
    with pytest.raises(TypeError, match="a PRNG key or an int seed was expected"):
        nn.Linear(2, 2, rng=rng)
    with pytest.raises(TypeError, match="a PRNG key or an int seed was expected"):
        with hax.rng_context(rng):
            pass


def test_good_seeds_of_every_kind():
    weights = [
        nn.Linear(2, 2, rng=seed)[0]["params"]["weight"]
        for seed in (3, np.int64(3), np.array(3), jax.random.key(3))
    ]
    for w in weights[1:]:
        np.testing.assert_array_equal(w, weights[0])
    nn.Linear(2, 2, rng=jax.random.PRNGKey(3))  # a legacy uint32[2] key


def test_debug_mode_accepts_a_tree_with_several_wrapped_nodes():
    def halve(inner, tree, config, *args):
        tree, out = inner(tree, config, *args)
        return tree, out * 0.5

    with hax.rng_context(0):
        tree, config = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2))
    tree = hax.surgery.wrap(tree, ["0", "1", "2"], halve)
    expected = hax.apply_tree(tree, config, jnp.ones(2))[1]
    with hax.debug():
        np.testing.assert_allclose(hax.apply_tree(tree, config, jnp.ones(2))[1], expected)


@pytest.mark.debug_off
def test_debug_mode_is_per_thread():
    seen = {}
    started, release = threading.Event(), threading.Event()

    def other():
        started.set()
        release.wait(10)
        seen["other"] = hax.debug_enabled()

    thread = threading.Thread(target=other)
    thread.start()
    started.wait(10)
    with hax.debug():
        release.set()
        thread.join(10)
        seen["here"] = hax.debug_enabled()
    assert seen == {"other": False, "here": True} and not hax.debug_enabled()


def test_from_torch_refuses_what_it_would_load_wrongly():
    tree, _ = nn.BatchNorm1d(3)
    state = torch.nn.BatchNorm1d(3).state_dict()
    with pytest.raises(
        ValueError, match=r"values from 1099511627776 .* do not fit the leaf's int32"
    ):
        hax.interop.from_torch({**state, "num_batches_tracked": torch.tensor(2**40)}, tree)
    with pytest.raises(ValueError, match="the key is an int, not a str"):
        hax.interop.from_torch({**state, 3: torch.ones(1)}, tree)
    with pytest.raises(ValueError, match="params/weight <- torch 'weight': a meta tensor"):
        hax.interop.from_torch(torch.nn.BatchNorm1d(3, device="meta"), tree)
    sparse = {**state, "weight": torch.ones(3).to_sparse()}
    with pytest.raises(ValueError, match=r"torch 'weight': a torch\.sparse_coo tensor"):
        hax.interop.from_torch(sparse, tree)


def test_deep_trees_work_in_every_tree_function():
    tree = _chain(3000)
    filled = hax.fill_tree(tree)
    mapped = hax.structure_tree_map(lambda n, path: n, filled)
    params, rest = hax.split_tree(mapped, ["params"])
    merged = hax.merge_trees(params, rest)
    state, apply = hax.bind_module(merged, {})
    assert list(state) == ["/".join(["c"] * 3000) + "/params/w"]
    back, _ = hax.unbind_module(state, apply)
    assert hax.get_subtree(back, ("c",) * 3000)["params"]["w"].shape == (2,)
    deeper = hax.set_subtree(back, ("c",) * 3000, _chain(0))
    assert hax.is_structure_tree(deeper)
    new_state, _ = jax.jit(apply)(state, jnp.ones(1))  # the bound state is flat: any depth
    assert list(new_state) == list(state)
    jnp.ones(2).block_until_ready()


def test_hax_jit_refuses_a_tree_deeper_than_jax_flattens_and_says_what_to_do():
    tree = _chain(1000)
    with pytest.raises(ValueError, match=r"nest 2004 containers deep.*hax\.bind_module"):
        hax.jit(lambda t: t)(tree)
    jnp.ones(2).block_until_ready()  # the interpreter still works
    state, apply = hax.bind_module(tree, {})
    jax.jit(apply)(state, jnp.ones(1))
