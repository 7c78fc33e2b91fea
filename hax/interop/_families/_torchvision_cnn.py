"""torchvision's residual and plain classification CNNs: ResNet (BasicBlock,
Bottleneck: also wide_resnet and resnext), RegNet, DenseNet, ConvNeXt, VGG, AlexNet
and SqueezeNet. Each apply mirrors the torch `forward` line by line; torchvision's
`Conv2dNormActivation` and the `Sequential` subclasses RegNet and DenseNet are made of
convert as `Sequential`. The mobile families are in `_torchvision_mobile`."""

from typing import Any

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ..._types import GlobalConfig, InputArray, StructureTree
from ._norm2d import layer_norm2d_apply
from ._randomness import dropout
from ._registry import register_all


def flatten(x: jax.Array) -> jax.Array:
    """`torch.flatten(x, 1)`."""
    return x.reshape(x.shape[0], -1)


@organized_apply
def features_pool_classifier_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`VGG`, `AlexNet`, `MobileNetV3`, `EfficientNet`: features, `avgpool`, flatten,
    classifier."""
    return org.classifier(flatten(org.avgpool(org.features(x))))


# ---------------------------------------------------------------- ResNet, RegNet


@organized_apply
def resnet_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`ResNet`: stem, four stages, global average pool, `fc`."""
    x = org.maxpool(org.relu(org.bn1(org.conv1(x))))
    x = org.layer4(org.layer3(org.layer2(org.layer1(x))))
    return org.fc(flatten(org.avgpool(x)))


def _residual(org: StateOrganizer, out: jax.Array, x: jax.Array) -> Any:
    """How both blocks end: the (downsampled) shortcut added, then ReLU."""
    identity = x if org.downsample is None else org.downsample(x)
    return org.relu(out + identity)


@organized_apply
def basic_block_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`BasicBlock`: two 3x3 convolutions and the (downsampled) shortcut."""
    x = jnp.asarray(x)
    out = org.relu(org.bn1(org.conv1(x)))
    return _residual(org, org.bn2(org.conv2(out)), x)


@organized_apply
def bottleneck_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`Bottleneck`: 1x1, 3x3 (grouped for ResNeXt), 1x1, and the shortcut."""
    x = jnp.asarray(x)
    out = org.relu(org.bn1(org.conv1(x)))
    out = org.relu(org.bn2(org.conv2(out)))
    return _residual(org, org.bn3(org.conv3(out)), x)


@organized_apply
def regnet_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`RegNet`: stem, trunk, `avgpool`, flatten, `fc`."""
    return org.fc(flatten(org.avgpool(org.trunk_output(org.stem(x)))))


@organized_apply
def res_bottleneck_block_apply(org: StateOrganizer, x: InputArray) -> Any:
    """RegNet's `ResBottleneckBlock`: the transform `f` plus the (projected) input."""
    x = org.proj(x) + org.f(x) if org.proj is not None else x + org.f(x)
    return org.activation(x)


# ---------------------------------------------------------------- DenseNet


@organized_apply
def densenet_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`DenseNet`: features, ReLU, global average pool, classifier."""
    out = jax.nn.relu(org.features(x))
    return org.classifier(flatten(jnp.mean(out, axis=(2, 3), keepdims=True)))


@organized_apply
def dense_block_apply(org: StateOrganizer, init_features: InputArray) -> Any:
    """`_DenseBlock`: each layer reads all the features so far; all are concatenated."""
    features = [init_features]
    for name in org.order:
        features.append(getattr(org, name)(features))
    return jnp.concatenate(features, axis=1)


@organized_apply
def dense_layer_apply(org: StateOrganizer, inputs: Any) -> Any:
    """`_DenseLayer`: BN-ReLU-1x1 conv over the concatenated inputs, BN-ReLU-3x3 conv,
    dropout (`drop_rate`). `memory_efficient` checkpointing changes memory only."""
    prev_features = [inputs] if isinstance(inputs, jax.Array) else inputs
    concated = jnp.concatenate(prev_features, axis=1)
    bottleneck_output = org.conv1(org.relu1(org.norm1(concated)))
    new_features = org.conv2(org.relu2(org.norm2(bottleneck_output)))
    return dropout(org, new_features, org.drop_rate)


# ---------------------------------------------------------------- ConvNeXt, SqueezeNet


@organized_apply
def convnext_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`ConvNeXt`: features, `avgpool`, classifier (which flattens)."""
    return org.classifier(org.avgpool(org.features(x)))


@organized_apply
def cn_block_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`CNBlock`: the layer-scaled block, stochastic depth, plus the input."""
    result = org.layer_scale * org.block(x)
    return org.stochastic_depth(result) + x


def permute_apply(
    tree: StructureTree, global_config: GlobalConfig, x: InputArray
) -> tuple[StructureTree, jax.Array]:
    """`torchvision.ops.Permute`: `torch.permute(x, dims)`."""
    dims: tuple[int, ...] = tree["aux"]["dims"]  # type: ignore[assignment]  # validated by the spec
    return tree, jnp.transpose(x, dims)


@organized_apply
def squeezenet_apply(org: StateOrganizer, x: InputArray) -> Any:
    """`SqueezeNet`: features, classifier (ending in a global pool), flatten."""
    return flatten(org.classifier(org.features(x)))


@organized_apply
def fire_apply(org: StateOrganizer, x: InputArray) -> Any:
    """SqueezeNet's `Fire`: squeeze, then 1x1 and 3x3 expansions concatenated."""
    x = org.squeeze_activation(org.squeeze(x))
    expand1x1 = org.expand1x1_activation(org.expand1x1(x))
    return jnp.concatenate([expand1x1, org.expand3x3_activation(org.expand3x3(x))], axis=1)


register_all(
    "torchvision.",
    {
        "models.alexnet.AlexNet": features_pool_classifier_apply,
        "models.vgg.VGG": features_pool_classifier_apply,
        "models.resnet.ResNet": resnet_apply,
        "models.resnet.BasicBlock": basic_block_apply,
        "models.resnet.Bottleneck": bottleneck_apply,
        "models.regnet.RegNet": regnet_apply,
        "models.regnet.ResBottleneckBlock": res_bottleneck_block_apply,
        "models.densenet.DenseNet": densenet_apply,
        "models.densenet._DenseBlock": dense_block_apply,
        "models.densenet._DenseLayer": dense_layer_apply,
        "models.convnext.ConvNeXt": convnext_apply,
        "models.convnext.CNBlock": cn_block_apply,
        "models.convnext.LayerNorm2d": layer_norm2d_apply,
        "models.squeezenet.SqueezeNet": squeezenet_apply,
        "models.squeezenet.Fire": fire_apply,
        "ops.misc.Permute": permute_apply,
    },
    rng={"models.densenet._DenseLayer"},
)
