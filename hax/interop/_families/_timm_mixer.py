"""timm's all-MLP models (`timm.models.mlp_mixer`): MLP-Mixer (and gMixer), ResMLP
(its `Affine` norms and layer scales) and gMLP (spatial gating). The patch embedding
is timm's `PatchEmbed` and the MLPs are `timm.layers` MLPs; drop-path is `DropPath`.
Each apply mirrors the torch `forward`."""

from typing import Any

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ._registry import register_all


@organized_apply
def mlp_mixer_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`MlpMixer`: patch embedding, blocks, norm, the token mean (`global_pool="avg"`),
    dropout, head."""
    x = org.norm(org.blocks(org.stem(x)))
    if org.global_pool == "avg":
        x = jnp.mean(x, axis=1)
    return org.head(org.head_drop(x))


@organized_apply
def mixer_block_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`MixerBlock`: an MLP across tokens, then one across channels, each pre-norm,
    drop-pathed and residual."""
    tokens = org.mlp_tokens(jnp.swapaxes(org.norm1(x), 1, 2))
    x = x + org.drop_path(jnp.swapaxes(tokens, 1, 2))
    return x + org.drop_path(org.mlp_channels(org.norm2(x)))


@organized_apply
def res_block_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """ResMLP's `ResBlock`: a linear map across tokens and an MLP across channels, each
    after an `Affine` norm, layer-scaled (`ls1`, `ls2`), drop-pathed and residual."""
    tokens = org.linear_tokens(jnp.swapaxes(org.norm1(x), 1, 2))
    x = x + org.drop_path(org.ls1 * jnp.swapaxes(tokens, 1, 2))
    return x + org.drop_path(org.ls2 * org.mlp_channels(org.norm2(x)))


@organized_apply
def affine_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """ResMLP's `Affine`: `beta + alpha * x`."""
    return org.beta + org.alpha * x


@organized_apply
def spatial_gating_unit_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """gMLP's `SpatialGatingUnit`: half the channels, normed and mixed across tokens,
    gate the other half."""
    u, v = jnp.split(x, 2, axis=-1)
    v = org.proj(jnp.swapaxes(org.norm(v), -1, -2))
    return u * jnp.swapaxes(v, -1, -2)


@organized_apply
def spatial_gating_block_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """gMLP's `SpatialGatingBlock`: pre-norm gated MLP, drop-pathed and residual."""
    return x + org.drop_path(org.mlp_channels(org.norm(x)))


register_all(
    "timm.models.mlp_mixer.",
    {
        "MlpMixer": mlp_mixer_apply,
        "MixerBlock": mixer_block_apply,
        "ResBlock": res_block_apply,
        "Affine": affine_apply,
        "SpatialGatingUnit": spatial_gating_unit_apply,
        "SpatialGatingBlock": spatial_gating_block_apply,
    },
)
