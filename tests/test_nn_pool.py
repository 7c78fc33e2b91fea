"""Tests for the pooling layers (`MaxPool1d/2d`, `AvgPool1d/2d`, `AdaptiveAvgPool1d/2d`,
`AdaptiveMaxPool2d`) and `adaptive_avg_pool2d`, with PyTorch as the reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import hax
from hax.nn import functional as F
from hax.nn._pool import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AdaptiveMaxPool2d,
    AvgPool1d,
    AvgPool2d,
    MaxPool1d,
    MaxPool2d,
    adaptive_avg_pool1d_apply,
    adaptive_avg_pool2d_apply,
    adaptive_max_pool2d_apply,
    avg_pool1d_apply,
    avg_pool2d_apply,
    max_pool1d_apply,
    max_pool2d_apply,
)

HAX = {
    "MaxPool1d": MaxPool1d,
    "MaxPool2d": MaxPool2d,
    "AvgPool1d": AvgPool1d,
    "AvgPool2d": AvgPool2d,
    "AdaptiveAvgPool1d": AdaptiveAvgPool1d,
    "AdaptiveAvgPool2d": AdaptiveAvgPool2d,
    "AdaptiveMaxPool2d": AdaptiveMaxPool2d,
}

# XLA's CPU backend compiles about twice as fast without LLVM optimisations; the
# results are the same to the tolerances used here.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def check_against_torch(name, args, kwargs, x_shape, seed=0, relu=False):
    """Forward output and the gradient of `sum(out * r)` for the input (one jitted
    program per case). `relu` zeroes about half the input, so many windows tie."""
    torch_layer = getattr(torch.nn, name)(*args, **kwargs)
    tree, config = HAX[name](*args, **kwargs)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=x_shape).astype(np.float32)
    if relu:
        x = np.maximum(x - 0.5, 0)
    x_torch = torch.from_numpy(x).requires_grad_(True)
    y_torch = torch_layer(x_torch)
    r = rng.normal(size=tuple(y_torch.shape)).astype(np.float32)
    (y_torch * torch.from_numpy(r)).sum().backward()

    def loss(x, r):
        _, y = hax.apply_tree(tree, config, x)
        return jnp.sum(y * r), y

    grad = jax.jit(jax.grad(loss, has_aux=True), compiler_options=FAST_COMPILE)
    g_x, y = grad(jnp.asarray(x), jnp.asarray(r))
    assert y.shape == tuple(y_torch.shape)
    np.testing.assert_allclose(np.asarray(y), y_torch.detach().numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(g_x), x_torch.grad.numpy(), atol=1e-5, rtol=1e-5)
    return y


# ---------------------------------------------------------------- MaxPool2d

MAX_CASES = [
    # (args, kwargs, input shape)
    ((2,), {}, (2, 3, 7, 9)),  # trailing rows and columns unused
    ((3,), {"stride": 2, "padding": 1}, (2, 3, 7, 8)),
    (((2, 3),), {"stride": (1, 2), "padding": (1, 1)}, (3, 5, 7)),  # unbatched
    ((2,), {"stride": 2, "padding": 1, "dilation": (3, 2)}, (1, 2, 8, 9)),
    ((3,), {"stride": 2, "ceil_mode": True}, (2, 3, 8, 6)),
    ((3,), {"stride": 3, "padding": 1, "ceil_mode": True}, (1, 2, 5, 7)),  # last-window rule
]


@pytest.mark.parametrize("args, kwargs, shape", MAX_CASES)
def test_max_pool2d_matches_torch(args, kwargs, shape):
    check_against_torch("MaxPool2d", args, kwargs, shape)


@pytest.mark.parametrize("dilation", [1, 2])
def test_max_pool2d_ties_send_the_gradient_to_the_first_max(dilation):
    kwargs = {"stride": 1, "padding": 1, "dilation": dilation}
    check_against_torch("MaxPool2d", (3,), kwargs, (2, 3, 8, 7), relu=True)


@pytest.mark.parametrize("name", ["MaxPool2d", "AvgPool2d"])
def test_ceil_mode_drops_a_window_that_starts_in_the_right_padding(name):
    """Size 5, kernel 3, stride 3, padding 1: rounding up gives 3 windows, but the third
    would start at 6 >= 5 + 1, in the right padding, so PyTorch keeps 2 (values are
    compared in the parity tests)."""
    kwargs = {"stride": 3, "padding": 1, "ceil_mode": True}
    torch_layer = getattr(torch.nn, name)(3, **kwargs)
    tree, config = HAX[name](3, **kwargs)
    for shape, expected in [((1, 5, 5), (1, 2, 2)), ((1, 6, 5), (1, 3, 2))]:
        assert tuple(torch_layer(torch.zeros(shape)).shape) == expected
        out = jax.eval_shape(lambda x: hax.apply_tree(tree, config, x)[1], jnp.zeros(shape))
        assert out.shape == expected


@pytest.mark.parametrize(
    "kwargs, shape",
    [
        ({"stride": 2, "padding": 1}, (2, 3, 7, 8)),
        ({"stride": (2, 1), "dilation": 2, "ceil_mode": True}, (2, 8, 9)),
    ],
)
def test_max_pool2d_indices_match_torch(kwargs, shape):
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    x[..., 2, :] = x[..., 1, :]  # ties go to the first index
    x[..., 0, 1] = np.nan  # a NaN is the max, and the last NaN wins
    x[..., 0, 2] = np.nan
    y_torch, i_torch = torch.nn.MaxPool2d(3, return_indices=True, **kwargs)(torch.from_numpy(x))
    tree, config = MaxPool2d(3, return_indices=True, **kwargs)
    y, indices = jax.jit(lambda x: hax.apply_tree(tree, config, x)[1])(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(y), y_torch.numpy())
    np.testing.assert_array_equal(np.asarray(indices), i_torch.numpy())
    assert jnp.issubdtype(indices.dtype, jnp.integer)


@pytest.mark.parametrize("dilation", [1, 2])
def test_max_pool2d_gradient_with_indices(dilation):
    x = np.random.default_rng(0).normal(size=(2, 5, 6)).astype(np.float32)
    x_torch = torch.from_numpy(x).requires_grad_(True)
    torch.nn.MaxPool2d(2, 1, 1, dilation, return_indices=True)(x_torch)[0].sum().backward()
    tree, config = MaxPool2d(2, 1, 1, dilation, return_indices=True)
    grad = jax.jit(jax.grad(lambda x: hax.apply_tree(tree, config, x)[1][0].sum()))(x)
    np.testing.assert_array_equal(np.asarray(grad), x_torch.grad.numpy())


# ---------------------------------------------------------------- AvgPool2d

AVG_CASES = [
    ((2,), {}, (2, 3, 7, 8)),
    ((3,), {"stride": 2, "padding": 1}, (2, 3, 7, 8)),
    (((2, 3),), {"stride": (1, 2), "padding": (1, 1), "count_include_pad": False}, (3, 5, 7)),
    ((3,), {"stride": 2, "padding": 1, "ceil_mode": True}, (2, 3, 8, 6)),
    ((3,), {"stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False}, (2, 8, 6)),
    ((2,), {"stride": 3, "padding": 1, "ceil_mode": True}, (1, 2, 7, 8)),  # past the padding
    ((3,), {"stride": 2, "ceil_mode": True, "divisor_override": 2}, (2, 7, 8)),
]


@pytest.mark.parametrize("args, kwargs, shape", AVG_CASES)
def test_avg_pool2d_matches_torch(args, kwargs, shape):
    check_against_torch("AvgPool2d", args, kwargs, shape)


# ---------------------------------------------------------------- AdaptiveAvgPool2d

ADAPTIVE_CASES = [
    (((3, 4),), (2, 3, 7, 8)),  # not divisible (overlapping windows), divisible
    (((4, None),), (2, 3, 9, 5)),  # None keeps the input size
    ((1,), (3, 5, 6)),  # global average, unbatched
    (((7, 3),), (1, 2, 5, 2)),  # larger than the input
]


@pytest.mark.parametrize("args, shape", ADAPTIVE_CASES)
def test_adaptive_avg_pool2d_matches_torch(args, shape):
    check_against_torch("AdaptiveAvgPool2d", args, {}, shape)


# ---------------------------------------------------------------- 1-d pooling

MAX1D_CASES = [
    ((2,), {}, (2, 3, 9)),  # the trailing element unused
    ((3,), {"stride": 2, "padding": 1}, (2, 3, 8)),
    ((3,), {"stride": 2, "ceil_mode": True}, (3, 8)),  # unbatched
    ((2,), {"stride": 1, "padding": 1, "dilation": 3}, (1, 2, 9)),
    ((3,), {"stride": 3, "padding": 1, "ceil_mode": True}, (1, 2, 5)),  # last-window rule
]


@pytest.mark.parametrize("args, kwargs, shape", MAX1D_CASES)
def test_max_pool1d_matches_torch(args, kwargs, shape):
    check_against_torch("MaxPool1d", args, kwargs, shape)


@pytest.mark.parametrize("dilation", [1, 2])
def test_max_pool1d_ties_send_the_gradient_to_the_first_max(dilation):
    kwargs = {"stride": 1, "padding": 1, "dilation": dilation}
    check_against_torch("MaxPool1d", (3,), kwargs, (2, 3, 11), relu=True)


def test_max_pool1d_indices_match_torch():
    x = np.random.default_rng(1).normal(size=(2, 3, 10)).astype(np.float32)
    x[..., 4] = x[..., 3]  # ties go to the first index
    x[0, 0, 1] = x[0, 0, 2] = np.nan  # a NaN is the max, and the last NaN wins
    for kwargs in ({"stride": 2, "padding": 1}, {"stride": 1, "dilation": 2, "ceil_mode": True}):
        pool = torch.nn.MaxPool1d(3, return_indices=True, **kwargs)
        y_torch, i_torch = pool(torch.from_numpy(x))
        tree, config = MaxPool1d(3, return_indices=True, **kwargs)
        y, indices = jax.jit(lambda x, t=tree, c=config: hax.apply_tree(t, c, x)[1])(x)
        np.testing.assert_array_equal(np.asarray(y), y_torch.numpy())
        np.testing.assert_array_equal(np.asarray(indices), i_torch.numpy())


AVG1D_CASES = [
    ((2,), {}, (2, 3, 7)),
    ((3,), {"stride": 2, "padding": 1}, (2, 3, 8)),
    ((3,), {"stride": 2, "padding": 1, "count_include_pad": False}, (3, 8)),  # unbatched
    ((3,), {"stride": 2, "padding": 1, "ceil_mode": True}, (2, 3, 8)),
    ((3,), {"stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False}, (2, 8)),
    ((2,), {"stride": 3, "padding": 1, "ceil_mode": True}, (1, 2, 7)),  # past the padding
]


@pytest.mark.parametrize("args, kwargs, shape", AVG1D_CASES)
def test_avg_pool1d_matches_torch(args, kwargs, shape):
    check_against_torch("AvgPool1d", args, kwargs, shape)


@pytest.mark.parametrize(
    "args, shape",
    [((3,), (2, 3, 7)), ((1,), (3, 5)), ((7,), (1, 2, 5)), ((4,), (2, 3, 8))],
)
def test_adaptive_avg_pool1d_matches_torch(args, shape):
    check_against_torch("AdaptiveAvgPool1d", args, {}, shape)


# ---------------------------------------------------------------- AdaptiveMaxPool2d

ADAPTIVE_MAX_CASES = [
    (((3, 4),), (2, 3, 7, 8)),  # overlapping windows, divisible
    (((4, None),), (2, 3, 9, 5)),  # None keeps the input size
    ((1,), (3, 5, 6)),  # global max, unbatched
    (((7, 3),), (1, 2, 5, 2)),  # larger than the input
]


@pytest.mark.parametrize("args, shape", ADAPTIVE_MAX_CASES)
def test_adaptive_max_pool2d_matches_torch(args, shape):
    check_against_torch("AdaptiveMaxPool2d", args, {}, shape)


def test_adaptive_max_pool2d_ties_send_the_gradient_to_the_first_max():
    check_against_torch("AdaptiveMaxPool2d", ((3, 4),), {}, (2, 3, 7, 9), relu=True)


def test_adaptive_max_pool2d_indices_match_torch():
    x = np.random.default_rng(2).normal(size=(2, 3, 7, 8)).astype(np.float32)
    x[..., 2, :] = x[..., 1, :]  # ties go to the first index
    x[..., 0, 1] = np.nan  # a NaN is the max, and the last NaN wins
    x[..., 1, 0] = np.nan
    for output_size in ((3, 4), (5, None), 1):
        pool = torch.nn.AdaptiveMaxPool2d(output_size, return_indices=True)
        y_torch, i_torch = pool(torch.from_numpy(x))
        tree, config = AdaptiveMaxPool2d(output_size, return_indices=True)
        y, indices = jax.jit(lambda x, t=tree, c=config: hax.apply_tree(t, c, x)[1])(x)
        np.testing.assert_array_equal(np.asarray(y), y_torch.numpy())
        np.testing.assert_array_equal(np.asarray(indices), i_torch.numpy())
        assert jnp.issubdtype(indices.dtype, jnp.integer)


def test_adaptive_avg_pool2d_function_matches_torch_and_the_layer():
    x = np.random.default_rng(3).normal(size=(2, 3, 7, 9)).astype(np.float32)
    for output_size in ((3, 4), (None, 2), 5):
        expected = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x), output_size)
        y = F.adaptive_avg_pool2d(x, output_size)
        np.testing.assert_allclose(np.asarray(y), expected.numpy(), rtol=1e-6, atol=1e-6)
        layer = hax.apply_tree(*AdaptiveAvgPool2d(output_size), jnp.asarray(x))[1]
        np.testing.assert_array_equal(np.asarray(y), np.asarray(layer))
    np.testing.assert_allclose(
        np.asarray(F.adaptive_avg_pool2d(x[0], 1)), x[0].mean((1, 2), keepdims=True), rtol=1e-6
    )
    with pytest.raises(ValueError, match="adaptive_avg_pool2d: output_size must be"):
        F.adaptive_avg_pool2d(x, (1, 2, 3))


def test_pooling_layers_convert_from_torch():
    model = torch.nn.Sequential(
        torch.nn.MaxPool1d(3, 1, 1),
        torch.nn.AvgPool1d(2, ceil_mode=True, count_include_pad=False),
        torch.nn.AdaptiveAvgPool1d(3),
    )
    tree, config = hax.interop.convert(model)
    applies = [tree["submodules"][str(i)]["apply"] for i in range(3)]
    assert applies == [max_pool1d_apply, avg_pool1d_apply, adaptive_avg_pool1d_apply]
    assert tree["submodules"]["2"]["aux"] == {"output_size": (3,)}
    x = np.random.default_rng(0).normal(size=(2, 3, 9)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(hax.apply_tree(tree, config, jnp.asarray(x))[1], expected, atol=1e-6)
    tree, config = hax.interop.convert(torch.nn.AdaptiveMaxPool2d((3, None), True))
    assert tree["apply"] is adaptive_max_pool2d_apply
    assert tree["aux"] == {"output_size": (3, None), "return_indices": True}


def test_dtypes():
    """Outputs keep the input dtype; half-precision averages are rounded once, like
    PyTorch's; integer max pooling works (padding never wins)."""
    x = np.random.default_rng(0).normal(size=(4, 7, 10)).astype(np.float32)
    x_bf16 = torch.from_numpy(x).to(torch.bfloat16)
    for name, args, kwargs in [
        ("AvgPool2d", (3,), {"stride": 2, "padding": 1, "count_include_pad": False}),
        ("AdaptiveAvgPool2d", ((3, 4),), {}),
    ]:
        expected = getattr(torch.nn, name)(*args, **kwargs)(x_bf16).float().numpy()
        tree, config = HAX[name](*args, **kwargs)
        _, y = hax.apply_tree(tree, config, jnp.asarray(x, jnp.bfloat16))
        assert y.dtype == jnp.bfloat16
        np.testing.assert_array_equal(np.asarray(y, np.float32), expected)
    ints = np.random.default_rng(1).integers(-50, 50, size=(2, 5, 6)).astype(np.int32)
    expected = torch.nn.MaxPool2d(3, 2, 1)(torch.from_numpy(ints).float()).numpy()
    _, y = hax.apply_tree(*MaxPool2d(3, 2, 1), jnp.asarray(ints))
    assert y.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(y), expected)


# ---------------------------------------------------------------- structure, debug, errors


def test_trees_and_aux():
    tree, config = MaxPool2d(3)
    assert config == {}
    assert tree["apply"] is max_pool2d_apply
    assert tree["params"] == {} and tree["buffers"] == {} and tree["submodules"] == {}
    assert tree["aux"] == {
        "kernel_size": (3, 3),
        "stride": (3, 3),  # defaults to kernel_size, like PyTorch
        "padding": (0, 0),
        "dilation": (1, 1),
        "return_indices": False,
        "ceil_mode": False,
    }
    tree, config = AvgPool2d((2, 3), stride=1, padding=(1, 0), divisor_override=5)
    assert tree["apply"] is avg_pool2d_apply
    assert tree["aux"] == {
        "kernel_size": (2, 3),
        "stride": (1, 1),
        "padding": (1, 0),
        "ceil_mode": False,
        "count_include_pad": True,
        "divisor_override": 5,
    }
    tree, config = AdaptiveAvgPool2d((None, 3))
    assert tree["apply"] is adaptive_avg_pool2d_apply
    assert tree["aux"] == {"output_size": (None, 3)}
    assert AdaptiveAvgPool2d(4)[0]["aux"] == {"output_size": (4, 4)}
    for module in (MaxPool2d(2), AvgPool2d(2), AdaptiveAvgPool2d(2)):
        assert hax.validate(module[0]) is module[0]


def test_new_trees_and_aux():
    """1-d layers store 1-tuples, as `Conv1d` does (torch keeps the int it was given)."""
    tree, config = MaxPool1d(3, padding=1)
    assert config == {} and tree["apply"] is max_pool1d_apply
    assert tree["params"] == {} and tree["buffers"] == {} and tree["submodules"] == {}
    assert tree["aux"] == {
        "kernel_size": (3,),
        "stride": (3,),
        "padding": (1,),
        "dilation": (1,),
        "return_indices": False,
        "ceil_mode": False,
    }
    tree, _ = AvgPool1d(2, 1, 1, True, False)  # torch's positional order
    assert tree["apply"] is avg_pool1d_apply
    assert tree["aux"] == {
        "kernel_size": (2,),
        "stride": (1,),
        "padding": (1,),
        "ceil_mode": True,
        "count_include_pad": False,
    }
    tree, _ = AdaptiveAvgPool1d(5)
    assert tree["apply"] is adaptive_avg_pool1d_apply and tree["aux"] == {"output_size": (5,)}
    tree, _ = AdaptiveMaxPool2d((None, 3))
    assert tree["apply"] is adaptive_max_pool2d_apply
    assert tree["aux"] == {"output_size": (None, 3), "return_indices": False}
    assert AdaptiveMaxPool2d(4, True)[0]["aux"] == {"output_size": (4, 4), "return_indices": True}


def test_validate_reports_bad_aux():
    tree, _ = MaxPool2d(2)
    bad = {**tree, "aux": {**tree["aux"], "kernel_size": 2}}
    with pytest.raises(hax.ValidationError, match=r"aux\.kernel_size"):
        hax.validate(bad)
    tree, _ = AvgPool2d(2)
    bad = {**tree, "params": {"weight": jnp.ones(2)}}
    with pytest.raises(hax.ValidationError, match=r"params\.weight"):
        hax.validate(bad)


def test_sequential_and_debug():
    model, config = hax.nn.Sequential(MaxPool2d(2), AvgPool2d(2, 1), AdaptiveAvgPool2d(1))
    indices_module = MaxPool2d(2, dilation=2, return_indices=True)
    model1d, _ = hax.nn.Sequential(MaxPool1d(2), AvgPool1d(2, 1), AdaptiveAvgPool1d(2))
    x = jnp.zeros((2, 3, 8, 8))
    with hax.debug():  # the annotations hold; checked while tracing
        y = jax.eval_shape(lambda x: hax.apply_tree(model, config, x)[1], x)
        out, indices = jax.eval_shape(lambda x: hax.apply_tree(*indices_module, x)[1], x[0])
        y1d = jax.eval_shape(lambda x: hax.apply_tree(model1d, {}, x)[1], x[0])
        adaptive = AdaptiveMaxPool2d((3, 2), return_indices=True)
        out_a, indices_a = jax.eval_shape(lambda x: hax.apply_tree(*adaptive, x)[1], x)
    assert y.shape == (2, 3, 1, 1)
    assert out.shape == indices.shape == (3, 3, 3)
    assert y1d.shape == (3, 8, 2)
    assert out_a.shape == indices_a.shape == (2, 3, 3, 2)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: MaxPool2d(3, padding=2), "half"),
        (lambda: AvgPool2d(2, padding=2), "half"),
        (lambda: MaxPool2d(0), "kernel_size"),
        (lambda: MaxPool2d(2, stride=0), "stride"),
        (lambda: MaxPool2d(2, dilation=0), "dilation"),
        (lambda: MaxPool2d((2, 2, 2)), "kernel_size"),
        (lambda: AvgPool2d(2, divisor_override=0), "divisor_override"),
        (lambda: AdaptiveAvgPool2d((2, 0)), "output_size"),
        (lambda: AdaptiveAvgPool2d((2, 2, 2)), "output_size"),
        (lambda: MaxPool1d(3, padding=2), "half"),
        (lambda: MaxPool1d((2, 2)), "kernel_size must be an int or a tuple of 1 ints"),
        (lambda: AvgPool1d(2, stride=0), "stride"),
        (lambda: AdaptiveAvgPool1d(0), "AdaptiveAvgPool1d: output_size"),
        (lambda: AdaptiveMaxPool2d((2, 0)), "AdaptiveMaxPool2d: output_size"),
    ],
)
def test_constructor_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_apply_errors():
    for module in (MaxPool2d(2), AvgPool2d(2), AdaptiveAvgPool2d(2)):
        with pytest.raises(ValueError, match=r"3D \(unbatched\) or 4D"):
            hax.apply_tree(*module, jnp.ones((4, 4)))
    with pytest.raises(ValueError, match="too small"):
        hax.apply_tree(*MaxPool2d(3), jnp.ones((1, 2, 2)))
    for module in (MaxPool1d(2), AvgPool1d(2), AdaptiveAvgPool1d(2)):
        with pytest.raises(ValueError, match=r"2D \(unbatched\) or 3D"):
            hax.apply_tree(*module, jnp.ones((2, 3, 4, 4)))
    with pytest.raises(ValueError, match=r"AdaptiveMaxPool2d: expected a 3D \(unbatched\) or 4D"):
        hax.apply_tree(*AdaptiveMaxPool2d(2), jnp.ones((4, 4)))
