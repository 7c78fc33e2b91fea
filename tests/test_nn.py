"""Tests for `hax.nn`: Linear, Sequential, Dropout, with PyTorch as the reference."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import hax
from hax.interop import from_torch

# ---------------------------------------------------------------- Linear


def test_linear_shapes_and_layout():
    tree, config = hax.nn.Linear(3, 5, rng=0)
    assert config == {}
    assert tree["apply"] is hax.nn.linear_apply
    assert tree["params"]["weight"].shape == (5, 3)
    assert tree["params"]["bias"].shape == (5,)
    assert tree["params"]["weight"].dtype == jnp.float32
    assert tree["aux"] == {"in_features": 3, "out_features": 5, "bias": True}
    assert tree["buffers"] == {} and tree["submodules"] == {}
    assert hax.is_structure_tree(tree)
    for shape in [(3,), (4, 3), (2, 6, 3)]:
        _, y = hax.apply_tree(tree, config, jnp.ones(shape))
        assert y.shape == (*shape[:-1], 5)


def test_linear_without_bias():
    tree, config = hax.nn.Linear(3, 2, bias=False, rng=0)
    assert set(tree["params"]) == {"weight"}
    assert tree["aux"]["bias"] is False
    x = jax.random.normal(jax.random.key(1), (4, 3))
    _, y = hax.apply_tree(tree, config, x)
    np.testing.assert_allclose(y, np.asarray(x) @ np.asarray(tree["params"]["weight"]).T, rtol=1e-5)


def test_linear_dtype():
    tree, _ = hax.nn.Linear(3, 2, rng=0, dtype=jnp.bfloat16)
    assert tree["params"]["weight"].dtype == jnp.bfloat16
    assert tree["params"]["bias"].dtype == jnp.bfloat16


def test_linear_default_init_pytorch_bound():
    tree, _ = hax.nn.Linear(512, 512, rng=0)
    w = np.asarray(tree["params"]["weight"], np.float64)
    bound = 1 / math.sqrt(512)
    assert np.abs(w).max() <= bound
    assert np.abs(w).max() > 0.99 * bound  # fills the interval
    assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.02
    assert abs(w.mean()) < 0.01 * bound
    # roughly uniform: ten equal bins each hold about a tenth of the values
    counts, _ = np.histogram(w, bins=10, range=(-bound, bound))
    np.testing.assert_allclose(counts / w.size, 0.1, atol=0.005)


def test_linear_init_bound_uses_in_features():
    tree, _ = hax.nn.Linear(400, 25, rng=1)
    bound = 1 / math.sqrt(400)  # 0.05, while 1/sqrt(out_features) would be 0.2
    w = np.asarray(tree["params"]["weight"])
    b = np.asarray(tree["params"]["bias"])
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert np.abs(w).max() > 0.95 * bound
    assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.03
    # bias and weight are drawn independently
    assert not np.allclose(b, w[:, 0])


def to_torch_linear(tree):
    in_features, out_features = tree["aux"]["in_features"], tree["aux"]["out_features"]
    layer = torch.nn.Linear(in_features, out_features, bias=tree["aux"]["bias"])
    state = {k: torch.from_numpy(np.array(v)) for k, v in tree["params"].items()}
    layer.load_state_dict(state)
    return layer


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(7,), (5, 7), (2, 3, 7)])
def test_linear_matches_torch(bias, shape):
    tree, config = hax.nn.Linear(7, 4, bias=bias, rng=2)
    layer = to_torch_linear(tree)
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    _, y = hax.apply_tree(tree, config, jnp.asarray(x))
    with torch.no_grad():
        y_torch = layer(torch.from_numpy(x)).numpy()
    assert y.shape == y_torch.shape
    np.testing.assert_allclose(np.asarray(y), y_torch, atol=1e-5, rtol=1e-5)


def test_torch_state_dict_maps_onto_linear():
    torch.manual_seed(0)
    layer = torch.nn.Linear(6, 3)
    tree, config = hax.nn.Linear(6, 3, rng=0)
    tree = from_torch(layer, tree)  # strict: the names and shapes match, no reshaping needed
    x = np.random.default_rng(1).normal(size=(4, 6)).astype(np.float32)
    _, y = hax.apply_tree(tree, config, jnp.asarray(x))
    with torch.no_grad():
        np.testing.assert_allclose(np.asarray(y), layer(torch.from_numpy(x)).numpy(), atol=1e-5)


# ---------------------------------------------------------------- Sequential


def test_sequential_names_and_threads_input():
    with hax.rng_context(0):
        a, b, c = hax.nn.Linear(3, 4), hax.nn.Linear(4, 5), hax.nn.Linear(5, 2)
    tree, config = hax.nn.Sequential(a, b, c)
    assert list(tree["submodules"]) == ["0", "1", "2"]
    assert tree["submodules"]["1"] is b[0]
    assert tree["apply"] is hax.nn.sequential_apply
    assert tree["params"] == {} and tree["buffers"] == {}
    assert hax.is_structure_tree(tree)
    x = jax.random.normal(jax.random.key(1), (6, 3))
    _, y = hax.apply_tree(tree, config, x)
    expected = x
    for module in (a, b, c):
        _, expected = hax.apply_tree(*module, expected)
    np.testing.assert_allclose(y, expected, rtol=1e-6)


def test_sequential_order_survives_jax_sorting_dict_keys():
    """JAX rebuilds dicts with sorted keys ("10" before "2"): the order comes from the
    numeric names, so 12 layers run in the same order after a pass through jit."""
    with hax.rng_context(0):
        tree, config = hax.nn.Sequential(*[hax.nn.Linear(3, 3) for _ in range(12)])
    x = jnp.ones((1, 3))
    _, expected = hax.apply_tree(tree, config, x)
    passed = hax.jit(lambda t: t)(tree)
    assert list(passed["submodules"])[:3] == ["0", "1", "10"]  # what JAX does
    np.testing.assert_array_equal(hax.apply_tree(passed, config, x)[1], expected)
    bad = {**tree, "submodules": {"a": tree["submodules"]["0"]}}
    with pytest.raises(ValueError, match="numeric names"):
        hax.apply_tree(bad, config, x)


def test_sequential_matches_torch():
    with hax.rng_context(0):
        tree, config = hax.nn.Sequential(hax.nn.Linear(3, 4), hax.nn.Linear(4, 2))
    torch_model = torch.nn.Sequential(
        to_torch_linear(tree["submodules"]["0"]), to_torch_linear(tree["submodules"]["1"])
    )
    # the names line up with a torch Sequential's state_dict
    hax_names = {name for name, _ in hax.named_leaves(tree)}
    assert hax_names == {k.replace(".", "/params/") for k in torch_model.state_dict()}
    x = np.random.default_rng(2).normal(size=(5, 3)).astype(np.float32)
    _, y = hax.apply_tree(tree, config, jnp.asarray(x))
    with torch.no_grad():
        np.testing.assert_allclose(
            np.asarray(y), torch_model(torch.from_numpy(x)).numpy(), atol=1e-5
        )


def test_sequential_threads_child_state():
    with hax.rng_context(0):
        tree, config = hax.nn.Sequential(hax.nn.Dropout(0.5), hax.nn.Dropout(0.5))
    new_tree, _ = hax.apply_tree(tree, config, jnp.ones(10))
    for name in ("0", "1"):
        old = jax.random.key_data(tree["submodules"][name]["buffers"]["rng"])
        new = jax.random.key_data(new_tree["submodules"][name]["buffers"]["rng"])
        assert not np.array_equal(old, new), name
    assert list(new_tree["submodules"]) == ["0", "1"]


def test_sequential_merges_configs_and_accepts_bare_trees():
    with hax.rng_context(0):
        tree, config = hax.nn.Sequential(
            hax.nn.Linear(2, 2), hax.nn.Dropout(0.1), {"apply": identity_apply}
        )
    assert config == {"train_mode": True}
    assert hax.is_structure_tree(tree)
    assert tree["submodules"]["2"]["apply"] is identity_apply
    assert hax.nn.Sequential() == (
        {
            "params": {},
            "buffers": {},
            "aux": {},
            "apply": hax.nn.sequential_apply,
            "submodules": {},
        },
        {},
    )


def identity_apply(tree, global_config, x):
    return tree, x


def test_sequential_config_conflict():
    drop_tree, _ = hax.nn.Dropout(0.1, rng=0)
    with pytest.raises(ValueError, match=r"train_mode.*\(submodule '0' vs submodule '1'\)"):
        hax.nn.Sequential(hax.nn.Dropout(0.1, rng=1), (drop_tree, {"train_mode": False}))


@pytest.mark.wrong_types
@pytest.mark.parametrize("bad", [3, "linear", None, [{}, {}], jnp.ones(2)])
def test_sequential_rejects_non_modules(bad):
    with pytest.raises(TypeError, match="argument 1"):
        hax.nn.Sequential(hax.nn.Linear(2, 2, rng=0), bad)


@pytest.mark.wrong_types
@pytest.mark.parametrize("bad", [("a", {}), (1, 2), (1, 2, 3)])
def test_sequential_rejects_tuples_that_are_not_modules(bad):
    """Regression: any tuple was unpacked as (tree, config) unchecked (07817e0)."""
    with pytest.raises(TypeError, match="argument 0"):
        hax.nn.Sequential(bad)


# ---------------------------------------------------------------- Dropout


def run_dropout(p, x, train_mode=True, seed=0):
    tree, _ = hax.nn.Dropout(p, rng=seed)
    return hax.apply_tree(tree, {"train_mode": train_mode}, x)


def test_dropout_module():
    tree, config = hax.nn.Dropout(0.3, rng=0)
    assert config == {"train_mode": True}
    assert tree["aux"] == {"p": 0.3}
    assert tree["params"] == {}
    assert jnp.issubdtype(tree["buffers"]["rng"].dtype, jax.dtypes.prng_key)
    assert hax.is_structure_tree(tree)
    assert hax.nn.Dropout(rng=0)[0]["aux"]["p"] == 0.5  # PyTorch's default


def test_dropout_takes_torch_arguments():
    # torch.nn.Dropout(p, inplace): the same call builds a HAX Dropout
    torch.nn.Dropout(0.2, True)
    tree, _ = hax.nn.Dropout(0.2, True, rng=0)
    x = jnp.arange(1.0, 7.0)
    _, y = hax.apply_tree(tree, {"train_mode": True}, x)
    _, y_default = hax.apply_tree(hax.nn.Dropout(0.2, rng=0)[0], {"train_mode": True}, x)
    np.testing.assert_array_equal(y, y_default)


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_dropout_eval_is_identity(p):
    x = jax.random.normal(jax.random.key(1), (4, 5))
    tree, _ = hax.nn.Dropout(p, rng=0)
    new_tree, y = hax.apply_tree(tree, {"train_mode": False}, x)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(
        jax.random.key_data(new_tree["buffers"]["rng"]), jax.random.key_data(tree["buffers"]["rng"])
    )


N = 200_000


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_train_statistics_match_torch(p):
    _, y = run_dropout(p, jnp.ones(N))
    y = np.asarray(y)
    torch.manual_seed(0)
    y_torch = torch.nn.Dropout(p)(torch.ones(N)).numpy()
    tolerance = 4 * math.sqrt(p * (1 - p) / N)
    scale = np.float32(1 / (1 - p))
    for name, out in (("hax", y), ("torch", y_torch)):
        assert out.shape == (N,) and out.dtype == np.float32, name
        assert abs((out == 0).mean() - p) < tolerance, name
        np.testing.assert_array_equal(out[out != 0], scale, err_msg=name)
        # E[y] = 1 with std sqrt(p / (1 - p)) per element
        assert abs(out.mean() - 1) < 4 * math.sqrt(p / (1 - p) / N), name


def test_dropout_scales_inputs():
    x = jax.random.normal(jax.random.key(3), (1000,))
    _, y = run_dropout(0.25, x)
    kept = np.asarray(y) != 0
    assert 0 < kept.sum() < 1000
    np.testing.assert_allclose(np.asarray(y)[kept], np.asarray(x)[kept] / 0.75, rtol=1e-6)


def test_dropout_p0_identity_and_p1_zeros():
    x = jax.random.normal(jax.random.key(1), (100,))
    np.testing.assert_array_equal(run_dropout(0.0, x)[1], x)
    _, zeros = run_dropout(1.0, x)
    assert zeros.shape == x.shape and zeros.dtype == x.dtype
    assert not np.any(np.asarray(zeros))


def test_dropout_rng_advances_and_masks_differ():
    tree, config = hax.nn.Dropout(0.5, rng=0)
    x = jnp.ones(1000)
    keys, outs = [jax.random.key_data(tree["buffers"]["rng"])], []
    for _ in range(3):
        tree, y = hax.apply_tree(tree, config, x)
        keys.append(jax.random.key_data(tree["buffers"]["rng"]))
        outs.append(np.asarray(y))
    for i in range(3):
        assert not np.array_equal(keys[i], keys[i + 1])
        assert not np.array_equal(outs[i], outs[(i + 1) % 3])
    # deterministic given the key
    np.testing.assert_array_equal(run_dropout(0.5, x, seed=0)[1], outs[0])


def test_dropout_train_under_jit_matches_eager():
    tree, config = hax.nn.Dropout(0.5, rng=0)
    x = jnp.ones(64)
    new_eager, y_eager = hax.apply_tree(tree, config, x)
    state, apply = hax.bind_module(tree, config)
    new_state, y_jit = jax.jit(apply)(state, x)
    np.testing.assert_array_equal(y_jit, y_eager)
    np.testing.assert_array_equal(
        jax.random.key_data(new_state["buffers/rng"]),
        jax.random.key_data(new_eager["buffers"]["rng"]),
    )


@pytest.mark.debug_off
def test_dropout_missing_train_mode():
    tree, _ = hax.nn.Dropout(0.5, rng=0)
    with pytest.raises(KeyError, match="train_mode"):
        hax.apply_tree(tree, {}, jnp.ones(3))
    with pytest.raises(TypeError, match="train_mode"):
        hax.apply_tree(tree, {"train_mode": 1}, jnp.ones(3))


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_dropout_invalid_p(p):
    with pytest.raises(ValueError, match="p"):
        hax.nn.Dropout(p, rng=0)
