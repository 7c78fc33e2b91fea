"""torchvision's classification CNNs: ResNet (BasicBlock, Bottleneck: also wide_resnet
and resnext), MobileNetV2/V3, EfficientNet (MBConv, FusedMBConv: also V2) and ConvNeXt,
with their shared blocks (SqueezeExcitation, StochasticDepth, Permute, LayerNorm2d).
Each apply mirrors the torch `forward` line by line; torchvision's own
`Conv2dNormActivation` is a `Sequential` and converts as one."""

from typing import Any

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ..._types import GlobalConfig, StructureTree
from .._library import register_apply
from ._norm2d import layer_norm2d_apply
from ._stochastic import drop_path

_MODELS = "torchvision.models."
_OPS = "torchvision.ops."


def _flatten(x: jax.Array) -> jax.Array:
    """`torch.flatten(x, 1)`."""
    return x.reshape(x.shape[0], -1)


# ---------------------------------------------------------------- ResNet


@organized_apply
def resnet_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`ResNet`: stem, four stages, global average pool, `fc`."""
    x = org.maxpool(org.relu(org.bn1(org.conv1(x))))
    x = org.layer4(org.layer3(org.layer2(org.layer1(x))))
    return org.fc(_flatten(org.avgpool(x)))


@organized_apply
def basic_block_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`BasicBlock`: two 3x3 convolutions and the (downsampled) shortcut."""
    identity = x
    out = org.relu(org.bn1(org.conv1(x)))
    out = org.bn2(org.conv2(out))
    if org.downsample is not None:
        identity = org.downsample(x)
    return org.relu(out + identity)


@organized_apply
def bottleneck_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`Bottleneck`: 1x1, 3x3 (grouped for ResNeXt), 1x1, and the shortcut."""
    identity = x
    out = org.relu(org.bn1(org.conv1(x)))
    out = org.relu(org.bn2(org.conv2(out)))
    out = org.bn3(org.conv3(out))
    if org.downsample is not None:
        identity = org.downsample(x)
    return org.relu(out + identity)


# ---------------------------------------------------------------- MobileNetV2/V3, EfficientNet


@organized_apply
def mobilenet_v2_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`MobileNetV2`: features, `adaptive_avg_pool2d(x, (1, 1))`, classifier."""
    x = org.features(x)
    x = jnp.mean(x, axis=(2, 3), keepdims=True)
    return org.classifier(_flatten(x))


@organized_apply
def features_pool_classifier_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`MobileNetV3`, `EfficientNet`: features, `avgpool`, flatten, classifier."""
    return org.classifier(_flatten(org.avgpool(org.features(x))))


@organized_apply
def mobilenet_v2_inverted_residual_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """MobileNetV2's `InvertedResidual`: the block, plus the input when shapes allow."""
    if org.use_res_connect:
        return x + org.conv(x)
    return org.conv(x)


@organized_apply
def mobilenet_v3_inverted_residual_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """MobileNetV3's `InvertedResidual`."""
    result = org.block(x)
    if org.use_res_connect:
        result = result + x
    return result


@organized_apply
def mbconv_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """EfficientNet's `MBConv` and `FusedMBConv`: the block, stochastic depth on the
    residual branch."""
    result = org.block(x)
    if org.use_res_connect:
        result = org.stochastic_depth(result)
        result = result + x
    return result


@organized_apply
def squeeze_excitation_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`torchvision.ops.SqueezeExcitation`: scale channels by a gate computed from their
    means."""
    scale = org.fc2(org.activation(org.fc1(org.avgpool(x))))
    return org.scale_activation(scale) * x


@organized_apply
def stochastic_depth_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`torchvision.ops.StochasticDepth`: drop the whole branch per sample (`"row"`) or
    for the batch (`"batch"`) with probability `p`, in training."""
    return drop_path(org, x, org.p, per_sample=org.mode == "row")


# ---------------------------------------------------------------- ConvNeXt


@organized_apply
def convnext_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`ConvNeXt`: features, `avgpool`, classifier (which flattens)."""
    return org.classifier(org.avgpool(org.features(x)))


@organized_apply
def cn_block_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`CNBlock`: the layer-scaled block, stochastic depth, plus the input."""
    result = org.layer_scale * org.block(x)
    return org.stochastic_depth(result) + x


def permute_apply(
    tree: StructureTree, global_config: GlobalConfig, x: jax.Array
) -> tuple[StructureTree, jax.Array]:
    """`torchvision.ops.Permute`: `torch.permute(x, dims)`."""
    return tree, jnp.transpose(x, tree["aux"]["dims"])


for _path, _apply in {
    "resnet.ResNet": resnet_apply,
    "resnet.BasicBlock": basic_block_apply,
    "resnet.Bottleneck": bottleneck_apply,
    "mobilenetv2.MobileNetV2": mobilenet_v2_apply,
    "mobilenetv2.InvertedResidual": mobilenet_v2_inverted_residual_apply,
    "mobilenetv3.MobileNetV3": features_pool_classifier_apply,
    "mobilenetv3.InvertedResidual": mobilenet_v3_inverted_residual_apply,
    "efficientnet.EfficientNet": features_pool_classifier_apply,
    "efficientnet.MBConv": mbconv_apply,
    "efficientnet.FusedMBConv": mbconv_apply,
    "convnext.ConvNeXt": convnext_apply,
    "convnext.CNBlock": cn_block_apply,
    "convnext.LayerNorm2d": layer_norm2d_apply,
}.items():
    register_apply(_MODELS + _path, _apply)
register_apply(_OPS + "misc.SqueezeExcitation", squeeze_excitation_apply)
register_apply(_OPS + "misc.Permute", permute_apply)
register_apply(_OPS + "stochastic_depth.StochasticDepth", stochastic_depth_apply, rng=True)
