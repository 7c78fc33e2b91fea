"""Tests for `Identity`, `Flatten`, `Unflatten`, `Bilinear` (`hax.nn._basic`) and `Embedding`
(`hax.nn._embedding`), with PyTorch as the reference."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import hax
from hax.nn._basic import (
    Bilinear,
    Flatten,
    Identity,
    Unflatten,
    bilinear_apply,
    flatten_apply,
    identity_apply,
    unflatten_apply,
)
from hax.nn._embedding import Embedding, embedding_apply
from hax.nn._sequential import Sequential

RNG = np.random.default_rng(0)


def randn(*shape):
    return np.asarray(RNG.normal(size=shape), np.float32)


def problems(tree, config=None):
    with pytest.raises(hax.ValidationError) as info:
        hax.validate(tree, config)
    return [(p.path, p.key) for p in info.value.errors], info.value


# ---------------------------------------------------------------- Identity


def test_identity_ignores_arguments_and_returns_input():
    tree, config = Identity(3, "anything", rng=0, scale=2.0)
    assert config == {}
    assert tree == {
        "params": {},
        "buffers": {},
        "aux": {},
        "apply": identity_apply,
        "submodules": {},
    }
    assert Identity()[0] == tree
    x = jnp.arange(5.0)
    new_tree, y = hax.apply_tree(tree, config, x)
    assert y is x and new_tree is tree
    obj = {"not": ["an array"]}
    assert hax.apply_tree(tree, config, obj)[1] is obj
    with hax.debug():
        assert hax.apply_tree(tree, config, x)[1] is x


# ---------------------------------------------------------------- Flatten

FLATTEN_CASES = [
    ((), (2, 4, 3, 2)),
    ((0, -1), (2, 4, 3, 2)),
    ((1, 2), (2, 4, 3, 2)),
    ((-3, -2), (2, 4, 3, 2)),
    ((2, 2), (2, 4, 3, 2)),
    ((0, 0), (6, 4)),
    ((0,), (6, 4)),
    ((), (6, 4)),
    ((0,), (4,)),
    ((0, -1), ()),
]


@pytest.mark.parametrize(("args", "shape"), FLATTEN_CASES, ids=str)
def test_flatten_matches_torch(args, shape):
    tree, config = Flatten(*args)
    x = randn(*shape)
    _, y = hax.apply_tree(tree, config, jnp.asarray(x))
    expected = torch.nn.Flatten(*args)(torch.from_numpy(x)).numpy()
    assert y.shape == expected.shape
    np.testing.assert_array_equal(np.asarray(y), expected)


def test_flatten_layout_and_gradient():
    tree, config = Flatten()
    assert config == {}
    assert tree["apply"] is flatten_apply
    assert tree["aux"] == {"start_dim": 1, "end_dim": -1}
    assert Flatten(0, 2)[0]["aux"] == {"start_dim": 0, "end_dim": 2}
    x = jnp.asarray(randn(2, 4, 3, 2))
    y, vjp = jax.vjp(lambda v: hax.apply_tree(tree, config, v)[1], x)
    assert y.shape == (2, 24)
    cot = jnp.asarray(randn(2, 24))
    np.testing.assert_array_equal(vjp(cot)[0], cot.reshape(x.shape))
    with hax.debug():
        np.testing.assert_array_equal(hax.apply_tree(tree, config, x)[1], y)


@pytest.mark.parametrize(
    ("args", "shape", "match"),
    [
        ((2, 1), (2, 3, 4), "comes after"),
        ((1, -1), (3,), "out of range"),
        ((0, 3), (2, 3), "end_dim=3 is out of range"),
        ((-4, -1), (2, 3, 4), "start_dim=-4 is out of range"),
    ],
)
def test_flatten_invalid_dims_raise_like_torch(args, shape, match):
    with pytest.raises((RuntimeError, IndexError)):
        torch.nn.Flatten(*args)(torch.ones(shape))
    with pytest.raises(ValueError, match=match):
        hax.apply_tree(*Flatten(*args), jnp.ones(shape))


def test_flatten_validate_aux():
    tree, _ = Flatten()
    tree["aux"]["start_dim"] = 1.0
    assert problems(tree)[0] == [("", "aux.start_dim")]


# ---------------------------------------------------------------- Unflatten

UNFLATTEN_CASES = [
    ((1, (2, 3)), (4, 6)),
    ((1, [3, 2]), (4, 6, 5)),  # a list, as torch takes
    ((-1, (2, -1)), (4, 6)),  # one size inferred
    ((0, (-1, 1, 2)), (4, 3)),
    ((-2, (1, 6, 1)), (4, 6, 5)),
    ((2, (5,)), (4, 6, 5)),
    ((0, (2, 2)), (4,)),
]


@pytest.mark.parametrize(("args", "shape"), UNFLATTEN_CASES, ids=str)
def test_unflatten_matches_torch_values_and_gradients(args, shape):
    tree, config = Unflatten(*args)
    x = randn(*shape)
    y, vjp = jax.vjp(lambda v: hax.apply_tree(tree, config, v)[1], jnp.asarray(x))
    x_t = torch.from_numpy(x).requires_grad_(True)
    y_t = torch.nn.Unflatten(*args)(x_t)
    cot = randn(*y_t.shape)
    y_t.backward(torch.from_numpy(cot))
    assert y.shape == tuple(y_t.shape)
    np.testing.assert_array_equal(np.asarray(y), y_t.detach().numpy())
    np.testing.assert_array_equal(np.asarray(vjp(jnp.asarray(cot))[0]), x_t.grad.numpy())


def test_unflatten_layout_inverts_flatten_and_converts():
    tree, config = Unflatten(1, [2, 3, 4])
    assert config == {} and tree["apply"] is unflatten_apply
    assert tree["aux"] == {"dim": 1, "unflattened_size": (2, 3, 4)}
    x = jnp.asarray(randn(5, 2, 3, 4))
    flat = hax.apply_tree(*Flatten(), x)[1]
    np.testing.assert_array_equal(hax.apply_tree(tree, config, flat)[1], x)
    with hax.debug():
        np.testing.assert_array_equal(hax.apply_tree(tree, config, flat)[1], x)
    model = torch.nn.Sequential(torch.nn.Linear(3, 12), torch.nn.Unflatten(1, (3, 4)))
    converted, config = hax.interop.convert(model)
    assert converted["submodules"]["1"]["aux"] == {"dim": 1, "unflattened_size": (3, 4)}
    x = randn(2, 3)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    y = hax.apply_tree(converted, config, jnp.asarray(x))[1]
    # torch's init is unseeded: an output near 0 needs an absolute tolerance too
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("args", "shape", "match"),
    [
        ((1, (4, 2)), (3, 6), r"\(4, 2\) does not multiply up to the size 6 of dim 1"),
        ((1, (4, -1)), (3, 6), r"\(4, -1\) does not multiply up to the size 6"),
        ((1, (0, -1)), (3, 0), r"\(0, -1\) does not multiply up"),
        ((2, (3, 2)), (3, 6), "dim=2 is out of range for an input with 2"),
    ],
)
def test_unflatten_invalid_sizes_raise_like_torch(args, shape, match):
    with pytest.raises((RuntimeError, IndexError)):
        torch.nn.Unflatten(*args)(torch.ones(shape))
    with pytest.raises(ValueError, match=match):
        hax.apply_tree(*Unflatten(*args), jnp.ones(shape))


@pytest.mark.wrong_types
def test_unflatten_constructor_errors():
    with pytest.raises(TypeError, match="unflattened_size must be a tuple or list of ints"):
        Unflatten(1, 6)
    with pytest.raises(TypeError, match="unflattened_size must be a tuple or list of ints"):
        Unflatten(1, (2.0, 3))
    with pytest.raises(TypeError, match="dim must be an int"):
        Unflatten("features", (("C", 2), ("H", 3)))
    with pytest.raises(ValueError, match="at most one -1"):
        Unflatten(1, (-1, -1))


# ---------------------------------------------------------------- Bilinear


def test_bilinear_layout():
    tree, config = Bilinear(4, 3, 2, rng=0)
    assert config == {}
    assert tree["apply"] is bilinear_apply
    assert tree["params"]["weight"].shape == (2, 4, 3)
    assert tree["params"]["bias"].shape == (2,)
    assert tree["params"]["weight"].dtype == jnp.float32
    assert tree["aux"] == {"in1_features": 4, "in2_features": 3, "out_features": 2, "bias": True}
    assert tree["buffers"] == {} and tree["submodules"] == {}
    assert hax.is_structure_tree(tree)
    layer = torch.nn.Bilinear(4, 3, 2)
    assert {k: tuple(v.shape) for k, v in layer.state_dict().items()} == {
        k: v.shape for k, v in tree["params"].items()
    }
    no_bias, _ = Bilinear(4, 3, 2, bias=False, rng=0)
    assert set(no_bias["params"]) == {"weight"} and no_bias["aux"]["bias"] is False
    half, _ = Bilinear(4, 3, 2, rng=0, dtype=jnp.bfloat16)
    assert half["params"]["weight"].dtype == jnp.bfloat16
    assert half["params"]["bias"].dtype == jnp.bfloat16


def test_bilinear_init_matches_torch_distribution():
    # the bound is 1/sqrt(in1_features) = 0.25, not 1/sqrt(in2_features) = 0.05
    tree, _ = Bilinear(16, 400, 8, rng=1)
    bound = 1 / math.sqrt(16)
    w = np.asarray(tree["params"]["weight"], np.float64)
    b = np.asarray(tree["params"]["bias"], np.float64)
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert np.abs(w).max() > 0.99 * bound
    assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.02
    assert abs(w.mean()) < 0.02 * bound
    counts, _ = np.histogram(w, bins=10, range=(-bound, bound))
    np.testing.assert_allclose(counts / w.size, 0.1, atol=0.006)
    torch.manual_seed(0)
    w_torch = torch.nn.Bilinear(16, 400, 8).weight.detach().numpy()
    assert abs(w_torch.std() / w.std() - 1) < 0.03  # the same distribution as torch's
    assert not np.allclose(b, w[:, 0, 0])
    # a different key gives different params; an rng_context supplies keys
    assert not np.allclose(Bilinear(16, 400, 8, rng=2)[0]["params"]["weight"], w)
    with hax.rng_context(0):
        a, c = Bilinear(4, 3, 2)[0], Bilinear(4, 3, 2)[0]
    assert not np.allclose(a["params"]["weight"], c["params"]["weight"])
    with pytest.raises(ValueError, match="Bilinear"):
        Bilinear(2, 2, 2)


def torch_bilinear(tree):
    aux = tree["aux"]
    layer = torch.nn.Bilinear(
        aux["in1_features"], aux["in2_features"], aux["out_features"], bias=aux["bias"]
    )
    layer.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in tree["params"].items()})
    return layer


@pytest.mark.parametrize(("batch", "bias"), [((), True), ((6,), False), ((2, 3), True)], ids=str)
def test_bilinear_matches_torch(batch, bias):
    tree, config = Bilinear(4, 3, 2, bias=bias, rng=0)
    layer = torch_bilinear(tree)
    x1, x2 = randn(*batch, 4), randn(*batch, 3)

    def f(params, a, b):
        return hax.apply_tree({**tree, "params": params}, config, a, b)[1]

    y, vjp = jax.vjp(f, tree["params"], jnp.asarray(x1), jnp.asarray(x2))
    cot = randn(*batch, 2)
    g_params, g1, g2 = vjp(jnp.asarray(cot))
    t1 = torch.from_numpy(x1).requires_grad_(True)
    t2 = torch.from_numpy(x2).requires_grad_(True)
    y_t = layer(t1, t2)
    y_t.backward(torch.from_numpy(cot))
    assert y.shape == (*batch, 2)
    np.testing.assert_allclose(np.asarray(y), y_t.detach().numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(g1), t1.grad.numpy(), atol=1e-4)
    np.testing.assert_allclose(np.asarray(g2), t2.grad.numpy(), atol=1e-4)
    assert set(g_params) == {name for name, _ in layer.named_parameters()}
    for name, p in layer.named_parameters():
        np.testing.assert_allclose(np.asarray(g_params[name]), p.grad.numpy(), atol=1e-4)


def test_bilinear_debug_mode_and_jit():
    tree, config = Bilinear(4, 3, 2, rng=0)
    x1, x2 = jnp.asarray(randn(6, 4)), jnp.asarray(randn(6, 3))
    y = hax.apply_tree(tree, config, x1, x2)[1]
    with hax.debug():
        np.testing.assert_array_equal(hax.apply_tree(tree, config, x1, x2)[1], y)
    state, apply = hax.bind_module(tree, config)
    np.testing.assert_allclose(jax.jit(apply)(state, x1, x2)[1], y, atol=1e-6)


def test_bilinear_validate_reports_wrong_shapes():
    tree, config = Bilinear(4, 3, 2, rng=0)
    assert hax.validate(tree, config) is tree
    tree["params"]["weight"] = jnp.zeros((2, 3, 4))  # in1 and in2 swapped
    where, err = problems(tree)
    assert where == [("", "params.weight")]
    assert "out_features=2, in1_features=4, in2_features=3" in err.errors[0].expected
    assert err.errors[0].found == "shape (2, 3, 4)"
    # inside a Sequential, the path names the child; a bias disagreeing with aux too
    seq, seq_config = Sequential(Bilinear(4, 3, 2, rng=0), Bilinear(4, 3, 2, rng=1))
    seq["submodules"]["1"]["params"]["bias"] = jnp.zeros(5)
    where, _ = problems(seq, seq_config)
    assert where == [("1", "params.bias")]


# ---------------------------------------------------------------- Embedding


def test_embedding_layout():
    tree, config = Embedding(8, 4, rng=0)
    assert config == {}
    assert tree["apply"] is embedding_apply
    assert tree["params"]["weight"].shape == (8, 4)
    assert tree["params"]["weight"].dtype == jnp.float32
    assert tree["aux"] == {
        "num_embeddings": 8,
        "embedding_dim": 4,
        "padding_idx": None,
        "max_norm": None,
        "norm_type": 2.0,
        "scale_grad_by_freq": False,
        "sparse": False,
    }
    assert tree["buffers"] == {} and tree["submodules"] == {}
    assert hax.is_structure_tree(tree)
    assert set(torch.nn.Embedding(8, 4).state_dict()) == set(tree["params"])
    full, _ = Embedding(8, 4, 2, 1, 1, True, True, rng=0, dtype=jnp.bfloat16)
    assert full["aux"] == {
        "num_embeddings": 8,
        "embedding_dim": 4,
        "padding_idx": 2,
        "max_norm": 1.0,
        "norm_type": 1.0,
        "scale_grad_by_freq": True,
        "sparse": True,
    }
    assert type(full["aux"]["max_norm"]) is float and type(full["aux"]["norm_type"]) is float
    assert full["params"]["weight"].dtype == jnp.bfloat16


def test_embedding_init_is_standard_normal_with_zero_padding_row():
    tree, _ = Embedding(2000, 32, padding_idx=5, rng=0)
    w = np.asarray(tree["params"]["weight"], np.float64)
    np.testing.assert_array_equal(w[5], 0)
    rest = np.delete(w, 5, axis=0)
    assert abs(rest.mean()) < 0.01
    assert abs(rest.std() - 1) < 0.01
    # normal, not uniform: about 4.55% of values beyond 2 sigma
    assert abs((np.abs(rest) > 2).mean() - 0.0455) < 0.004
    torch.manual_seed(0)
    w_torch = torch.nn.Embedding(2000, 32, padding_idx=5).weight.detach().numpy()
    np.testing.assert_array_equal(w_torch[5], 0)
    assert abs(np.delete(w_torch, 5, axis=0).std() / rest.std() - 1) < 0.02
    assert (np.abs(Embedding(8, 4, rng=0)[0]["params"]["weight"]) > 0).all()


@pytest.mark.parametrize(("padding_idx", "normalised"), [(0, 0), (7, 7), (-1, 7), (-8, 0)])
def test_embedding_padding_idx_normalised_like_torch(padding_idx, normalised):
    tree, _ = Embedding(8, 4, padding_idx=padding_idx, rng=0)
    assert tree["aux"]["padding_idx"] == normalised
    assert torch.nn.Embedding(8, 4, padding_idx=padding_idx).padding_idx == normalised
    np.testing.assert_array_equal(tree["params"]["weight"][normalised], 0)
    assert np.count_nonzero(np.asarray(tree["params"]["weight"]).any(axis=1)) == 7


@pytest.mark.parametrize("padding_idx", [8, -9, 100])
def test_embedding_padding_idx_out_of_range(padding_idx):
    with pytest.raises(AssertionError):
        torch.nn.Embedding(8, 4, padding_idx=padding_idx)
    with pytest.raises(ValueError, match="padding_idx"):
        Embedding(8, 4, padding_idx=padding_idx, rng=0)


def torch_embedding(tree):
    aux = tree["aux"]
    layer = torch.nn.Embedding(
        aux["num_embeddings"],
        aux["embedding_dim"],
        padding_idx=aux["padding_idx"],
        max_norm=aux["max_norm"],
        norm_type=aux["norm_type"],
        scale_grad_by_freq=aux["scale_grad_by_freq"],
    )
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(np.array(tree["params"]["weight"])))
    return layer


OPTIONS = [
    {},
    {"padding_idx": 1},
    {"scale_grad_by_freq": True},
    {"max_norm": 1.5},
    {"max_norm": 2.0, "norm_type": 1.0},
    {"padding_idx": -2, "scale_grad_by_freq": True, "max_norm": 1.0},
]


# every option for (2, 3) indices; the plain and combined options for the other shapes
EMBEDDING_CASES = [((2, 3), options) for options in OPTIONS] + [
    (shape, options) for shape in [(6,), ()] for options in (OPTIONS[0], OPTIONS[-1])
]


@pytest.mark.parametrize(("shape", "options"), EMBEDDING_CASES, ids=str)
def test_embedding_matches_torch(shape, options):
    tree, config = Embedding(8, 4, rng=0, **options)
    # give the padding row a value, so that the lookup of it is tested too
    weight = tree["params"]["weight"] * 1.5
    if tree["aux"]["padding_idx"] is not None:
        weight = weight.at[tree["aux"]["padding_idx"]].set(0.5)
    tree = {**tree, "params": {"weight": weight}}
    layer = torch_embedding(tree)
    # repeated indices, and the padding index, appear
    idx = np.asarray(RNG.choice([1, 6, 6, 3, 0, 1, 6, 2], size=shape), np.int64)

    def f(params):
        new_tree, y = hax.apply_tree({**tree, "params": params}, config, jnp.asarray(idx))
        return y, new_tree["params"]["weight"]

    (y, new_weight), vjp = jax.vjp(f, tree["params"])
    cot = randn(*shape, 4)
    (g,) = vjp((jnp.asarray(cot), jnp.zeros_like(new_weight)))
    y_t = layer(torch.from_numpy(idx))
    y_t.backward(torch.from_numpy(cot))
    assert y.shape == (*shape, 4) and y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), y_t.detach().numpy(), atol=1e-5, rtol=1e-5)
    # max_norm renormalises the weight in place in torch; HAX returns it in the new tree
    np.testing.assert_allclose(
        np.asarray(new_weight), layer.weight.detach().numpy(), atol=1e-5, rtol=1e-5
    )
    np.testing.assert_allclose(np.asarray(g["weight"]), layer.weight.grad.numpy(), atol=1e-5)
    if tree["aux"]["padding_idx"] is not None and tree["aux"]["padding_idx"] in idx:
        np.testing.assert_array_equal(g["weight"][tree["aux"]["padding_idx"]], 0)


def test_embedding_padding_row_gets_no_gradient():
    tree, config = Embedding(8, 4, padding_idx=3, rng=0)
    idx = jnp.array([3, 1, 3, 0, 5, 5])

    def loss(params):
        return hax.apply_tree({**tree, "params": params}, config, idx)[1].sum()

    g = np.asarray(jax.grad(loss)(tree["params"])["weight"])
    np.testing.assert_array_equal(g[3], 0)
    np.testing.assert_array_equal(g[[0, 1]], 1)
    np.testing.assert_array_equal(g[5], 2)
    np.testing.assert_array_equal(g[[2, 4, 6, 7]], 0)


def test_embedding_scale_grad_by_freq():
    tree, config = Embedding(8, 4, scale_grad_by_freq=True, rng=0)
    idx = jnp.array([[4, 4, 4], [4, 1, 0]])

    def loss(params):
        return hax.apply_tree({**tree, "params": params}, config, idx)[1].sum()

    g = np.asarray(jax.grad(loss)(tree["params"])["weight"])
    np.testing.assert_allclose(g[:, 0], [1, 1, 0, 0, 1, 0, 0, 0])  # 4 occurs 4 times: 4 * 1/4


def test_embedding_max_norm_renormalises_looked_up_rows_only():
    tree, config = Embedding(8, 4, max_norm=1.0, rng=0)
    weight = jnp.asarray(np.arange(32, dtype=np.float32).reshape(8, 4) + 1)
    tree = {**tree, "params": {"weight": weight}}
    idx = jnp.array([[2, 4, 2], [4, 4, 2]])
    new_tree, y = hax.apply_tree(tree, config, idx)
    new_weight = np.asarray(new_tree["params"]["weight"])
    norms = np.linalg.norm(new_weight, axis=1)
    np.testing.assert_allclose(norms[[2, 4]], 1.0, rtol=1e-5)
    others = [0, 1, 3, 5, 6, 7]
    np.testing.assert_array_equal(new_weight[others], np.asarray(weight)[others])
    np.testing.assert_array_equal(np.asarray(y), new_weight[np.asarray(idx)])
    assert new_tree["aux"] == tree["aux"] and new_tree["apply"] is embedding_apply
    # under jit, the bound state carries the renormalised weight
    state, apply = hax.bind_module(tree, config)
    new_state, y_jit = jax.jit(apply)(state, idx)
    np.testing.assert_allclose(y_jit, y, rtol=1e-6)
    np.testing.assert_allclose(new_state["params/weight"], new_weight, rtol=1e-6)


def test_embedding_out_of_range_indices_give_nan():
    tree, config = Embedding(8, 4, rng=0)
    _, y = hax.apply_tree(tree, config, jnp.array([0, 8, -1, 7, 1, 2]))
    y = np.asarray(y)
    assert np.isnan(y[[1, 2]]).all()
    np.testing.assert_array_equal(
        y[[0, 3, 4, 5]], np.asarray(tree["params"]["weight"])[[0, 7, 1, 2]]
    )


@pytest.mark.wrong_types
def test_embedding_rejects_float_indices():
    tree, config = Embedding(8, 4, rng=0)
    with hax.debug(False), pytest.raises(TypeError, match="integers"):
        hax.apply_tree(tree, config, jnp.array([0.0, 1.0]))
    # in debug mode the annotation (Integer[Array, "*batch"]) rejects them first
    with hax.debug(), pytest.raises(TypeError, match="input"):
        hax.apply_tree(tree, config, jnp.array([0.0, 1.0]))


def test_embedding_debug_mode_and_jit():
    tree, config = Embedding(8, 4, padding_idx=0, rng=0)
    idx = jnp.array([[1, 0, 7], [3, 3, 2]])
    _, y = hax.apply_tree(tree, config, idx)
    with hax.debug():
        _, y_debug = hax.apply_tree(tree, config, idx)
    np.testing.assert_array_equal(y_debug, y)
    state, apply = hax.bind_module(tree, config)
    np.testing.assert_array_equal(jax.jit(apply)(state, idx)[1], y)


def test_embedding_validate_reports_wrong_shapes():
    tree, config = Embedding(8, 4, rng=0)
    assert hax.validate(tree, config) is tree
    tree["params"]["weight"] = jnp.zeros((4, 8))
    where, err = problems(tree)
    assert where == [("", "params.weight")]
    assert "num_embeddings=8, embedding_dim=4" in err.errors[0].expected
    assert err.errors[0].found == "shape (4, 8)"
    seq, seq_config = Sequential(Embedding(8, 4, rng=0), Bilinear(4, 3, 2, rng=0))
    seq["submodules"]["0"]["params"]["weight"] = jnp.zeros((8, 5))
    seq["submodules"]["0"]["aux"]["sparse"] = 0
    where, _ = problems(seq, seq_config)
    assert sorted(where) == [("0", "aux.sparse"), ("0", "params.weight")]


def test_embedding_spec_checks_the_optional_aux_entries():
    tree, _ = Embedding(5, 3, padding_idx=1, rng=0)
    assert hax.validate(tree) is tree
    bad = {**tree, "aux": {**tree["aux"], "padding_idx": "1"}}
    with pytest.raises(hax.ValidationError, match=r"aux\.padding_idx: expected an int or None"):
        hax.validate(bad)
    missing = {**tree, "aux": {k: v for k, v in tree["aux"].items() if k != "max_norm"}}
    with pytest.raises(hax.ValidationError, match=r"aux\.max_norm: expected a float or None"):
        hax.validate(missing)


def test_linear_and_bilinear_name_the_expected_input_size():
    linear, config = hax.nn.Linear(4, 2, rng=0)
    with pytest.raises(ValueError, match=r"Linear: .*in_features=4\), found shape \(3, 5\)"):
        hax.apply_tree(linear, config, jnp.ones((3, 5)))
    bilinear, config = Bilinear(3, 4, 2, rng=0)
    with pytest.raises(ValueError, match=r"in2_features=4\), found \(2, 3\) and \(2, 5\)"):
        hax.apply_tree(bilinear, config, jnp.ones((2, 3)), jnp.ones((2, 5)))
