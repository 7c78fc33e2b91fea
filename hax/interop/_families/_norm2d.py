"""Norms over the channels of an `(N, C, H, W)` input, as libraries write them: permute
to channels-last, run the channels-last norm, permute back. The node holds the
channels-last norm's params and aux (its torch class subclasses it, or mirrors it)."""

import jax
import jax.numpy as jnp

from ..._types import ApplyFn, GlobalConfig, InputArray, StructureTree
from ...nn import layer_norm_apply, rms_norm_apply


def over_channels(apply: ApplyFn) -> ApplyFn:
    """`apply` (a norm over the trailing axis) run over axis 1 of its input."""

    def channels_apply(
        tree: StructureTree, global_config: GlobalConfig, x: InputArray
    ) -> tuple[StructureTree, jax.Array]:
        tree, y = apply(tree, global_config, jnp.moveaxis(x, 1, -1))
        return tree, jnp.moveaxis(y, -1, 1)

    return channels_apply


layer_norm2d_apply = over_channels(layer_norm_apply)
"""ConvNeXt's `LayerNorm2d` (torchvision and timm): `LayerNorm` over channels."""

rms_norm2d_apply = over_channels(rms_norm_apply)
"""timm's `RmsNorm2d`: `RMSNorm` over channels."""
