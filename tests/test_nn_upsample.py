"""Tests for `Upsample` and `hax.nn.functional.interpolate`, with PyTorch as the reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import hax
from hax.nn import Upsample, functional as F, upsample_apply

# XLA's CPU backend compiles about twice as fast without LLVM optimisations; the
# results are the same to the tolerances used here.
FAST_COMPILE = {"xla_backend_optimization_level": 0}

CASES = [
    # (Upsample kwargs, input shape)
    ({"scale_factor": 2}, (2, 3, 5)),  # the defaults: nearest
    ({"size": (7, 3)}, (2, 3, 5, 4)),  # nearest, one axis down
    ({"scale_factor": (1.7, 2.3)}, (1, 2, 5, 4)),  # nearest, PyTorch's float32 rounding
    ({"scale_factor": (1.7, 2.3), "mode": "nearest-exact"}, (1, 2, 5, 4)),
    ({"size": 3, "mode": "nearest"}, (1, 2, 4, 5, 3)),  # 3-d
    ({"size": (7, 3), "mode": "bilinear"}, (2, 3, 5, 4)),
    ({"size": (7, 3), "mode": "bilinear", "align_corners": True}, (2, 3, 5, 4)),
    ({"scale_factor": (1.7, 0.6), "mode": "bilinear"}, (2, 3, 5, 4)),  # up and down
    ({"scale_factor": 1.7, "mode": "bilinear", "recompute_scale_factor": True}, (1, 2, 5, 4)),
    ({"scale_factor": (1.7, 0.6), "mode": "bicubic"}, (2, 3, 5, 4)),
    ({"size": (9, 2), "mode": "bicubic", "align_corners": True}, (1, 2, 5, 4)),
    ({"scale_factor": 2.5, "mode": "linear"}, (2, 3, 5)),
    ({"size": 1, "mode": "linear", "align_corners": True}, (2, 3, 5)),  # one output sample
    ({"scale_factor": 1.5, "mode": "trilinear"}, (1, 2, 3, 4, 5)),
    ({"size": (3, 4), "mode": "area"}, (2, 3, 7, 5)),
    ({"scale_factor": 0.5, "mode": "area"}, (2, 3, 7, 5)),  # recomputes the scale, as torch
]


def case_id(case):
    kwargs, shape = case
    return "-".join(f"{k}={v}" for k, v in kwargs.items()) + f"-{len(shape)}d"


@pytest.mark.parametrize("kwargs, shape", CASES, ids=[case_id(c) for c in CASES])
def test_upsample_matches_torch(kwargs, shape):
    """Values and the input gradient of `sum(out * r)`, for the layer and `interpolate`."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(np.float32)
    x_torch = torch.from_numpy(x).requires_grad_(True)
    y_torch = torch.nn.Upsample(**kwargs)(x_torch)
    r = rng.normal(size=tuple(y_torch.shape)).astype(np.float32)
    (y_torch * torch.from_numpy(r)).sum().backward()
    tree, config = Upsample(**kwargs)

    def loss(x, r):
        _, y = hax.apply_tree(tree, config, x)
        return jnp.sum(y * r), (y, F.interpolate(x, **kwargs))

    grad = jax.jit(jax.grad(loss, has_aux=True), compiler_options=FAST_COMPILE)
    g_x, (y, y_function) = grad(jnp.asarray(x), jnp.asarray(r))
    assert y.shape == tuple(y_torch.shape) and y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), y_torch.detach().numpy(), rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(np.asarray(g_x), x_torch.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(y_function), np.asarray(y))


def test_nearest_is_an_exact_gather():
    """Nearest modes copy values (infinities and NaNs included) and keep integer dtypes."""
    x = np.arange(2 * 3 * 5, dtype=np.int32).reshape(2, 3, 5)
    y = F.interpolate(x, scale_factor=1.7)
    assert y.dtype == jnp.int32
    expected = torch.nn.functional.interpolate(torch.from_numpy(x).float(), scale_factor=1.7)
    np.testing.assert_array_equal(np.asarray(y), expected.numpy().astype(np.int32))
    special = np.array([[[np.inf, -np.inf, np.nan, 1.0]]], np.float32)
    np.testing.assert_array_equal(
        np.asarray(F.interpolate(special, size=6)),
        torch.nn.functional.interpolate(torch.from_numpy(special), size=6).numpy(),
    )


def test_half_precision_inputs_keep_their_dtype():
    x = np.random.default_rng(1).normal(size=(1, 2, 5, 4)).astype(np.float32)
    x_bf16 = torch.from_numpy(x).to(torch.bfloat16)
    expected = torch.nn.functional.interpolate(x_bf16, size=(7, 6), mode="bilinear")
    y = F.interpolate(jnp.asarray(x, jnp.bfloat16), size=(7, 6), mode="bilinear")
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(
        np.asarray(y, np.float32), expected.float().numpy(), rtol=1e-2, atol=1e-2
    )


def test_upsample_aux_is_torchs_attributes():
    tree, config = Upsample(scale_factor=2)
    assert config == {} and tree["apply"] is upsample_apply
    assert tree["params"] == {} and tree["buffers"] == {}
    assert tree["aux"] == {
        "size": None,
        "scale_factor": 2.0,
        "mode": "nearest",
        "align_corners": None,
        "recompute_scale_factor": None,
    }
    for kwargs in (
        {"size": (4, 5), "mode": "bilinear", "align_corners": True},
        {"scale_factor": (2, 3), "mode": "bicubic", "recompute_scale_factor": True},
        {"size": 7, "mode": "area"},
    ):
        torch_layer = torch.nn.Upsample(**kwargs)
        aux = Upsample(**kwargs)[0]["aux"]
        for key, value in aux.items():
            expected = getattr(torch_layer, key)
            assert value == (tuple(expected) if isinstance(expected, list) else expected), key
    assert Upsample(None, 2, "linear")[0]["aux"]["mode"] == "linear"  # torch's positional order


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "exactly one of size or scale_factor"),
        ({"size": 2, "scale_factor": 2}, "exactly one of size or scale_factor"),
        ({"scale_factor": 2, "mode": "cubic"}, "mode must be one of"),
        ({"scale_factor": 2, "align_corners": True}, "align_corners can only be set"),
    ],
)
def test_upsample_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Upsample(**kwargs)


@pytest.mark.wrong_types
def test_interpolate_errors_name_what_was_found():
    x = jnp.ones((1, 2, 4, 4))
    with pytest.raises(ValueError, match=r"mode='bilinear' takes a 4D .* found shape \(1, 2, 4\)"):
        F.interpolate(jnp.ones((1, 2, 4)), size=3, mode="bilinear")
    with pytest.raises(ValueError, match=r"a 3D, 4D or 5D .* found shape \(2, 4\)"):
        F.interpolate(jnp.ones((2, 4)), size=3)
    with pytest.raises(ValueError, match="2 spatial dimension"):
        F.interpolate(x, size=(2, 3, 4))
    with pytest.raises(ValueError, match="2 spatial dimension"):
        F.interpolate(x, scale_factor=(2.0,))
    with pytest.raises(ValueError, match="recompute_scale_factor"):
        F.interpolate(x, size=2, recompute_scale_factor=True)
    with pytest.raises(ValueError, match="greater than 0"):
        F.interpolate(x, scale_factor=0.2)
    with pytest.raises(TypeError, match="size must be an int"):
        F.interpolate(x, size=(2.0, 3))
    with pytest.raises(ValueError, match="antialias"):
        F.interpolate(x, size=2, mode="bilinear", antialias=True)
    tree, config = Upsample(scale_factor=2, mode="trilinear")
    with pytest.raises(ValueError, match="trilinear"):
        hax.apply_tree(tree, config, x)


def test_upsample_under_debug_and_jit():
    tree, config = Upsample(scale_factor=(2, 1.5), mode="bilinear")
    x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 3, 4, 4)), jnp.float32)
    eager = hax.apply_tree(tree, config, x)[1]
    with hax.debug():
        np.testing.assert_array_equal(hax.apply_tree(tree, config, x)[1], eager)
    state, bound = hax.bind_module(tree, config)
    np.testing.assert_allclose(jax.jit(bound)(state, x)[1], eager, rtol=1e-6)
    assert eager.shape == (2, 3, 8, 6)


def test_upsample_and_its_subclasses_convert_from_torch():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3, padding=1),
        torch.nn.Upsample(scale_factor=1.5, mode="bilinear"),
        torch.nn.UpsamplingNearest2d(size=(7, 9)),
        torch.nn.UpsamplingBilinear2d(scale_factor=2),  # align_corners=True
    )
    tree, config = hax.interop.convert(model)
    for i in "123":
        assert tree["submodules"][i]["apply"] is upsample_apply
    assert tree["submodules"]["3"]["aux"]["align_corners"] is True
    assert tree["submodules"]["2"]["aux"]["size"] == (7, 9)
    x = np.random.default_rng(0).normal(size=(2, 2, 4, 5)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    y = hax.apply_tree(tree, config, jnp.asarray(x))[1]
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5, atol=1e-5)
