"""`timm.layers` blocks that timm's CNNs are built from: MLPs (plain, gated, with
Global Response Norm), channel attention (squeeze-excitation, ECA) and anti-aliased
downsampling (`BlurPool2d`). Each apply mirrors the torch `forward`."""

from typing import Any

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ..._types import InputArray
from ._registry import register_all

# torch's `F.pad` modes, by their `jnp.pad` names
_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _mlp_out(org: StateOrganizer, hidden: jax.Array, norm: Any, drop1: bool = True) -> Any:
    """How the MLPs end, after their activation: dropout (unless done), `norm`, `fc2`,
    dropout."""
    if drop1:
        hidden = org.drop1(hidden)
    return org.drop2(org.fc2(norm(hidden)))


@organized_apply
def mlp_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`Mlp`: `fc1`, activation, dropout, norm, `fc2`, dropout."""
    return _mlp_out(org, org.act(org.fc1(x)), org.norm)


@organized_apply
def glu_mlp_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`GluMlp`: `fc1` split in two halves along `chunk_dim`, one gating the other."""
    x1, x2 = jnp.split(org.fc1(x), 2, axis=org.chunk_dim)
    hidden = x1 * org.act(x2) if org.gate_last else org.act(x1) * x2
    return _mlp_out(org, hidden, org.norm)


@organized_apply
def gated_mlp_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`GatedMlp` (gMLP): `fc1`, activation, dropout, the `gate` unit, norm, `fc2`,
    dropout."""
    return _mlp_out(org, org.gate(org.drop1(org.act(org.fc1(x)))), org.norm, drop1=False)


@organized_apply
def global_response_norm_mlp_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`GlobalResponseNormMlp` (ConvNeXt-V2): `Mlp` with a `grn` in place of the norm."""
    return _mlp_out(org, org.act(org.fc1(x)), org.grn)


@organized_apply
def global_response_norm_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`GlobalResponseNorm`: scale each channel by its spatial L2 norm over the mean of
    those norms, then `x + bias + weight * x * x_n`."""
    x_g = jnp.sqrt(jnp.sum(jnp.square(x), axis=org.spatial_dim, keepdims=True))
    x_n = x_g / (jnp.mean(x_g, axis=org.channel_dim, keepdims=True) + org.eps)
    shape = org.wb_shape
    return x + (org.bias.reshape(shape) + org.weight.reshape(shape) * (x * x_n))


def _squeeze(org: StateOrganizer, x: jax.Array) -> jax.Array:
    """The per-channel spatial mean, with the max mixed in when `add_maxpool`."""
    x_se = jnp.mean(x, axis=(2, 3), keepdims=True)
    if org.add_maxpool:
        x_se = 0.5 * x_se + 0.5 * jnp.max(x, axis=(2, 3), keepdims=True)
    return x_se


@organized_apply
def se_module_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`SEModule`: squeeze, `fc1`, norm, activation, `fc2`, gate the input."""
    x = jnp.asarray(x)
    x_se = org.act(org.bn(org.fc1(_squeeze(org, x))))
    return x * org.gate(org.fc2(x_se))


@organized_apply
def effective_se_module_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`EffectiveSEModule`: squeeze, one `fc`, gate the input."""
    x = jnp.asarray(x)
    return x * org.gate(org.fc(_squeeze(org, x)))


@organized_apply
def eca_module_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`EcaModule`: a 1-d convolution across the channel means gates each channel."""
    y = jnp.mean(x, axis=(2, 3)).reshape(x.shape[0], 1, -1)
    y = org.conv(y)
    if org.conv2 is not None:
        y = org.conv2(org.act(y))
    return x * org.gate(y).reshape(x.shape[0], -1, 1, 1)


@organized_apply
def ceca_module_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`CecaModule`: `EcaModule` with circular padding across the channels."""
    y = jnp.mean(x, axis=(2, 3)).reshape(x.shape[0], 1, -1)
    y = jnp.pad(y, ((0, 0), (0, 0), (org.padding, org.padding)), mode="wrap")
    return x * org.gate(org.conv(y)).reshape(x.shape[0], -1, 1, 1)


@organized_apply
def blur_pool2d_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`BlurPool2d`: pad (`pad_mode`), then a strided depthwise binomial blur with the
    `filt` buffer (one filter for all channels when `channels` is None)."""
    left, right, top, bottom = org.padding
    x = jnp.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), mode=_PAD_MODES[org.pad_mode])
    channels = x.shape[1] if org.channels is None else org.channels
    weight = jnp.broadcast_to(org.filt, (channels, *org.filt.shape[1:])).astype(x.dtype)
    return jax.lax.conv_general_dilated(
        x, weight, (org.stride, org.stride), "VALID", feature_group_count=channels
    )


register_all(
    "timm.layers.",
    {
        "mlp.Mlp": mlp_apply,
        "mlp.GluMlp": glu_mlp_apply,
        "mlp.GatedMlp": gated_mlp_apply,
        "mlp.GlobalResponseNormMlp": global_response_norm_mlp_apply,
        "grn.GlobalResponseNorm": global_response_norm_apply,
        "squeeze_excite.SEModule": se_module_apply,
        "squeeze_excite.EffectiveSEModule": effective_se_module_apply,
        "eca.EcaModule": eca_module_apply,
        "eca.CecaModule": ceca_module_apply,
        "blur_pool.BlurPool2d": blur_pool2d_apply,
    },
)
