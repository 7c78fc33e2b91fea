"""Tests for `Conv1d/2d/3d`, `ConvTranspose1d/2d`, with PyTorch as the reference."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import hax
from hax.interop import from_torch
from hax.nn._conv import (
    Conv1d,
    Conv2d,
    Conv3d,
    ConvTranspose1d,
    ConvTranspose2d,
    conv1d_apply,
    conv2d_apply,
    conv3d_apply,
    conv_transpose1d_apply,
    conv_transpose2d_apply,
)

HAX = {
    "Conv1d": Conv1d,
    "Conv2d": Conv2d,
    "Conv3d": Conv3d,
    "ConvTranspose1d": ConvTranspose1d,
    "ConvTranspose2d": ConvTranspose2d,
}


def build_pair(name, *args, **kwargs):
    """A torch layer and the HAX module with the same args, holding torch's params
    (`from_torch` checks that the names and shapes match: no reshaping needed)."""
    torch_layer = getattr(torch.nn, name)(*args, **kwargs)
    tree, config = HAX[name](*args, **kwargs, rng=0)
    return torch_layer, from_torch(torch_layer, tree), config


# XLA's CPU backend compiles about twice as fast without LLVM optimisations; the
# results are the same to the tolerances used here.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def check_against_torch(torch_layer, tree, config, x_shape, seed=0, **call_kwargs):
    """Forward output, and the gradients of `sum(out * r)` for the input and every param
    (one jitted program per case: eager ops would compile one by one)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=x_shape).astype(np.float32)
    torch_layer.zero_grad(set_to_none=True)
    x_torch = torch.from_numpy(x).requires_grad_(True)
    y_torch = torch_layer(x_torch, **call_kwargs)
    r = rng.normal(size=tuple(y_torch.shape)).astype(np.float32)
    (y_torch * torch.from_numpy(r)).sum().backward()

    def loss(params, x, r):
        _, y = hax.apply_tree({**tree, "params": params}, config, x, **call_kwargs)
        return jnp.sum(y * r), y

    grad = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True), compiler_options=FAST_COMPILE)
    (g_params, g_x), y = grad(tree["params"], jnp.asarray(x), jnp.asarray(r))
    assert y.shape == tuple(y_torch.shape)
    y_ref = y_torch.detach().numpy()
    scale = max(1.0, float(np.abs(y_ref).max()))
    np.testing.assert_allclose(np.asarray(y), y_ref, atol=1e-5 * scale, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(g_x), x_torch.grad.numpy(), atol=1e-4, rtol=1e-4)
    assert set(g_params) == {name for name, _ in torch_layer.named_parameters()}
    for name, p in torch_layer.named_parameters():
        np.testing.assert_allclose(
            np.asarray(g_params[name]), p.grad.numpy(), atol=1e-4, rtol=1e-4, err_msg=name
        )
    return y


# ---------------------------------------------------------------- parity with torch
# Every distinct param shape costs a random-init compile (~1 s on a busy CPU), so the
# cases share a few layer shapes and vary the rest.

CONV2D_CASES = [
    # (args, kwargs, input shape)
    ((3, 4, 3), {}, (2, 3, 7, 9)),
    ((3, 4, 3), {"stride": (2, 1), "padding": (1, 2), "dilation": (1, 3)}, (1, 3, 6, 9)),
    ((3, 4, 3), {"padding": "same", "dilation": (2, 1)}, (2, 3, 6, 7)),
    ((3, 4, 3), {"padding": "valid", "stride": 2}, (3, 9, 7)),  # unbatched
    ((3, 4, (2, 4)), {"padding": "same"}, (2, 3, 6, 7)),  # even kernel: extra pad at the end
    ((3, 4, (2, 4)), {"padding": "same", "dilation": (3, 2)}, (3, 7, 8)),  # unbatched
    ((4, 4, 3), {"groups": 2, "padding": 1}, (2, 4, 6, 5)),
    ((4, 4, 3), {"groups": 4, "stride": 2, "bias": False}, (2, 4, 7, 6)),  # depthwise
]


@pytest.mark.parametrize("args, kwargs, shape", CONV2D_CASES)
def test_conv2d_matches_torch(args, kwargs, shape):
    check_against_torch(*build_pair("Conv2d", *args, **kwargs), shape)


@pytest.mark.parametrize(
    "mode, kwargs, shape",
    [
        ("reflect", {"padding": (1, 2), "stride": (2, 1)}, (2, 3, 6, 7)),
        ("replicate", {"padding": "same", "dilation": (1, 2)}, (2, 3, 5, 9)),
        ("circular", {"padding": (1, 2), "stride": (2, 1)}, (3, 6, 7)),  # unbatched
    ],
)
def test_conv2d_padding_modes_match_torch(mode, kwargs, shape):
    layer = build_pair("Conv2d", 3, 4, (2, 4), padding_mode=mode, **kwargs)
    check_against_torch(*layer, shape)


CONV1D_CASES = [
    ((4, 4, 3), {"stride": 2, "padding": 1, "groups": 2}, (2, 4, 10)),
    (
        (3, 4, 4),
        {"padding": "same", "dilation": 3, "padding_mode": "reflect", "bias": False},
        (3, 11),
    ),
]


@pytest.mark.parametrize("args, kwargs, shape", CONV1D_CASES)
def test_conv1d_matches_torch(args, kwargs, shape):
    check_against_torch(*build_pair("Conv1d", *args, **kwargs), shape)


CONV3D_CASES = [
    ((2, 4, (2, 3, 1)), {"stride": (1, 2, 1), "padding": (1, 0, 2), "groups": 2}, (2, 2, 4, 5, 3)),
    ((2, 4, (2, 3, 1)), {"padding": "same", "padding_mode": "circular"}, (2, 3, 4, 3)),
]


@pytest.mark.parametrize("args, kwargs, shape", CONV3D_CASES)
def test_conv3d_matches_torch(args, kwargs, shape):
    check_against_torch(*build_pair("Conv3d", *args, **kwargs), shape)


TRANSPOSE_CASES = [
    ((3, 4, 3), {"padding": 3}, (3, 6, 5)),  # padding > kernel - 1 crops; unbatched
    (
        (3, 4, (2, 3)),
        {"stride": (2, 3), "padding": (0, 1), "output_padding": (1, 2), "dilation": (2, 1)},
        (1, 3, 3, 4),
    ),
    ((4, 4, 3), {"groups": 2, "stride": 2, "dilation": 2, "bias": False}, (2, 4, 3, 5)),
]


@pytest.mark.parametrize("args, kwargs, shape", TRANSPOSE_CASES)
def test_conv_transpose2d_matches_torch(args, kwargs, shape):
    check_against_torch(*build_pair("ConvTranspose2d", *args, **kwargs), shape)


TRANSPOSE1D_CASES = [
    ((3, 4, 3), {}, (2, 3, 7)),  # the defaults
    ((3, 4, 3), {"padding": 2}, (3, 6)),  # unbatched
    ((3, 4, 4), {"stride": 3, "padding": 1, "output_padding": 2, "dilation": 2}, (1, 3, 5)),
    ((4, 6, 3), {"groups": 2, "stride": 2, "bias": False}, (2, 4, 5)),
]


@pytest.mark.parametrize("args, kwargs, shape", TRANSPOSE1D_CASES)
def test_conv_transpose1d_matches_torch(args, kwargs, shape):
    check_against_torch(*build_pair("ConvTranspose1d", *args, **kwargs), shape)


def test_conv_transpose1d_output_size_matches_torch():
    torch_layer, tree, config = build_pair("ConvTranspose1d", 3, 4, 3, stride=3, padding=1)
    y = check_against_torch(torch_layer, tree, config, (2, 3, 5), output_size=(2, 4, 15))
    assert y.shape == (2, 4, 15)
    for shape, output_size in [((3, 5), (14,)), ((3, 5), (4, 13)), ((1, 3, 5), (15,))]:
        expected = tuple(torch_layer(torch.zeros(shape), output_size=output_size).shape)
        out = jax.eval_shape(
            lambda x, o=output_size: hax.apply_tree(tree, config, x, output_size=o)[1],
            jnp.zeros(shape),
        )
        assert out.shape == expected
    with pytest.raises(ValueError, match="valid sizes range from"):
        hax.apply_tree(tree, config, jnp.ones((3, 5)), output_size=(16,))


def test_conv_transpose1d_converts_from_torch():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv1d(3, 4, 3, stride=2), torch.nn.ConvTranspose1d(4, 2, 3, 2, 1, 1, bias=False)
    )
    tree, config = hax.interop.convert(model)
    layer = tree["submodules"]["1"]
    assert layer["apply"] is conv_transpose1d_apply and set(layer["params"]) == {"weight"}
    assert layer["aux"]["output_padding"] == (1,) and layer["aux"]["stride"] == (2,)
    x = np.random.default_rng(0).normal(size=(2, 3, 9)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(hax.apply_tree(tree, config, jnp.asarray(x))[1], expected, atol=1e-5)


def test_conv_transpose2d_output_size_matches_torch():
    torch_layer, tree, config = build_pair("ConvTranspose2d", 3, 4, 3, stride=2, padding=1)
    y = check_against_torch(torch_layer, tree, config, (2, 3, 4, 5), output_size=(2, 4, 8, 9))
    assert y.shape == (2, 4, 8, 9)
    for shape, output_size in [
        ((3, 4, 5), (4, 8, 10)),
        ((3, 4, 5), (7, 10)),
        ((1, 3, 4, 5), (8, 9)),
    ]:
        x = torch.zeros(shape)
        expected = tuple(torch_layer(x, output_size=output_size).shape)
        out = jax.eval_shape(
            lambda x, o=output_size: hax.apply_tree(tree, config, x, output_size=o)[1],
            jnp.zeros(shape),
        )
        assert out.shape == expected


def test_conv_transpose2d_output_size_out_of_range():
    tree, config = ConvTranspose2d(3, 4, 3, stride=2, padding=1, rng=0)
    with pytest.raises(ValueError, match="valid sizes range from"):
        hax.apply_tree(tree, config, jnp.ones((1, 3, 4, 5)), output_size=(10, 10))
    with pytest.raises(ValueError, match="output_size"):
        hax.apply_tree(tree, config, jnp.ones((1, 3, 4, 5)), output_size=(8,))


def test_conv_transpose2d_is_the_gradient_of_conv2d():
    """The transposed conv with a conv's weight is that conv's vector-Jacobian product."""
    conv, _ = Conv2d(4, 4, 3, stride=2, padding=1, groups=2, bias=False, rng=1)
    tconv, _ = ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1, groups=2, rng=0)
    tconv = {**tconv, "params": {"weight": conv["params"]["weight"], "bias": jnp.zeros(4)}}

    @jax.jit
    def both(x, cot):
        _, vjp = jax.vjp(lambda x: hax.apply_tree(conv, {}, x)[1], x)
        return vjp(cot)[0], hax.apply_tree(tconv, {}, cot)[1]

    x = np.random.default_rng(2).normal(size=(2, 4, 8, 6)).astype(np.float32)
    cot = np.random.default_rng(3).normal(size=(2, 4, 4, 3)).astype(np.float32)
    expected, out = both(x, cot)
    np.testing.assert_allclose(np.asarray(out), np.asarray(expected), atol=1e-5)


def test_layers_under_debug():
    """The apply functions' jaxtyping annotations hold, batched or not (checked while
    tracing)."""
    x = jnp.zeros((2, 3, 6, 6))
    modules = {
        (2, 4, 6, 6): Conv2d(3, 4, 3, padding="same", rng=0),
        (2, 4, 13, 13): ConvTranspose2d(3, 4, 3, stride=2, rng=0),
        (2, 4, 13): ConvTranspose1d(3, 4, 3, stride=2, rng=0),
        (2, 4, 4): Conv1d(3, 4, 3, rng=0),
        (2, 4, 5, 4, 6): Conv3d(3, 4, (2, 3, 1), rng=0),
    }
    with hax.debug():
        for shape, module in modules.items():
            rank = len(shape) - 2
            x = jnp.zeros((2, 3, *([6] * rank)))
            out = jax.eval_shape(lambda x, m=module: hax.apply_tree(*m, x)[1], x)
            assert out.shape == shape
            out = jax.eval_shape(lambda x, m=module: hax.apply_tree(*m, x)[1], x[0])
            assert out.shape == shape[1:]
        with pytest.raises(Exception, match="in_channels"):  # x does not fit the annotation
            jax.eval_shape(lambda x: hax.apply_tree(*module, x)[1], x[0, 0])


# ---------------------------------------------------------------- structure and init


def test_conv2d_tree_layout_and_aux():
    tree, config = Conv2d(4, 4, (3, 3), stride=2, padding=(1, 0), groups=2, rng=0)
    assert config == {}
    assert tree["apply"] is conv2d_apply
    assert tree["params"]["weight"].shape == (4, 2, 3, 3)
    assert tree["params"]["bias"].shape == (4,)
    assert tree["params"]["weight"].dtype == jnp.float32
    assert tree["aux"] == {
        "in_channels": 4,
        "out_channels": 4,
        "kernel_size": (3, 3),
        "stride": (2, 2),
        "padding": (1, 0),
        "dilation": (1, 1),
        "groups": 2,
        "bias": True,
        "padding_mode": "zeros",
    }
    assert tree["buffers"] == {} and tree["submodules"] == {}
    assert hax.is_structure_tree(tree)
    assert Conv2d(3, 4, 3, padding="same", rng=0)[0]["aux"]["padding"] == "same"
    assert set(Conv2d(3, 4, 3, bias=False, rng=0)[0]["params"]) == {"weight"}
    tree, _ = Conv1d(3, 4, 3, rng=0)
    assert tree["apply"] is conv1d_apply and tree["params"]["weight"].shape == (4, 3, 3)
    tree, _ = Conv3d(2, 4, (2, 3, 1), rng=0)
    assert tree["apply"] is conv3d_apply and tree["params"]["weight"].shape == (4, 2, 2, 3, 1)


def test_conv_transpose2d_tree_layout_and_aux():
    tree, config = ConvTranspose2d(3, 4, 3, stride=2, output_padding=1, rng=0)
    assert config == {}
    assert tree["apply"] is conv_transpose2d_apply
    assert tree["params"]["weight"].shape == (3, 4, 3, 3)  # (in, out // groups, kH, kW)
    assert tree["params"]["bias"].shape == (4,)
    assert tree["aux"]["output_padding"] == (1, 1)
    assert tree["aux"]["stride"] == (2, 2) and tree["aux"]["padding"] == (0, 0)
    tree, config = ConvTranspose2d(4, 4, 3, groups=2, rng=0)
    assert tree["params"]["weight"].shape == (4, 2, 3, 3)


def test_conv_transpose1d_tree_layout_and_aux():
    tree, config = ConvTranspose1d(3, 4, 3, 2, 1, 1, 1, False, 2, rng=0)  # torch's order
    assert config == {} and tree["apply"] is conv_transpose1d_apply
    assert tree["params"]["weight"].shape == (3, 4, 3)  # (in, out // groups, k)
    assert set(tree["params"]) == {"weight"}
    assert tree["aux"] == {
        "in_channels": 3,
        "out_channels": 4,
        "kernel_size": (3,),
        "stride": (2,),
        "padding": (1,),
        "output_padding": (1,),
        "groups": 1,
        "bias": False,
        "dilation": (2,),
        "padding_mode": "zeros",
    }
    with pytest.raises(ValueError, match=r"ConvTranspose1d: output_padding \(2,\) must be"):
        ConvTranspose1d(3, 4, 3, stride=2, output_padding=2, rng=0)
    with pytest.raises(ValueError, match='ConvTranspose1d: only "zeros" padding mode'):
        ConvTranspose1d(3, 4, 3, padding_mode="reflect", rng=0)
    with pytest.raises(
        ValueError, match="ConvTranspose1d: kernel_size must be an int or a tuple of 1"
    ):
        ConvTranspose1d(3, 4, (3, 3), rng=0)


def test_dtype_and_rng_context():
    tree, _ = Conv2d(3, 4, 3, rng=0, dtype=jnp.bfloat16)
    assert tree["params"]["weight"].dtype == jnp.bfloat16
    assert tree["params"]["bias"].dtype == jnp.bfloat16
    y = jax.eval_shape(
        lambda x: hax.apply_tree(tree, {}, x)[1], jnp.ones((1, 3, 4, 4), jnp.bfloat16)
    )
    assert y.dtype == jnp.bfloat16
    with hax.rng_context(0):
        a, b = Conv2d(3, 4, 3), Conv2d(3, 4, 3)
    assert not np.allclose(a[0]["params"]["weight"], b[0]["params"]["weight"])
    with pytest.raises(ValueError, match="rng"):
        Conv2d(3, 4, 3)


def check_uniform(values, bound, torch_values):
    values = np.asarray(values, np.float64).ravel()
    assert np.abs(values).max() <= bound
    assert np.abs(values).max() > 0.98 * bound  # fills the interval
    assert abs(values.std() / (bound / math.sqrt(3)) - 1) < 0.05
    assert abs(values.mean()) < 0.05 * bound
    # torch's default init has the same bound
    assert np.abs(torch_values).max() <= bound
    assert np.abs(torch_values).max() > 0.98 * bound


@pytest.mark.parametrize(
    "name, args, kwargs, fan_in",
    [
        ("Conv2d", (32, 64, (3, 2)), {"groups": 2}, 16 * 6),
        ("ConvTranspose2d", (32, 64, (3, 2)), {"groups": 2}, 32 * 6),  # fan_in from out_channels
        ("ConvTranspose1d", (32, 64, 5), {"groups": 4}, 16 * 5),
    ],
)
def test_default_init_matches_torch(name, args, kwargs, fan_in):
    tree, _ = HAX[name](*args, **kwargs, rng=1)
    torch_layer = getattr(torch.nn, name)(*args, **kwargs)
    bound = 1 / math.sqrt(fan_in)
    check_uniform(tree["params"]["weight"], bound, torch_layer.weight.detach().numpy())
    bias = np.asarray(tree["params"]["bias"])
    assert np.abs(bias).max() <= bound
    assert np.abs(bias).max() > 0.9 * bound
    assert np.abs(torch_layer.bias.detach().numpy()).max() <= bound
    assert not np.allclose(bias, np.asarray(tree["params"]["weight"]).reshape(-1)[: bias.size])


# ---------------------------------------------------------------- validation and errors


def test_validate_reports_wrong_weight_shapes():
    model, _ = hax.nn.Sequential(Conv2d(4, 4, 3, groups=2, rng=0), ConvTranspose2d(3, 4, 3, rng=1))
    assert hax.validate(model) is model
    conv, tconv = model["submodules"]["0"], model["submodules"]["1"]
    bad = {
        **model,
        "submodules": {
            "0": {**conv, "params": {**conv["params"], "weight": jnp.ones((4, 4, 3, 3))}},
            "1": {**tconv, "params": {**tconv["params"], "bias": jnp.ones((3,))}},
        },
    }
    with pytest.raises(hax.ValidationError) as err:
        hax.validate(bad)
    keys = {(p.path, p.key) for p in err.value.errors}
    assert keys == {("0", "params.weight"), ("1", "params.bias")}
    assert "in_channels//groups" in str(err.value)


@pytest.mark.parametrize(
    "weight_shape",
    [(5, 3, 3, 3), (4, 3, 3), (4, 3, 3, 3, 3), (4, 2, 3, 3)],
)
def test_validate_reports_wrong_weight(weight_shape):
    """Wrong out_channels, wrong ranks, wrong in_channels."""
    tree, _ = Conv2d(3, 4, 3, rng=0)
    bad = {**tree, "params": {**tree["params"], "weight": jnp.ones(weight_shape)}}
    with pytest.raises(hax.ValidationError, match=r"params\.weight"):
        hax.validate(bad)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Conv2d(2, 2, 3, stride=2, padding="same"), "strided"),
        (lambda: Conv2d(2, 2, 3, padding="full"), "padding"),
        (lambda: Conv2d(3, 2, 3, groups=2), "in_channels"),
        (lambda: Conv2d(2, 3, 3, groups=2), "out_channels"),
        (lambda: Conv2d(2, 3, 3, groups=0), "groups"),
        (lambda: Conv2d(2, 3, 3, padding_mode="mirror"), "padding_mode"),
        (lambda: Conv2d(2, 3, (3, 3, 3)), "kernel_size"),
        (lambda: Conv2d(2, 3, 3, stride=0), "stride"),
        (lambda: Conv2d(2, 3, 3, padding=-1), "padding"),
        (lambda: Conv1d(2, 3, 3, dilation=0), "dilation"),
        (lambda: ConvTranspose2d(2, 3, 3, stride=2, output_padding=2), "output_padding"),
        (lambda: ConvTranspose2d(2, 3, 3, padding_mode="reflect"), "zeros"),
    ],
)
def test_constructor_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_apply_errors():
    tree, config = Conv2d(3, 4, 3, rng=0)
    with pytest.raises(ValueError, match=r"3D \(unbatched\) or 4D"):
        hax.apply_tree(tree, config, jnp.ones((1, 1, 3, 5, 5)))
    with pytest.raises(ValueError, match="3 input channels"):
        hax.apply_tree(tree, config, jnp.ones((1, 2, 5, 5)))
    with pytest.raises(ValueError, match="smaller than the dilated kernel"):
        hax.apply_tree(tree, config, jnp.ones((1, 3, 2, 5)))
    tree, config = ConvTranspose2d(3, 4, 3, rng=0)
    with pytest.raises(ValueError, match="3 input channels"):
        hax.apply_tree(tree, config, jnp.ones((1, 4, 5, 5)))


@pytest.mark.parametrize(
    "mode, padding, size",
    [("reflect", 2, 2), ("reflect", 1, 1), ("circular", 3, 2), ("reflect", "same", 2)],
)
def test_padding_mode_wider_than_input_raises_like_torch(mode, padding, size):
    # PyTorch refuses to reflect past the far edge or to wrap around more than once;
    # jnp.pad would repeat the reflection or the wrap instead
    torch_layer, tree, config = build_pair("Conv1d", 1, 1, 5, padding=padding, padding_mode=mode)
    with pytest.raises(RuntimeError, match=r"[Pp]adding"):
        torch_layer(torch.ones(1, 1, size))
    with pytest.raises(ValueError, match=f"padding_mode='{mode}'"):
        hax.apply_tree(tree, config, jnp.ones((1, 1, size)))


@pytest.mark.parametrize("height", [1, 2])
def test_conv_transpose_output_of_size_zero_is_empty_like_torch(height):
    kwargs = {"stride": (1, 3), "padding": (1, 0), "groups": 2}
    theirs = torch.nn.ConvTranspose2d(2, 4, (2 if height == 1 else 1, 3), **kwargs)
    tree, config = hax.nn.ConvTranspose2d(2, 4, tuple(theirs.kernel_size), **kwargs, rng=0)
    tree = from_torch(theirs, tree)
    x = np.ones((1, 2, height, 7), np.float32)
    _, ours = hax.apply_tree(tree, config, jnp.asarray(x))
    assert ours.shape == tuple(theirs(torch.from_numpy(x)).shape) == (1, 4, 0, 21)


def test_conv_transpose_negative_output_size_names_the_padding():
    tree, config = hax.nn.ConvTranspose2d(2, 4, (1, 3), stride=(1, 3), padding=(1, 0), rng=0)
    with pytest.raises(ValueError, match=r"output size \(-1, 21\) is negative.*padding=\(1, 0\)"):
        hax.apply_tree(tree, config, jnp.ones((1, 2, 1, 7)))
