"""Tests for `apply_tree`, `bind_module`/`unbind_module`, `BoundApply` and `merge_configs`."""

import copy

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_trees_equal

import hax


def scale_apply(tree, global_config, x, *, offset=0.0):
    """y = x * scale + offset; counts calls in a buffer."""
    new = {**tree, "buffers": {**tree["buffers"], "calls": tree["buffers"]["calls"] + 1}}
    return new, x * tree["params"]["scale"] + offset


def scale_tree(scale=2.0):
    return {
        "params": {"scale": jnp.asarray(scale)},
        "buffers": {"calls": jnp.zeros((), jnp.int32)},
        "aux": {},
        "apply": scale_apply,
        "submodules": {},
    }


def model(seed=0):
    """Sequential(Linear(3, 4), Dropout(0.5), Linear(4, 2))."""
    with hax.rng_context(seed):
        return hax.nn.Sequential(hax.nn.Linear(3, 4), hax.nn.Dropout(0.5), hax.nn.Linear(4, 2))


# ---------------------------------------------------------------- apply_tree


def test_apply_tree_calls_the_nodes_apply():
    tree = scale_tree(3.0)
    snapshot = copy.deepcopy(tree)
    new, y = hax.apply_tree(tree, {}, jnp.arange(3.0), offset=1.0)
    np.testing.assert_allclose(y, np.arange(3.0) * 3.0 + 1.0)
    assert int(new["buffers"]["calls"]) == 1
    assert_trees_equal(tree, snapshot)  # pure: input not mutated


def test_apply_tree_passes_config():
    seen = []

    def apply(tree, cfg, x):
        seen.append(cfg)
        return tree, x

    cfg = {"train_mode": False}
    hax.apply_tree(hax.empty_tree(apply), cfg, 1)
    assert seen == [cfg] and seen[0] is cfg


# ---------------------------------------------------------------- bind_module


def test_bind_module_state_is_flat_dict_of_arrays():
    tree, config = model()
    state, apply = hax.bind_module(tree, config)
    assert set(state) == {
        "0/params/weight",
        "0/params/bias",
        "1/buffers/rng",
        "2/params/weight",
        "2/params/bias",
    }
    assert all(isinstance(v, jax.Array) for v in jax.tree_util.tree_leaves(state))
    assert state["0/params/weight"] is tree["submodules"]["0"]["params"]["weight"]
    assert state["0/params/weight"].shape == (4, 3)
    assert isinstance(apply, hax.BoundApply)
    assert apply.global_config == config


def test_bind_module_nested_pytree_params():
    tree = hax.fill_tree(
        {"params": {"w": {"a": jnp.ones(2), "b": [jnp.zeros(1)]}}, "apply": scale_apply}
    )
    state, apply = hax.bind_module(tree, {})
    assert set(state) == {"params/w"}
    assert_trees_equal(state["params/w"], tree["params"]["w"])
    assert_trees_equal(hax.unbind_module(state, apply), (tree, {}))


def test_bound_apply_matches_apply_tree():
    tree, config = model()
    x = jax.random.normal(jax.random.key(1), (5, 3))
    state, apply = hax.bind_module(tree, config)
    new_state, y = apply(state, x)
    new_tree, y_ref = hax.apply_tree(tree, config, x)
    np.testing.assert_array_equal(y, y_ref)
    assert_trees_equal(hax.unbind_module(new_state, apply)[0], new_tree)
    # the rng buffer advanced (train mode), params kept
    assert not np.array_equal(
        jax.random.key_data(new_state["1/buffers/rng"]), jax.random.key_data(state["1/buffers/rng"])
    )
    assert new_state["0/params/weight"] is state["0/params/weight"]


def test_bound_apply_kwargs():
    state, apply = hax.bind_module(scale_tree(2.0), {})
    new_state, y = apply(state, jnp.ones(2), offset=5.0)
    np.testing.assert_allclose(y, [7.0, 7.0])
    assert int(new_state["buffers/calls"]) == 1


def test_bound_apply_under_jit():
    tree, config = model()
    state, apply = hax.bind_module(tree, config)
    x = jax.random.normal(jax.random.key(1), (5, 3))
    s_eager, y_eager = apply(state, x)
    s_jit, y_jit = jax.jit(apply)(state, x)
    np.testing.assert_allclose(y_jit, y_eager, rtol=1e-6, atol=1e-6)
    assert jax.tree_util.tree_structure(s_jit) == jax.tree_util.tree_structure(s_eager)
    np.testing.assert_array_equal(
        jax.random.key_data(s_jit["1/buffers/rng"]), jax.random.key_data(s_eager["1/buffers/rng"])
    )


def test_bound_apply_under_vmap():
    tree, config = model()
    state, apply = hax.bind_module(tree, config)
    eval_apply = apply.bind_global_config({"train_mode": False})
    xs = jax.random.normal(jax.random.key(2), (6, 3))
    _, ys = jax.vmap(eval_apply, in_axes=(None, 0), out_axes=(None, 0))(state, xs)
    assert ys.shape == (6, 2)
    for i in range(6):
        _, yi = eval_apply(state, xs[i])
        np.testing.assert_allclose(ys[i], yi, rtol=1e-5, atol=1e-6)


def test_bound_apply_under_grad():
    tree, config = hax.nn.Linear(3, 2, rng=0)
    state, apply = hax.bind_module(tree, config)
    x = jax.random.normal(jax.random.key(1), (4, 3))

    def loss(s):
        return jnp.sum(apply(s, x)[1])

    grads = jax.grad(loss)(state)
    assert set(grads) == set(state)
    # d/dW sum(x @ W.T + b) = sum over batch of x, for every output row
    np.testing.assert_allclose(grads["params/weight"], np.tile(x.sum(0), (2, 1)), rtol=1e-5)
    np.testing.assert_allclose(grads["params/bias"], np.full(2, 4.0), rtol=1e-6)


def test_grad_matches_finite_differences_float64():
    with jax.enable_x64(True):
        with hax.rng_context(0):
            tree, config = hax.nn.Sequential(
                hax.nn.Linear(3, 4, dtype=jnp.float64), hax.nn.Linear(4, 2, dtype=jnp.float64)
            )
        state, apply = hax.bind_module(tree, config)
        assert state["0/params/weight"].dtype == jnp.float64
        x = jax.random.normal(jax.random.key(3), (5, 3), jnp.float64)

        def loss(s):
            y = apply(s, x)[1]
            return jnp.sum(jnp.sin(y) * y)

        grads = jax.jit(jax.grad(loss))(state)
        assert all(g.dtype == jnp.float64 for g in grads.values())
        flat, unravel = jax.flatten_util.ravel_pytree(state)
        flat_grads, _ = jax.flatten_util.ravel_pytree(grads)
        eps = 1e-6
        steps = eps * jnp.eye(flat.size, dtype=jnp.float64)  # every one-hot perturbation
        f = jax.vmap(lambda v: loss(unravel(v)))
        numeric = jax.jit(lambda: (f(flat + steps) - f(flat - steps)) / (2 * eps))()
        assert np.abs(np.asarray(numeric)).min() > 0  # every parameter matters
        np.testing.assert_allclose(flat_grads, numeric, rtol=1e-6, atol=1e-8)


def test_bind_global_config_switches_dropout():
    tree, config = hax.nn.Dropout(0.5, rng=0)
    state, train_apply = hax.bind_module(tree, config)
    assert train_apply.global_config == {"train_mode": True}
    eval_apply = train_apply.bind_global_config({"train_mode": False})
    assert eval_apply.global_config == {"train_mode": False}
    assert train_apply.global_config == {"train_mode": True}  # original unchanged
    x = jnp.ones(1000)
    _, y_eval = eval_apply(state, x)
    np.testing.assert_array_equal(y_eval, x)
    _, y_train = train_apply(state, x)
    assert 0 < int(jnp.sum(y_train == 0)) < 1000
    assert eval_apply != train_apply


# ---------------------------------------------------------------- unbind_module


def test_unbind_module_exact_inverse():
    tree, config = model()
    state, apply = hax.bind_module(tree, config)
    back_tree, back_config = hax.unbind_module(state, apply)
    assert_trees_equal((back_tree, back_config), (tree, config))
    assert back_tree["submodules"]["0"]["params"]["weight"] is state["0/params/weight"]
    assert back_tree["submodules"]["1"]["apply"] is hax.nn.dropout_apply
    assert hax.is_structure_tree(back_tree)


def test_unbind_after_update_holds_new_values():
    tree, config = hax.nn.Linear(2, 2, rng=0)
    state, apply = hax.bind_module(tree, config)
    state = {k: v * 0 for k, v in state.items()}
    new_tree, _ = hax.unbind_module(state, apply)
    assert not np.any(np.asarray(new_tree["params"]["weight"]))
    assert new_tree["aux"] == tree["aux"]
    assert new_tree["apply"] is tree["apply"]


def test_state_with_missing_key_raises():
    tree, config = model()
    state, apply = hax.bind_module(tree, config)
    state.pop("2/params/bias")
    with pytest.raises(ValueError, match="2/params/bias"):
        apply(state, jnp.ones(3))
    with pytest.raises(ValueError, match="2/params/bias"):
        hax.unbind_module(state, apply)


def test_state_with_extra_key_raises():
    tree, config = model()
    state, apply = hax.bind_module(tree, config)
    state["0/params/extra"] = jnp.ones(1)
    with pytest.raises(ValueError, match="0/params/extra"):
        apply(state, jnp.ones(3))
    with pytest.raises(ValueError, match="0/params/extra"):
        hax.unbind_module(state, apply)


# ---------------------------------------------------------------- BoundApply equality


def test_bound_apply_equal_for_equal_skeletons():
    _, a = hax.bind_module(*hax.nn.Linear(3, 2, rng=0))
    _, b = hax.bind_module(*hax.nn.Linear(3, 2, rng=1))
    assert a is not b
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1


@pytest.mark.parametrize(
    "other",
    [
        lambda: hax.nn.Linear(3, 5, rng=0),  # aux differs
        lambda: hax.nn.Linear(3, 2, bias=False, rng=0),  # aux differs
        lambda: (hax.nn.Linear(3, 2, rng=0)[0], {"train_mode": True}),  # config differs
        lambda: ({**hax.nn.Linear(3, 2, rng=0)[0], "apply": scale_apply}, {}),  # apply differs
        lambda: hax.nn.Sequential(hax.nn.Linear(3, 2, rng=0)),  # structure differs
    ],
)
def test_bound_apply_unequal(other):
    _, a = hax.bind_module(*hax.nn.Linear(3, 2, rng=0))
    _, b = hax.bind_module(*other())
    assert a != b


def test_bound_apply_config_1_vs_true_unequal():
    tree, _ = hax.nn.Linear(3, 2, rng=0)
    _, a = hax.bind_module(tree, {"k": 1})
    _, b = hax.bind_module(tree, {"k": True})
    assert a != b


def test_bound_apply_as_static_argument_does_not_retrace():
    traces = []

    def run(apply, state, x):
        traces.append(1)
        return apply(state, x)[1]

    jitted = jax.jit(run, static_argnums=0)
    x = jnp.ones((2, 3))
    for seed in (0, 1):
        state, apply = hax.bind_module(*hax.nn.Linear(3, 2, rng=seed))
        y = jitted(apply, state, x)
        np.testing.assert_allclose(y, apply(state, x)[1], rtol=1e-6)
    assert len(traces) == 1


def test_bound_apply_unequal_for_different_param_names():
    """Regression: BoundApply equality ignored the state slots (07817e0)."""
    a_tree = hax.fill_tree({"params": {"a": jnp.ones(2)}, "apply": scale_apply})
    b_tree = hax.fill_tree({"params": {"b": jnp.ones(2)}, "apply": scale_apply})
    _, a = hax.bind_module(a_tree, {})
    state_b, b = hax.bind_module(b_tree, {})
    with pytest.raises(ValueError):
        a(state_b, jnp.ones(2))  # not interchangeable ...
    assert a != b  # ... so they must not compare equal


# ---------------------------------------------------------------- merge_configs


def test_merge_configs_merges():
    a, b = {"train_mode": True}, {"dtype": "float32", "train_mode": True}
    merged = hax.merge_configs(a, b, {})
    assert merged == {"train_mode": True, "dtype": "float32"}
    assert a == {"train_mode": True}  # inputs not mutated
    assert b == {"dtype": "float32", "train_mode": True}
    assert merged is not a
    assert hax.merge_configs() == {}


def test_merge_configs_conflict_names_key_and_values():
    with pytest.raises(ValueError) as info:
        hax.merge_configs({"train_mode": True}, {"x": 1}, {"train_mode": False})
    msg = str(info.value)
    assert "train_mode" in msg and "True" in msg and "False" in msg
    with pytest.raises(ValueError, match=r"True vs False \(a vs c\)"):
        hax.merge_configs(
            {"train_mode": True}, {"x": 1}, {"train_mode": False}, names=["a", "b", "c"]
        )


@pytest.mark.parametrize(("a", "b"), [(1, True), (0, False), (1, 1.0), ("1", 1), (None, 0)])
def test_merge_configs_type_conflict(a, b):
    with pytest.raises(ValueError, match="k"):
        hax.merge_configs({"k": a}, {"k": b})
    with pytest.raises(ValueError, match="k"):
        hax.merge_configs({"k": b}, {"k": a})


def test_merge_configs_equal_nested_values():
    merged = hax.merge_configs({"opt": {"lr": 0.1}, "l": [1, 2]}, {"opt": {"lr": 0.1}, "l": [1, 2]})
    assert merged == {"opt": {"lr": 0.1}, "l": [1, 2]}
    with pytest.raises(ValueError, match="opt"):
        hax.merge_configs({"opt": {"lr": 0.1}}, {"opt": {"lr": 0.2}})


def test_merge_configs_nested_type_conflict():
    """Regression: nested values were compared with == only (07817e0)."""
    with pytest.raises(ValueError):
        hax.merge_configs({"k": [1]}, {"k": [True]})
