"""Norms over the channels of an `(N, C, H, W)` input, as libraries write them: permute
to channels-last, run the channels-last norm, permute back. The node holds the
channels-last norm's params and aux (its torch class subclasses it, or mirrors it)."""

import jax
import jax.numpy as jnp

from ..._types import ApplyFn, GlobalConfig, StructureTree
from ...nn import layer_norm_apply, rms_norm_apply


def over_channels(
    apply: ApplyFn, tree: StructureTree, global_config: GlobalConfig, x: jax.Array
) -> tuple[StructureTree, jax.Array]:
    """`apply` (a norm over the trailing axis) run over axis 1 of `x`."""
    tree, y = apply(tree, global_config, jnp.moveaxis(x, 1, -1))
    return tree, jnp.moveaxis(y, -1, 1)


def layer_norm2d_apply(
    tree: StructureTree, global_config: GlobalConfig, x: jax.Array
) -> tuple[StructureTree, jax.Array]:
    """ConvNeXt's `LayerNorm2d` (torchvision and timm): `LayerNorm` over channels."""
    return over_channels(layer_norm_apply, tree, global_config, x)


def rms_norm2d_apply(
    tree: StructureTree, global_config: GlobalConfig, x: jax.Array
) -> tuple[StructureTree, jax.Array]:
    """timm's `RmsNorm2d`: `RMSNorm` over channels."""
    return over_channels(rms_norm_apply, tree, global_config, x)
