"""torchvision's mobile classification CNNs: MobileNetV2/V3, EfficientNet (MBConv,
FusedMBConv: also V2), MNASNet and ShuffleNetV2, with their shared blocks
(`torchvision.ops` SqueezeExcitation and StochasticDepth). Each apply mirrors the
torch `forward` line by line."""

from typing import Any

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ..._types import InputArray
from ._randomness import drop_path
from ._registry import register_all
from ._torchvision_cnn import features_pool_classifier_apply, flatten


@organized_apply
def mobilenet_v2_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`MobileNetV2`: features, `adaptive_avg_pool2d(x, (1, 1))`, classifier."""
    x = org.features(x)
    x = jnp.mean(x, axis=(2, 3), keepdims=True)
    return org.classifier(flatten(x))


@organized_apply
def mobilenet_v2_inverted_residual_apply(org: StateOrganizer, x: InputArray) -> Any:
    """MobileNetV2's `InvertedResidual`: the block, plus the input when shapes allow."""
    if org.use_res_connect:
        return x + org.conv(x)
    return org.conv(x)


@organized_apply
def mobilenet_v3_inverted_residual_apply(org: StateOrganizer, x: InputArray) -> Any:
    """MobileNetV3's `InvertedResidual`."""
    result = org.block(x)
    if org.use_res_connect:
        result = result + x
    return result


@organized_apply
def mbconv_apply(org: StateOrganizer, x: InputArray) -> Any:
    """EfficientNet's `MBConv` and `FusedMBConv`: the block, stochastic depth on the
    residual branch."""
    result = org.block(x)
    if org.use_res_connect:
        result = org.stochastic_depth(result)
        result = result + x
    return result


@organized_apply
def mnasnet_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`MNASNet`: layers, the spatial mean, classifier."""
    return org.classifier(jnp.mean(org.layers(x), axis=(2, 3)))


@organized_apply
def mnasnet_inverted_residual_apply(org: StateOrganizer, x: InputArray) -> Any:
    """MNASNet's `_InvertedResidual`: the layers, plus the input when `apply_residual`."""
    if org.apply_residual:
        return org.layers(x) + x
    return org.layers(x)


@organized_apply
def shufflenet_v2_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`ShuffleNetV2`: stem, three stages, `conv5`, the spatial mean, `fc`."""
    x = org.maxpool(org.conv1(x))
    x = org.conv5(org.stage4(org.stage3(org.stage2(x))))
    return org.fc(jnp.mean(x, axis=(2, 3)))


def _channel_shuffle(x: jax.Array, groups: int) -> jax.Array:
    """torchvision's `channel_shuffle`: interleave the channels of `groups` groups."""
    n, c, h, w = x.shape
    x = x.reshape(n, groups, c // groups, h, w).transpose(0, 2, 1, 3, 4)
    return x.reshape(n, c, h, w)


@organized_apply
def shufflenet_inverted_residual_apply(org: StateOrganizer, x: InputArray) -> Any:
    """ShuffleNetV2's `InvertedResidual`: half the channels (or all, when striding)
    through `branch2`, the rest through `branch1`, concatenated and shuffled."""
    if org.stride == 1:
        x1, x2 = jnp.split(x, 2, axis=1)
        out = jnp.concatenate((x1, org.branch2(x2)), axis=1)
    else:
        out = jnp.concatenate((org.branch1(x), org.branch2(x)), axis=1)
    return _channel_shuffle(out, 2)


@organized_apply
def squeeze_excitation_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`torchvision.ops.SqueezeExcitation`: scale channels by a gate computed from their
    means."""
    scale = org.fc2(org.activation(org.fc1(org.avgpool(x))))
    return org.scale_activation(scale) * x


@organized_apply
def stochastic_depth_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`torchvision.ops.StochasticDepth`: drop the whole branch per sample (`"row"`) or
    for the batch (`"batch"`) with probability `p`, in training."""
    x = jnp.asarray(x)
    return drop_path(org, x, org.p, per_sample=org.mode == "row")


register_all(
    "torchvision.",
    {
        "models.mobilenetv2.MobileNetV2": mobilenet_v2_apply,
        "models.mobilenetv2.InvertedResidual": mobilenet_v2_inverted_residual_apply,
        "models.mobilenetv3.MobileNetV3": features_pool_classifier_apply,
        "models.mobilenetv3.InvertedResidual": mobilenet_v3_inverted_residual_apply,
        "models.efficientnet.EfficientNet": features_pool_classifier_apply,
        "models.efficientnet.MBConv": mbconv_apply,
        "models.efficientnet.FusedMBConv": mbconv_apply,
        "models.mnasnet.MNASNet": mnasnet_apply,
        "models.mnasnet._InvertedResidual": mnasnet_inverted_residual_apply,
        "models.shufflenetv2.ShuffleNetV2": shufflenet_v2_apply,
        "models.shufflenetv2.InvertedResidual": shufflenet_inverted_residual_apply,
        "ops.misc.SqueezeExcitation": squeeze_excitation_apply,
        "ops.stochastic_depth.StochasticDepth": stochastic_depth_apply,
    },
    rng={"ops.stochastic_depth.StochasticDepth"},
)
