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
    ELU,
    GELU,
    Hardsigmoid,
    Hardswish,
    LeakyReLU,
    LogSoftmax,
    Mish,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Tanh,
    elu_apply,
    gelu_apply,
    hardsigmoid_apply,
    hardswish_apply,
    leaky_relu_apply,
    log_softmax_apply,
    mish_apply,
    relu_apply,
    sigmoid_apply,
    silu_apply,
    softmax_apply,
    softplus_apply,
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
    ("Mish", lambda: Mish(), lambda: torch.nn.Mish(), mish_apply, {"inplace": False}, F.mish),
    (
        "Hardswish",
        lambda: Hardswish(),
        lambda: torch.nn.Hardswish(),
        hardswish_apply,
        {"inplace": False},
        F.hardswish,
    ),
    (
        "Hardsigmoid",
        lambda: Hardsigmoid(),
        lambda: torch.nn.Hardsigmoid(),
        hardsigmoid_apply,
        {"inplace": False},
        F.hardsigmoid,
    ),
    (
        "LeakyReLU",
        lambda: LeakyReLU(),
        lambda: torch.nn.LeakyReLU(),
        leaky_relu_apply,
        {"negative_slope": 0.01, "inplace": False},
        F.leaky_relu,
    ),
    (
        "LeakyReLU-0.2",
        lambda: LeakyReLU(0.2),
        lambda: torch.nn.LeakyReLU(0.2),
        leaky_relu_apply,
        {"negative_slope": 0.2, "inplace": False},
        lambda x: F.leaky_relu(x, 0.2),
    ),
    (
        "ELU",
        lambda: ELU(),
        lambda: torch.nn.ELU(),
        elu_apply,
        {"alpha": 1.0, "inplace": False},
        F.elu,
    ),
    (
        "ELU-0.5",
        lambda: ELU(alpha=0.5),
        lambda: torch.nn.ELU(alpha=0.5),
        elu_apply,
        {"alpha": 0.5, "inplace": False},
        lambda x: F.elu(x, alpha=0.5),
    ),
    (
        "Softplus",
        lambda: Softplus(),
        lambda: torch.nn.Softplus(),
        softplus_apply,
        {"beta": 1.0, "threshold": 20.0},
        F.softplus,
    ),
    (
        "Softplus-beta2-threshold5",  # inputs ~N(0, 9): beta * x crosses the threshold
        lambda: Softplus(2, 5),
        lambda: torch.nn.Softplus(2, 5),
        softplus_apply,
        {"beta": 2.0, "threshold": 5.0},
        lambda x: F.softplus(x, beta=2, threshold=5),
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
    for make in (ReLU, SiLU, Mish, Hardswish, Hardsigmoid):
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


@pytest.mark.wrong_types
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


def test_inplace_and_arguments_of_leaky_relu_and_elu_are_kept_in_aux():
    assert LeakyReLU(0.1, True)[0]["aux"] == {"negative_slope": 0.1, "inplace": True}
    assert ELU(2, inplace=True)[0]["aux"] == {"alpha": 2.0, "inplace": True}
    assert type(ELU(2)[0]["aux"]["alpha"]) is float
    assert Softplus(beta=3, threshold=10)[0]["aux"] == {"beta": 3.0, "threshold": 10.0}


# ---------------------------------------------------------------- kinks and extremes

KINKS = [
    # (torch function, hax function, points where the derivative jumps)
    (torch.nn.functional.hardswish, F.hardswish, [-3.0, 3.0]),
    (torch.nn.functional.hardsigmoid, F.hardsigmoid, [-3.0, 3.0]),
    (torch.nn.functional.relu6, F.relu6, [0.0, 6.0]),
    (lambda x: torch.nn.functional.leaky_relu(x, 0.2), lambda x: F.leaky_relu(x, 0.2), [0.0]),
    (lambda x: torch.nn.functional.elu(x, 0.5), lambda x: F.elu(x, 0.5), [0.0]),
    (
        lambda x: torch.nn.functional.softplus(x, 2.0, 4.0),
        lambda x: F.softplus(x, 2.0, 4.0),
        [2.0],
    ),
]


@pytest.mark.parametrize(
    ("torch_fn", "fn", "kinks"),
    KINKS,
    ids=["hardswish", "hardsigmoid", "relu6", "leaky_relu", "elu", "softplus"],
)
def test_gradient_at_the_kinks_and_far_out_is_torchs(torch_fn, fn, kinks):
    """Values and gradients at the kinks themselves, next to them, and far out (where a
    naive `exp` would overflow and poison the gradient with NaN)."""
    points = [p + d for p in kinks for d in (-1e-3, 0.0, 1e-3)] + [-200.0, -30.0, 30.0, 200.0]
    x = np.asarray(points, np.float32)
    x_t = torch.from_numpy(x).requires_grad_(True)
    torch_fn(x_t).sum().backward()
    y, vjp = jax.vjp(fn, jnp.asarray(x))
    (grad,) = vjp(jnp.ones_like(y))
    expected = torch_fn(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(grad), x_t.grad.numpy(), rtol=1e-6, atol=1e-7)
    assert np.isfinite(np.asarray(grad)).all()


def test_softplus_default_threshold_and_large_inputs_match_torch():
    x = np.asarray([-100.0, -20.0, 0.0, 19.9, 20.0, 20.1, 100.0], np.float32)
    for beta in (1.0, 0.5, 3.0):
        tree, config = Softplus(beta)
        y = hax.apply_tree(tree, config, jnp.asarray(x))[1]
        expected = torch.nn.Softplus(beta)(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- PReLU: learned slopes


def test_prelu_layout_and_init_match_torch():
    for args in ((), (3,), (4, 0.1)):
        tree, config = hax.nn.PReLU(*args)
        torch_layer = torch.nn.PReLU(*args)
        assert config == {} and tree["apply"] is hax.nn.prelu_apply
        assert tree["aux"] == {
            "num_parameters": torch_layer.num_parameters,
            "init": torch_layer.init,
        }
        assert set(tree["params"]) == set(torch_layer.state_dict())
        np.testing.assert_array_equal(
            np.asarray(tree["params"]["weight"]), torch_layer.weight.detach().numpy()
        )
    assert hax.nn.PReLU(2, dtype=jnp.bfloat16)[0]["params"]["weight"].dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="num_parameters must be a positive int, found 0"):
        hax.nn.PReLU(0)


@pytest.mark.parametrize(
    ("num_parameters", "shape"),
    [(1, (7,)), (1, (2, 3, 4, 5)), (3, (2, 3)), (3, (2, 3, 4)), (3, (2, 3, 4, 5)), (1, ())],
)
def test_prelu_matches_torch_values_and_gradients(num_parameters, shape):
    torch_layer = torch.nn.PReLU(num_parameters)
    with torch.no_grad():
        torch_layer.weight.copy_(torch.linspace(-0.5, 0.8, num_parameters))
    tree = hax.interop.from_torch(torch_layer, hax.nn.PReLU(num_parameters)[0])
    x = np.asarray(RNG.normal(size=shape), np.float32)
    x.flat[0] = 0.0  # the kink: the gradient is the slope, as in torch
    cot = np.asarray(RNG.normal(size=shape), np.float32)
    x_t = torch.from_numpy(x).requires_grad_(True)
    torch_layer(x_t).backward(torch.from_numpy(cot))

    def run(params, x):
        return hax.apply_tree({**tree, "params": params}, {}, x)[1]

    y, vjp = jax.vjp(run, tree["params"], jnp.asarray(x))
    g_params, g_x = vjp(jnp.asarray(cot))
    np.testing.assert_allclose(np.asarray(y), torch_layer(torch.from_numpy(x)).detach().numpy())
    np.testing.assert_allclose(np.asarray(g_x), x_t.grad.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(g_params["weight"]), torch_layer.weight.grad.numpy(), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        np.asarray(F.prelu(x, torch_layer.weight.detach().numpy())), np.asarray(y)
    )


@pytest.mark.parametrize("shape", [(3,), (3, 4), ()])
def test_prelu_channel_count_mismatch_raises_like_torch(shape):
    tree, config = hax.nn.PReLU(3)
    with pytest.raises(RuntimeError):
        torch.nn.PReLU(3)(torch.zeros(shape))
    with pytest.raises(ValueError, match="weight has 3 entries, one per channel"):
        hax.apply_tree(tree, config, jnp.zeros(shape))
    with pytest.raises(ValueError, match="scalar or 1-d"):
        F.prelu(jnp.zeros((2, 2)), jnp.zeros((1, 2)))


def test_new_activations_convert_from_torch():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(3, 4),
        torch.nn.Hardswish(),
        torch.nn.Linear(4, 4),
        torch.nn.LeakyReLU(0.3),
        torch.nn.PReLU(4, init=0.1),
        torch.nn.ELU(0.7),
        torch.nn.Mish(),
        torch.nn.Softplus(2.0, 3.0),
        torch.nn.Hardsigmoid(),
    )
    with torch.no_grad():
        model[4].weight.copy_(torch.tensor([0.1, -0.2, 0.3, 0.4]))
    tree, config = hax.interop.convert(model)
    kinds = [tree["submodules"][str(i)]["apply"] for i in range(1, 9)]
    assert kinds == [
        hardswish_apply, hax.nn.linear_apply, leaky_relu_apply, hax.nn.prelu_apply,
        elu_apply, mish_apply, softplus_apply, hardsigmoid_apply,
    ]  # fmt: skip
    assert tree["submodules"]["5"]["aux"] == {"alpha": 0.7, "inplace": False}
    np.testing.assert_allclose(tree["submodules"]["4"]["params"]["weight"], [0.1, -0.2, 0.3, 0.4])
    x = np.asarray(RNG.normal(size=(16, 3)) * 3, np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    y = hax.apply_tree(tree, config, jnp.asarray(x))[1]
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5, atol=1e-6)
