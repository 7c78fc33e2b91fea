"""`timm.layers` that timm's CNNs share: activations, norms (with their activation),
'SAME'-padded convolutions, global pools, classifier heads and drop-path. Classes that
are a `hax.nn` layer under another name convert to it; the others run with an apply
that mirrors their torch `forward`."""

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ..._types import GlobalConfig, InputArray, Module, StructureTree
from ...nn import GELU, Sigmoid, SiLU, Tanh, batch_norm2d_apply, conv2d_apply
from ...nn._layer import ConvertChild, Converter
from ...nn._linear import _convert as _convert_linear
from ...nn._norm import _convert_layer_norm, _convert_rms_norm
from ...nn.functional import hardsigmoid, mish
from .._library import register_converter
from ._elementwise import elementwise, quick_gelu
from ._norm2d import layer_norm2d_apply, over_channels, rms_norm2d_apply
from ._randomness import drop_path_apply
from ._registry import register_all

_LAYERS = "timm.layers."

# ---------------------------------------------------------------- activations


def _builds(make: Callable[[], Module]) -> Converter:
    """A converter that builds `make()` (an activation without arguments)."""

    def convert(m: Any, convert_child: ConvertChild) -> Module:
        return make()

    return convert


def _hard_swish(x: jax.Array) -> jax.Array:
    """`HardSwish`: `x * relu6(x + 3) / 6`, as timm writes it (`x` times the gate)."""
    return x * hardsigmoid(x)


def _hard_mish(x: jax.Array) -> jax.Array:
    """`HardMish`: `0.5 x clamp(x + 2, 0, 2)`."""
    return 0.5 * x * jnp.clip(x + 2.0, 0.0, 2.0)


# ---------------------------------------------------------------- norms


def simple_norm_apply(
    tree: StructureTree, global_config: GlobalConfig, x: InputArray
) -> tuple[StructureTree, jax.Array]:
    """`SimpleNorm`: `x / sqrt(var(x) + eps) * weight` over the trailing
    `normalized_shape` dims (unbiased variance, as `torch.var`; no mean subtracted)."""
    aux: dict[str, Any] = tree["aux"]
    params = tree["params"]
    axes = tuple(range(-len(aux["normalized_shape"]), 0))
    x = jnp.asarray(x)
    y = x * jax.lax.rsqrt(jnp.var(x, axis=axes, keepdims=True, ddof=1) + aux["eps"])
    if "weight" in params:
        y = y * params["weight"]
    return tree, y


simple_norm2d_apply = over_channels(simple_norm_apply)
"""`SimpleNorm2d`: `SimpleNorm` over the channels of an `(N, C, H, W)` input."""


def batch_norm_act2d_apply(
    tree: StructureTree, global_config: GlobalConfig, x: InputArray
) -> tuple[StructureTree, jax.Array]:
    """`BatchNormAct2d`: `BatchNorm2d` (its node holds the norm's params, buffers and
    aux), then its `drop` and `act` children."""
    tree, x = batch_norm2d_apply(tree, global_config, x)
    return _drop_act(tree, global_config, x)


@organized_apply
def _drop_act(org: StateOrganizer, x: jax.Array) -> Any:
    return org.act(org.drop(x))


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """timm's `get_same_padding`, split low/high as `pad_same` does (extra on the high
    side), as TensorFlow's 'SAME'."""
    total = max((-(-size // stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def conv2d_same_apply(
    tree: StructureTree, global_config: GlobalConfig, x: InputArray
) -> tuple[StructureTree, jax.Array]:
    """`Conv2dSame` (the `tf_` models): pad for 'SAME' from the input size, then the
    node's `Conv2d` (its aux says padding 0)."""
    aux: dict[str, Any] = tree["aux"]
    kernel = tree["params"]["weight"].shape[2:]
    pads = [
        _same_padding(size, k, s, d)
        for size, k, s, d in zip(x.shape[2:], kernel, aux["stride"], aux["dilation"], strict=True)
    ]
    return conv2d_apply(tree, global_config, jnp.pad(x, ((0, 0), (0, 0), *pads)))


@organized_apply
def conv_norm_act_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`ConvNormAct`: conv, norm-activation (`bn`), anti-aliasing when it has one."""
    x = org.bn(org.conv(x))
    aa = getattr(org, "aa", None)
    return x if aa is None else aa(x)


# ---------------------------------------------------------------- pools and heads


@organized_apply
def select_adaptive_pool2d_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`SelectAdaptivePool2d`: its pool, then its flatten."""
    return org.flatten(org.pool(x))


@organized_apply
def fast_adaptive_avg_pool_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`FastAdaptiveAvgPool`: the mean over the spatial `dim`."""
    return jnp.mean(x, axis=org.dim, keepdims=not org.flatten)


@organized_apply
def fast_adaptive_max_pool_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`FastAdaptiveMaxPool`: the max over the spatial `dim`."""
    return jnp.max(x, axis=org.dim, keepdims=not org.flatten)


@organized_apply
def fast_adaptive_avg_max_pool_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`FastAdaptiveAvgMaxPool`: the mean of the spatial mean and max."""
    keep = not org.flatten
    return 0.5 * jnp.mean(x, axis=org.dim, keepdims=keep) + 0.5 * jnp.max(
        x, axis=org.dim, keepdims=keep
    )


@organized_apply
def fast_adaptive_cat_avg_max_pool_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`FastAdaptiveCatAvgMaxPool`: the spatial mean and max, concatenated."""
    keep = not org.flatten
    x_avg = jnp.mean(x, axis=org.dim_reduce, keepdims=keep)
    x_max = jnp.max(x, axis=org.dim_reduce, keepdims=keep)
    return jnp.concatenate((x_avg, x_max), axis=org.dim_cat)


@organized_apply
def classifier_head_apply(org: StateOrganizer, x: InputArray, pre_logits: bool = False) -> Any:
    """`ClassifierHead`: pool, dropout, `fc`, flatten."""
    x = org.drop(org.global_pool(x))
    if pre_logits:
        return org.flatten(x)
    return org.flatten(org.fc(x))


@organized_apply
def norm_mlp_classifier_head_apply(
    org: StateOrganizer, x: InputArray, pre_logits: bool = False
) -> Any:
    """`NormMlpClassifierHead`: pool, norm, flatten, pre-logits MLP, dropout, `fc`."""
    x = org.flatten(org.norm(org.global_pool(x)))
    x = org.drop(org.pre_logits(x))
    return x if pre_logits else org.fc(x)


_ACTIVATIONS: dict[str, Callable[[], Module]] = {
    "activations.GELU": GELU,
    "activations.GELUTanh": functools.partial(GELU, "tanh"),
    "activations.Sigmoid": Sigmoid,
    "activations.Tanh": Tanh,
    "activations.Swish": SiLU,
}
for _path, _make in _ACTIVATIONS.items():
    register_converter(_LAYERS + _path, _builds(_make))
register_converter(_LAYERS + "linear.Linear", _convert_linear)
for _path in ("norm.LayerNorm", "norm.LayerNormFp32"):
    register_converter(_LAYERS + _path, _convert_layer_norm)
register_converter(_LAYERS + "norm.RmsNorm", _convert_rms_norm)
register_all(
    _LAYERS,
    {
        "activations.QuickGELU": elementwise(quick_gelu),
        "activations.Mish": elementwise(mish),
        "activations.HardSigmoid": elementwise(hardsigmoid),
        "activations.HardSwish": elementwise(_hard_swish),
        "activations.HardMish": elementwise(_hard_mish),
        "norm.LayerNorm2d": layer_norm2d_apply,
        "norm.RmsNorm2d": rms_norm2d_apply,
        "norm.SimpleNorm": simple_norm_apply,
        "norm.SimpleNorm2d": simple_norm2d_apply,
        "norm_act.BatchNormAct2d": batch_norm_act2d_apply,
        "conv2d_same.Conv2dSame": conv2d_same_apply,
        "conv_bn_act.ConvNormAct": conv_norm_act_apply,
        "adaptive_avgmax_pool.SelectAdaptivePool2d": select_adaptive_pool2d_apply,
        "adaptive_avgmax_pool.FastAdaptiveAvgPool": fast_adaptive_avg_pool_apply,
        "adaptive_avgmax_pool.FastAdaptiveMaxPool": fast_adaptive_max_pool_apply,
        "adaptive_avgmax_pool.FastAdaptiveAvgMaxPool": fast_adaptive_avg_max_pool_apply,
        "adaptive_avgmax_pool.FastAdaptiveCatAvgMaxPool": fast_adaptive_cat_avg_max_pool_apply,
        "classifier.ClassifierHead": classifier_head_apply,
        "classifier.NormMlpClassifierHead": norm_mlp_classifier_head_apply,
        "drop.DropPath": drop_path_apply,
    },
    rng={"drop.DropPath"},
    # BatchNorm2d's apply reads `axis_name` (for cross-device statistics): none here
    aux={"norm_act.BatchNormAct2d": lambda m: {"axis_name": None}},
)
