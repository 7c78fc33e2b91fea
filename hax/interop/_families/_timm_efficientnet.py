"""timm's EfficientNet family (`timm.models.efficientnet`: EfficientNet and V2, their
`tf_` ports, MNASNet, FBNet, TinyNet) and MobileNetV3 (`timm.models.mobilenetv3`:
also LCNet), with the blocks of `timm.models._efficientnet_blocks` they are built
from. Each apply mirrors the torch `forward`; their norms are `BatchNormAct2d` (in
`_timm_layers`). MixNet's mixed kernels and CondConv's experts are not covered."""

from typing import Any

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ..._types import InputArray
from ._randomness import dropout
from ._registry import register_all


@organized_apply
def efficientnet_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`EfficientNet`: stem, blocks, head conv and norm, global pool, dropout
    (`drop_rate`), classifier."""
    x = org.blocks(org.bn1(org.conv_stem(x)))
    pooled: jax.Array = org.global_pool(org.bn2(org.conv_head(x)))
    return org.classifier(dropout(org, pooled, org.drop_rate))


@organized_apply
def mobilenet_v3_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`MobileNetV3`: stem, blocks, global pool, head conv, norm and activation,
    flatten, dropout (`drop_rate`), classifier."""
    x = org.blocks(org.bn1(org.conv_stem(x)))
    x = org.act2(org.norm_head(org.conv_head(org.global_pool(x))))
    return org.classifier(dropout(org, org.flatten(x), org.drop_rate))


def _space_to_depth(org: StateOrganizer, x: InputArray) -> InputArray:
    """The optional space-to-depth stem of a block (`s2d=1`)."""
    if org.conv_s2d is not None:
        x = org.bn_s2d(org.conv_s2d(x))
    return x


def _skip(org: StateOrganizer, x: jax.Array, shortcut: InputArray) -> Any:
    """Drop-path and the shortcut, when the block has one (`has_skip`)."""
    return org.drop_path(x) + shortcut if org.has_skip else x


@organized_apply
def squeeze_excite_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`SqueezeExcite`: channel means, reduce, activation, expand, gate the input."""
    x_se = jnp.mean(x, axis=(2, 3), keepdims=True)
    x_se = org.conv_expand(org.act1(org.conv_reduce(x_se)))
    return x * org.gate(x_se)


@organized_apply
def conv_bn_act_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`ConvBnAct`: conv, norm-activation, anti-aliasing, optional skip."""
    x = jnp.asarray(x)
    return _skip(org, org.aa(org.bn1(org.conv(x))), x)


@organized_apply
def depthwise_separable_conv_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`DepthwiseSeparableConv`: depthwise conv, SE, pointwise conv, optional skip."""
    y = org.aa(org.bn1(org.conv_dw(_space_to_depth(org, x))))
    y = org.bn2(org.conv_pw(org.se(y)))
    return _skip(org, y, x)


@organized_apply
def inverted_residual_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`InvertedResidual` (MBConv): expand, depthwise, SE, project, optional skip."""
    y = org.bn1(org.conv_pw(_space_to_depth(org, x)))
    y = org.se(org.aa(org.bn2(org.conv_dw(y))))
    y = org.bn3(org.conv_pwl(y))
    return _skip(org, y, x)


@organized_apply
def edge_residual_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`EdgeResidual` (FusedMBConv): full expansion conv, SE, project, optional skip."""
    y = org.se(org.aa(org.bn1(org.conv_exp(x))))
    y = org.bn2(org.conv_pwl(y))
    return _skip(org, y, x)


register_all(
    "timm.models.",
    {
        "efficientnet.EfficientNet": efficientnet_apply,
        "mobilenetv3.MobileNetV3": mobilenet_v3_apply,
        "_efficientnet_blocks.SqueezeExcite": squeeze_excite_apply,
        "_efficientnet_blocks.ConvBnAct": conv_bn_act_apply,
        "_efficientnet_blocks.DepthwiseSeparableConv": depthwise_separable_conv_apply,
        "_efficientnet_blocks.InvertedResidual": inverted_residual_apply,
        "_efficientnet_blocks.EdgeResidual": edge_residual_apply,
    },
    rng={"efficientnet.EfficientNet", "mobilenetv3.MobileNetV3"},
)
