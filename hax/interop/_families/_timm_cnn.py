"""timm's ResNet family (`timm.models.resnet`: ResNet/ResNeXt/SE-ResNet/ECA-ResNet, the
b/c/d/s/t stems, anti-aliased and drop-path variants) and ConvNeXt
(`timm.models.convnext`: V1 and V2). Each apply mirrors the torch `forward`; the
layers they share are in `_timm_layers` and `_timm_blocks`. Gradient checkpointing
(`grad_checkpointing`) changes memory, not results, and is not reproduced."""

from typing import Any

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ..._types import InputArray
from ._randomness import dropout
from ._registry import register_all

# ---------------------------------------------------------------- ResNet


@organized_apply
def resnet_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`ResNet`: stem, four stages, global pool, dropout (`drop_rate`), `fc`."""
    x = org.maxpool(org.act1(org.bn1(org.conv1(x))))
    x = org.layer4(org.layer3(org.layer2(org.layer1(x))))
    x = dropout(org, org.global_pool(x), org.drop_rate)
    return org.fc(x)


def _residual_end(org: StateOrganizer, x: jax.Array, shortcut: InputArray) -> Any:
    """How both blocks end, before their last activation: attention, drop-path, and
    the (downsampled) shortcut added."""
    if org.se is not None:
        x = org.se(x)
    if org.drop_path is not None:
        x = org.drop_path(x)
    if org.downsample is not None:
        shortcut = org.downsample(shortcut)
    return x + shortcut


@organized_apply
def basic_block_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`BasicBlock`: two 3x3 convolutions (anti-aliased when `aa` is set)."""
    y = org.aa(org.act1(org.drop_block(org.bn1(org.conv1(x)))))
    y = org.bn2(org.conv2(y))
    return org.act2(_residual_end(org, y, x))


@organized_apply
def bottleneck_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`Bottleneck`: 1x1, 3x3 (grouped for ResNeXt), 1x1."""
    y = org.act1(org.bn1(org.conv1(x)))
    y = org.aa(org.act2(org.drop_block(org.bn2(org.conv2(y)))))
    y = org.bn3(org.conv3(y))
    return org.act3(_residual_end(org, y, x))


# ---------------------------------------------------------------- ConvNeXt


@organized_apply
def convnext_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`ConvNeXt`: stem, stages, `norm_pre`, head."""
    return org.head(org.norm_pre(org.stages(org.stem(x))))


@organized_apply
def convnext_stage_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`ConvNeXtStage`: downsample, then the blocks."""
    return org.blocks(org.downsample(x))


@organized_apply
def convnext_block_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`ConvNeXtBlock`: depthwise conv, norm and MLP (channels-last unless
    `use_conv_mlp`), layer scale `gamma`, drop-path, plus the shortcut."""
    shortcut = x
    x = org.conv_dw(x)
    if org.use_conv_mlp:
        x = org.mlp(org.norm(x))
    else:
        x = jnp.transpose(x, (0, 2, 3, 1))
        x = org.mlp(org.norm(x))
        x = jnp.transpose(x, (0, 3, 1, 2))
    if org.gamma is not None:
        x = x * org.gamma.reshape(1, -1, 1, 1)
    return org.drop_path(x) + org.shortcut(shortcut)


@organized_apply
def convnext_downsample_apply(org: StateOrganizer, x: InputArray) -> Any:
    """ConvNeXt's `Downsample` shortcut: pool, then conv."""
    return org.conv(org.pool(x))


register_all(
    "timm.models.",
    {
        "convnext.ConvNeXt": convnext_apply,
        "convnext.ConvNeXtStage": convnext_stage_apply,
        "convnext.ConvNeXtBlock": convnext_block_apply,
        "convnext.Downsample": convnext_downsample_apply,
        "resnet.ResNet": resnet_apply,
        "resnet.BasicBlock": basic_block_apply,
        "resnet.Bottleneck": bottleneck_apply,
    },
    rng={"resnet.ResNet"},
)
