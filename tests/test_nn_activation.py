"""Tests for the activation layers (`hax.nn._activation`), with PyTorch as the reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import hax
from hax.interop import from_torch
from hax.nn import functional as F
from hax.nn._activation import (
    GELU,
    LogSoftmax,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
    gelu_apply,
    log_softmax_apply,
    relu_apply,
    sigmoid_apply,
    silu_apply,
    softmax_apply,
    tanh_apply,
)
from hax.nn._linear import Linear
from hax.nn._sequential import Sequential

RNG = np.random.default_rng(0)
# The shapes of tests/test_nn_functional.py: each new shape costs compilations.
SHAPES = [(6, 4), (2, 4, 3, 2)]

# (id, hax module, torch module, apply, aux, the functional form in hax.nn.functional)
LAYERS = [
    ("ReLU", lambda: ReLU(), lambda: torch.nn.ReLU(), relu_apply, {"inplace": False}, F.relu),
    (
        "GELU",
        lambda: GELU(),
        lambda: torch.nn.GELU(),
        gelu_apply,
        {"approximate": "none"},
        F.gelu,
    ),
    (
        "GELU-tanh",
        lambda: GELU("tanh"),
        lambda: torch.nn.GELU("tanh"),
        gelu_apply,
        {"approximate": "tanh"},
        lambda x: F.gelu(x, approximate="tanh"),
    ),
    ("SiLU", lambda: SiLU(), lambda: torch.nn.SiLU(), silu_apply, {"inplace": False}, F.silu),
    ("Tanh", lambda: Tanh(), lambda: torch.nn.Tanh(), tanh_apply, {}, F.tanh),
    ("Sigmoid", lambda: Sigmoid(), lambda: torch.nn.Sigmoid(), sigmoid_apply, {}, F.sigmoid),
    (
        "Softmax-1",
        lambda: Softmax(1),
        lambda: torch.nn.Softmax(1),
        softmax_apply,
        {"dim": 1},
        lambda x: F.softmax(x, 1),
    ),
    (
        "Softmax-last",
        lambda: Softmax(dim=-1),
        lambda: torch.nn.Softmax(dim=-1),
        softmax_apply,
        {"dim": -1},
        lambda x: F.softmax(x, dim=-1),
    ),
    (
        "LogSoftmax-1",
        lambda: LogSoftmax(1),
        lambda: torch.nn.LogSoftmax(1),
        log_softmax_apply,
        {"dim": 1},
        lambda x: F.log_softmax(x, 1),
    ),
    (
        "LogSoftmax-last",
        lambda: LogSoftmax(dim=-1),
        lambda: torch.nn.LogSoftmax(dim=-1),
        log_softmax_apply,
        {"dim": -1},
        lambda x: F.log_softmax(x, dim=-1),
    ),
]
IDS = [layer[0] for layer in LAYERS]


@pytest.mark.parametrize(("name", "make", "make_torch", "apply", "aux", "fn"), LAYERS, ids=IDS)
def test_module_layout(name, make, make_torch, apply, aux, fn):
    tree, config = make()
    assert config == {}
    assert tree["apply"] is apply
    assert tree["params"] == {} and tree["buffers"] == {} and tree["submodules"] == {}
    assert tree["aux"] == aux
    for key, value in aux.items():
        assert type(value) is type(aux[key])
    assert hax.is_structure_tree(tree)
    assert hax.validate(tree, config) is tree
    # torch's layers have no params either
    assert not list(make_torch().parameters())


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("name", "make", "make_torch", "apply", "aux", "fn"), LAYERS, ids=IDS)
def test_matches_torch(name, make, make_torch, apply, aux, fn, shape):
    """The layer and its function in `hax.nn.functional`, values and input gradients."""
    tree, config = make()
    x = np.asarray(RNG.normal(size=shape) * 3, np.float32)
    cot = np.asarray(RNG.normal(size=shape), np.float32)
    x_t = torch.from_numpy(x).requires_grad_(True)
    y_t = make_torch()(x_t)
    y_t.backward(torch.from_numpy(cot))

    def layer(v):
        return hax.apply_tree(tree, config, v)[1]

    for who, f in (("layer", layer), ("functional", fn)):
        y, vjp = jax.vjp(f, jnp.asarray(x))
        (grad,) = vjp(jnp.asarray(cot))
        assert y.shape == shape and y.dtype == jnp.float32, who
        np.testing.assert_allclose(
            np.asarray(y), y_t.detach().numpy(), atol=1e-5, rtol=1e-5, err_msg=who
        )
        np.testing.assert_allclose(
            np.asarray(grad), x_t.grad.numpy(), atol=1e-4, rtol=1e-4, err_msg=who
        )


@pytest.mark.parametrize(("name", "make", "make_torch", "apply", "aux", "fn"), LAYERS, ids=IDS)
def test_debug_mode_and_jit(name, make, make_torch, apply, aux, fn):
    tree, config = make()
    x = jnp.asarray(RNG.normal(size=SHAPES[0]), jnp.float32)
    eager = hax.apply_tree(tree, config, x)[1]
    with hax.debug():
        new_tree, checked = hax.apply_tree(tree, config, x)
    assert new_tree["aux"] == tree["aux"]
    np.testing.assert_array_equal(checked, eager)
    state, bound = hax.bind_module(tree, config)
    _, jitted = jax.jit(bound)(state, x)
    np.testing.assert_allclose(jitted, eager, atol=1e-6)


def test_inplace_is_kept_in_aux_and_has_no_effect():
    x = jnp.asarray(RNG.normal(size=SHAPES[0]), jnp.float32)
    for make in (ReLU, SiLU):
        tree, config = make(inplace=True)
        assert tree["aux"] == {"inplace": True}
        plain_tree, _ = make()
        np.testing.assert_array_equal(
            hax.apply_tree(tree, config, x)[1], hax.apply_tree(plain_tree, config, x)[1]
        )


def test_gelu_tanh_differs_from_exact():
    x = jnp.linspace(-3, 3, 24).reshape(SHAPES[0])
    exact = hax.apply_tree(*GELU(), x)[1]
    approx = hax.apply_tree(*GELU(approximate="tanh"), x)[1]
    assert not np.allclose(exact, approx, atol=1e-5, rtol=0)
    np.testing.assert_allclose(exact, approx, atol=1e-3)


def test_gelu_rejects_unknown_approximation():
    with pytest.raises(ValueError, match="approximate"):
        GELU("erf")


@pytest.mark.parametrize("make", [Softmax, LogSoftmax])
def test_softmax_requires_dim(make):
    with pytest.raises(ValueError, match="dim is required"):
        make()
    with pytest.raises(ValueError, match="dim is required"):
        make(None)
    with pytest.raises(TypeError, match="dim must be an int"):
        make(1.0)
    with pytest.raises(TypeError, match="dim must be an int"):
        make(True)


def test_softmax_dim_selects_axis():
    x = jnp.asarray(RNG.normal(size=SHAPES[0]), jnp.float32)
    rows = hax.apply_tree(*Softmax(1), x)[1]
    cols = hax.apply_tree(*Softmax(0), x)[1]
    np.testing.assert_allclose(rows.sum(1), 1, rtol=1e-6)
    np.testing.assert_allclose(cols.sum(0), 1, rtol=1e-6)
    assert not np.allclose(rows.sum(0), 1)


def test_validate_rejects_params_and_bad_aux():
    tree, _ = ReLU()
    tree["params"]["weight"] = jnp.zeros(3)
    with pytest.raises(hax.ValidationError) as info:
        hax.validate(tree)
    assert [(p.path, p.key) for p in info.value.errors] == [("", "params.weight")]
    tree, _ = Softmax(1)
    tree["aux"]["dim"] = "1"
    with pytest.raises(hax.ValidationError) as info:
        hax.validate(tree)
    assert [(p.path, p.key) for p in info.value.errors] == [("", "aux.dim")]
    tree, _ = GELU()
    del tree["aux"]["approximate"]
    with pytest.raises(hax.ValidationError, match=r"aux\.approximate"):
        hax.validate(tree)


def test_in_sequential_matches_torch():
    with hax.rng_context(0):
        tree, config = Sequential(Linear(4, 4), GELU(), Linear(4, 4), LogSoftmax(-1))
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 4), torch.nn.GELU(), torch.nn.Linear(4, 4), torch.nn.LogSoftmax(-1)
    )
    tree = hax.validate(from_torch(model, tree), config)
    x = np.asarray(RNG.normal(size=(6, 4)), np.float32)
    _, y = hax.apply_tree(tree, config, jnp.asarray(x))
    with torch.no_grad():
        np.testing.assert_allclose(np.asarray(y), model(torch.from_numpy(x)).numpy(), atol=1e-5)


# ---------------------------------------------------------------- ReLU6: one file, hax/nn/_relu6.py


def test_relu6_matches_torch_values_and_gradients():
    tree, config = hax.nn.ReLU6()
    assert tree["apply"] is hax.nn.relu6_apply and tree["aux"] == {"inplace": False}
    assert config == {} and hax.validate(tree, config) is tree
    assert hax.nn.ReLU6(inplace=True)[0]["aux"] == {"inplace": True}
    x = np.asarray(RNG.normal(size=SHAPES[1]) * 4, np.float32)
    x.flat[:4] = [0.0, 6.0, 5.999, 6.001]  # the kinks, where the gradient is 0 in torch
    cot = np.asarray(RNG.normal(size=SHAPES[1]), np.float32)
    x_t = torch.from_numpy(x).requires_grad_(True)
    torch.nn.ReLU6()(x_t).backward(torch.from_numpy(cot))
    y_t = torch.nn.ReLU6()(torch.from_numpy(x))
    y, vjp = jax.vjp(lambda v: hax.apply_tree(tree, config, v)[1], jnp.asarray(x))
    (grad,) = vjp(jnp.asarray(cot))
    np.testing.assert_array_equal(np.asarray(y), y_t.numpy())
    np.testing.assert_array_equal(np.asarray(grad), x_t.grad.numpy())
    with hax.debug():
        np.testing.assert_array_equal(hax.apply_tree(tree, config, jnp.asarray(x))[1], y)
    state, bound = hax.bind_module(tree, config)
    np.testing.assert_array_equal(jax.jit(bound)(state, jnp.asarray(x))[1], y)


def test_relu6_converts_with_no_other_registration():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU6(inplace=True))
    tree, config = hax.interop.convert(model)
    relu6 = tree["submodules"]["1"]
    assert relu6["apply"] is hax.nn.relu6_apply and relu6["aux"] == {"inplace": True}
    x = np.asarray(np.random.default_rng(0).normal(size=(16, 3)) * 40, np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert (expected == 6).any() and (expected == 0).any()
    np.testing.assert_allclose(hax.apply_tree(tree, config, jnp.asarray(x))[1], expected, atol=1e-5)
