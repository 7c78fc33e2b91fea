"""timm's ResNet family (`timm.models.resnet`: ResNet/ResNeXt/SE-ResNet/ECA-ResNet, the
b/c/d/s/t stems, anti-aliased and drop-path variants), ConvNeXt (`timm.models.convnext`:
V1 and V2), RegNet (X, Y), DenseNet, and the blocks-from-a-config families ByobNet
(`resnext26ts`, `gernet`, RepVGG, MobileOne, ...) and CspNet (CSP-ResNet/ResNeXt/
DarkNet). Each apply mirrors the torch `forward`; the layers they share (`ConvNormAct`,
norms, heads) are in `_timm_layers` and `_timm_blocks`. Most residual blocks of these
families are one apply, `residual_path_apply`, told by aux which children make the
path. Gradient checkpointing (`grad_checkpointing`) changes memory, not results, and
is not reproduced."""

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ..._types import AuxValue, InputArray
from ...nn._sequential import named_sequential_apply
from ._randomness import dropout
from ._registry import child_order, register_all
from ._torchvision_cnn import dense_block_apply

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


# ---------------------------------------------------------------- shared residual blocks


def residual_path(
    *path: str, shortcut: str | None = "shortcut", act: str | None = "act"
) -> Callable[[Any], Mapping[str, AuxValue]]:
    """The aux reader of a block that `residual_path_apply` runs: its children `path` in
    order, then `drop_path`, plus `shortcut(input)` (no residual when that child is
    None; the input itself when `shortcut` is None), then the child `act`."""
    values = {"residual_path": path, "residual_shortcut": shortcut, "residual_act": act}
    return lambda module: dict(values)


@organized_apply
def residual_path_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """A residual block as its aux describes it (see `residual_path`): RegNet's
    `Bottleneck`, ByobNet's `BasicBlock`, `BottleneckBlock`, `DarkBlock`, `EdgeBlock`,
    CspNet's blocks."""
    shortcut = x
    for name in org.residual_path:
        x = getattr(org, name)(x)
    if org.residual_shortcut is None:
        x = org.drop_path(x) + shortcut
    else:
        project = getattr(org, org.residual_shortcut)
        if project is not None:
            x = org.drop_path(x) + project(shortcut)
    return x if org.residual_act is None else getattr(org, org.residual_act)(x)


# ---------------------------------------------------------------- RegNet, DenseNet


@organized_apply
def regnet_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`RegNet`: stem, four stages, `final_conv`, head."""
    x = org.s4(org.s3(org.s2(org.s1(org.stem(x)))))
    return org.head(org.final_conv(x))


@organized_apply
def densenet_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`DenseNet`: features, global pool, `head_drop`, classifier."""
    return org.classifier(org.head_drop(org.global_pool(org.features(x))))


@organized_apply
def dense_layer_apply(org: StateOrganizer, inputs: Any) -> Any:
    """timm's `DenseLayer`: norm-activation and 1x1 conv over the concatenated inputs,
    norm-activation and 3x3 conv, dropout (`drop_rate`)."""
    prev_features = [inputs] if isinstance(inputs, jax.Array) else inputs
    bottleneck_output = org.conv1(org.norm1(jnp.concatenate(prev_features, axis=1)))
    new_features = org.conv2(org.norm2(bottleneck_output))
    return dropout(org, new_features, org.drop_rate, who="DenseLayer")


# ---------------------------------------------------------------- ByobNet, CspNet


@organized_apply
def stem_stages_head_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`ByobNet`, `CspNet`: stem, stages, `final_conv` (ByobNet's), head."""
    x = org.stages(org.stem(x))
    final_conv = getattr(org, "final_conv", None)
    return org.head(x if final_conv is None else final_conv(x))


@organized_apply
def downsample_avg_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`DownsampleAvg`: pool, then the 1x1 conv-norm."""
    return org.conv(org.pool(x))


@organized_apply
def rep_vgg_block_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`RepVggBlock`: the reparameterized conv when fused; else the 1x1 and kxk
    branches, plus the normed identity (drop-pathed) when it has one."""
    if org.reparam_conv is not None:
        return org.act(org.attn(org.reparam_conv(x)))
    out = org.conv_1x1(x) + org.conv_kxk(x)
    if org.identity is not None:
        out = org.drop_path(out) + org.identity(x)
    return org.act(org.attn(out))


@organized_apply
def mobile_one_block_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`MobileOneBlock`: the reparameterized conv when fused; else the scale branch and
    the kxk branches summed, drop-path, plus the normed identity."""
    if org.reparam_conv is not None:
        return org.act(org.attn(org.reparam_conv(x)))
    out = org.conv_scale(x) if org.conv_scale is not None else 0.0
    for conv in org.conv_kxk:
        out = out + conv(x)
    out = org.drop_path(out)
    if org.identity is not None:
        out = out + org.identity(x)
    return org.act(org.attn(out))


@organized_apply
def cross_stage_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`CrossStage`: downsample, expand, split; the blocks and a transition on one half,
    joined back and transitioned."""
    x = org.conv_exp(org.conv_down(x))
    xs, xb = jnp.split(x, [org.expand_chs // 2], axis=1)
    xb = org.conv_transition_b(org.blocks(xb))
    return org.conv_transition(jnp.concatenate([xs, xb], axis=1))


@organized_apply
def cross_stage3_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`CrossStage3`: as `CrossStage`, without the half's own transition."""
    x = org.conv_exp(org.conv_down(x))
    x1, x2 = jnp.split(x, [org.expand_chs // 2], axis=1)
    return org.conv_transition(jnp.concatenate([org.blocks(x1), x2], axis=1))


@organized_apply
def dark_stage_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`DarkStage`: downsample, then the blocks."""
    return org.blocks(org.conv_down(x))


register_all(
    "timm.models.",
    {
        "regnet.RegNet": regnet_apply,
        "regnet.RegStage": named_sequential_apply,
        "regnet.Bottleneck": residual_path_apply,
        "densenet.DenseNet": densenet_apply,
        "densenet.DenseBlock": dense_block_apply,
        "densenet.DenseLayer": dense_layer_apply,
        "byobnet.ByobNet": stem_stages_head_apply,
        "byobnet.DownsampleAvg": downsample_avg_apply,
        "byobnet.BasicBlock": residual_path_apply,
        "byobnet.BottleneckBlock": residual_path_apply,
        "byobnet.DarkBlock": residual_path_apply,
        "byobnet.EdgeBlock": residual_path_apply,
        "byobnet.RepVggBlock": rep_vgg_block_apply,
        "byobnet.MobileOneBlock": mobile_one_block_apply,
        "cspnet.CspNet": stem_stages_head_apply,
        "cspnet.CrossStage": cross_stage_apply,
        "cspnet.CrossStage3": cross_stage3_apply,
        "cspnet.DarkStage": dark_stage_apply,
        "cspnet.BottleneckBlock": residual_path_apply,
        "cspnet.DarkBlock": residual_path_apply,
        "cspnet.EdgeBlock": residual_path_apply,
    },
    rng={"densenet.DenseLayer"},
    aux={
        "regnet.RegStage": child_order,
        "regnet.Bottleneck": residual_path(
            "conv1", "conv2", "se", "conv3", shortcut="downsample", act="act3"
        ),
        "byobnet.BasicBlock": residual_path("conv1_kxk", "attn", "conv2_kxk", "attn_last"),
        "byobnet.BottleneckBlock": residual_path(
            "conv1_1x1", "conv2_kxk", "conv2b_kxk", "attn", "conv3_1x1", "attn_last"
        ),
        "byobnet.DarkBlock": residual_path("conv1_1x1", "attn", "conv2_kxk", "attn_last"),
        "byobnet.EdgeBlock": residual_path("conv1_kxk", "attn", "conv2_1x1", "attn_last"),
        "cspnet.BottleneckBlock": residual_path(
            "conv1", "conv2", "attn2", "conv3", "attn3", shortcut=None, act="act3"
        ),
        "cspnet.DarkBlock": residual_path("conv1", "attn", "conv2", shortcut=None, act=None),
        "cspnet.EdgeBlock": residual_path("conv1", "attn", "conv2", shortcut=None, act=None),
    },
)
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
