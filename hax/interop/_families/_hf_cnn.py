"""Hugging Face's image-classification CNNs: ResNet, RegNet, ConvNeXt (V1 and V2),
MobileNetV2 and EfficientNet. Their layers that only call their children in the
order they define them (conv, norm, activation) run as a named `Sequential`; the
others mirror the torch `forward` line by line. Drop-path draws from the node's key in
train mode; the heads return `{"logits"}`, and `"loss"` with `labels`."""

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ..._types import GlobalConfig, InputArray, StructureTree
from ...nn import layer_norm_apply
from ...nn._sequential import named_sequential_apply
from ._hf_common import (
    base_model,
    classifier_output,
    config_reader,
    config_values,
    model_output,
    register_family,
    reject_options,
)
from ._norm2d import layer_norm2d_apply
from ._randomness import drop_path_apply
from ._registry import child_order

# ---------------------------------------------------------------- heads and base models


@organized_apply
def image_classification_apply(
    org: StateOrganizer,
    /,
    pixel_values: InputArray,
    labels: InputArray | None = None,
    **options: Any,
) -> dict[str, jax.Array]:
    """`...ForImageClassification`: the base model's pooled output, dropout (when the
    head has one), the classifier; `{"logits"}`, and `"loss"` with `labels`."""
    reject_options("ForImageClassification", options)
    pooled = base_model(org)(pixel_values)["pooler_output"]
    dropout = getattr(org, "dropout", None)
    if dropout is not None:
        pooled = dropout(pooled)
    return classifier_output(
        org, org.classifier(pooled), None if labels is None else jnp.asarray(labels)
    )


@organized_apply
def resnet_model_apply(
    org: StateOrganizer, /, pixel_values: InputArray, **options: Any
) -> dict[str, jax.Array]:
    """`ResNetModel`, `RegNetModel`: stem, encoder, `pooler` (an average pool to 1x1)."""
    reject_options("ResNetModel", options)
    last_hidden_state = org.encoder(org.embedder(pixel_values))["last_hidden_state"]
    return model_output(
        last_hidden_state=last_hidden_state, pooler_output=org.pooler(last_hidden_state)
    )


@organized_apply
def convnext_model_apply(
    org: StateOrganizer, /, pixel_values: InputArray, **options: Any
) -> dict[str, jax.Array]:
    """`ConvNextModel` (and V2): embeddings, encoder, the norm of the spatial mean."""
    reject_options("ConvNextModel", options)
    last_hidden_state = org.encoder(org.embeddings(pixel_values))["last_hidden_state"]
    pooled_output = org.layernorm(jnp.mean(last_hidden_state, axis=(-2, -1)))
    return model_output(last_hidden_state=last_hidden_state, pooler_output=pooled_output)


@organized_apply
def mobilenet_v2_model_apply(
    org: StateOrganizer, /, pixel_values: InputArray, **options: Any
) -> dict[str, jax.Array]:
    """`MobileNetV2Model`: stem, the inverted residuals, `conv_1x1`, pooled (with a
    pooler) and flattened."""
    reject_options("MobileNetV2Model", options)
    hidden_states = org.conv_stem(pixel_values)
    for layer in org.layer:
        hidden_states = layer(hidden_states)
    last_hidden_state = org.conv_1x1(hidden_states)
    pooled_output = None
    if org.pooler is not None:
        pooled = org.pooler(last_hidden_state)
        pooled_output = pooled.reshape(pooled.shape[0], -1)
    return model_output(last_hidden_state=last_hidden_state, pooler_output=pooled_output)


@organized_apply
def efficientnet_model_apply(
    org: StateOrganizer, /, pixel_values: InputArray, **options: Any
) -> dict[str, jax.Array]:
    """`EfficientNetModel`: embeddings, encoder, `pooler` (a mean or max pool over the
    whole map), flattened."""
    reject_options("EfficientNetModel", options)
    last_hidden_state = org.encoder(org.embeddings(pixel_values))["last_hidden_state"]
    pooled = org.pooler(last_hidden_state)
    pooled_output = pooled.reshape(pooled.shape[:2])
    return model_output(last_hidden_state=last_hidden_state, pooler_output=pooled_output)


@organized_apply
def stages_encoder_apply(org: StateOrganizer, hidden_states: jax.Array) -> dict[str, jax.Array]:
    """`ResNetEncoder`, `RegNetEncoder`, `ConvNextEncoder`: the stages in order,
    `{"last_hidden_state"}`."""
    for stage in org.stages:
        hidden_states = stage(hidden_states)
    return model_output(last_hidden_state=hidden_states)


# ---------------------------------------------------------------- ResNet, RegNet


@organized_apply
def layers_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`ResNetStage`, `RegNetStage`: their `layers` (a `Sequential`)."""
    return org.layers(x)


@organized_apply
def residual_layer_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`ResNetBasicLayer`, `ResNetBottleNeckLayer`, `RegNetXLayer`, `RegNetYLayer`: the
    layer plus the (projected) shortcut, then the activation."""
    return org.activation(org.layer(x) + org.shortcut(x))


@organized_apply
def regnet_se_layer_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`RegNetSELayer`: the input gated by `attention` of its spatial mean."""
    return x * org.attention(org.pooler(x))


# ---------------------------------------------------------------- ConvNeXt


def convnext_layer_norm_apply(
    tree: StructureTree, global_config: GlobalConfig, x: jax.Array
) -> tuple[StructureTree, jax.Array]:
    """`ConvNextLayerNorm`: `LayerNorm` over the last axis (`"channels_last"`) or over
    the channels of an `(N, C, H, W)` input (`"channels_first"`)."""
    if tree["aux"]["data_format"] == "channels_first":
        return layer_norm2d_apply(tree, global_config, x)
    return layer_norm_apply(tree, global_config, x)


@organized_apply
def convnext_stage_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`ConvNextStage`: the downsampling layers (norm, strided conv; none in the first
    stage), then the layers."""
    for layer in org.downsampling_layer:
        x = layer(x)
    for layer in org.layers:
        x = layer(x)
    return x


@organized_apply
def convnext_layer_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`ConvNextLayer` (and V2's): depthwise conv, then channels-last norm, MLP (with
    V2's `grn`), layer scale (V1, when set), drop-path, plus the input."""
    residual = x
    x = jnp.transpose(org.dwconv(x), (0, 2, 3, 1))
    x = org.act(org.pwconv1(org.layernorm(x)))
    grn = getattr(org, "grn", None)
    if grn is not None:
        x = grn(x)
    x = org.pwconv2(x)
    scale = getattr(org, "layer_scale_parameter", None)
    if scale is not None:
        x = scale * x
    return residual + org.drop_path(jnp.transpose(x, (0, 3, 1, 2)))


@organized_apply
def convnext_v2_grn_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`ConvNextV2GRN` (channels-last): each channel's spatial L2 norm over their mean,
    then `weight * (x * n) + bias + x`."""
    global_features = jnp.sqrt(jnp.sum(jnp.square(x), axis=(1, 2), keepdims=True))
    norm_features = global_features / (jnp.mean(global_features, axis=-1, keepdims=True) + 1e-6)
    return org.weight * (x * norm_features) + org.bias + x


# ---------------------------------------------------------------- MobileNetV2


def _tf_padding(x: jax.Array, aux: Mapping[str, Any]) -> jax.Array:
    """MobileNetV2's `apply_tf_padding`: TensorFlow's 'SAME' padding for the conv whose
    `aux` is given, the odd extra on the high side."""
    pads = []
    for size, stride, kernel, dilation in zip(
        x.shape[2:], aux["stride"], aux["kernel_size"], aux["dilation"], strict=True
    ):
        total = max(kernel - (stride if size % stride == 0 else size % stride), 0)
        pads.append((total // 2 * dilation, (total - total // 2) * dilation))
    return jnp.pad(x, ((0, 0), (0, 0), *pads))


@organized_apply
def mobilenet_v2_conv_layer_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`MobileNetV2ConvLayer`: 'SAME' padding (`config.tf_padding`), conv, then the norm
    and activation when it has them."""
    if org.tf_padding:
        x = _tf_padding(x, org.convolution.tree["aux"])
    x = org.convolution(x)
    if org.normalization is not None:
        x = org.normalization(x)
    if org.activation is not None:
        x = org.activation(x)
    return x


@organized_apply
def mobilenet_v2_inverted_residual_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`MobileNetV2InvertedResidual`: expand, depthwise, reduce; plus the input when
    `use_residual`."""
    features = org.reduce_1x1(org.conv_3x3(org.expand_1x1(x)))
    return x + features if org.use_residual else features


# ---------------------------------------------------------------- EfficientNet


@organized_apply
def efficientnet_encoder_apply(
    org: StateOrganizer, hidden_states: jax.Array
) -> dict[str, jax.Array]:
    """`EfficientNetEncoder`: the blocks, then the top conv, norm and activation."""
    for block in org.blocks:
        hidden_states = block(hidden_states)
    hidden_states = org.top_activation(org.top_bn(org.top_conv(hidden_states)))
    return model_output(last_hidden_state=hidden_states)


@organized_apply
def efficientnet_block_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`EfficientNetBlock`: expansion (when `expand_ratio != 1`), depthwise, SE, and the
    projection, which adds the input back."""
    hidden_states = org.expansion(x) if org.expand_ratio != 1 else x
    hidden_states = org.squeeze_excite(org.depthwise_conv(hidden_states))
    return org.projection(x, hidden_states)


@organized_apply
def efficientnet_depthwise_layer_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`EfficientNetDepthwiseLayer`: its padding (only when striding), the depthwise
    conv, norm, activation."""
    if org.stride == 2:
        x = org.depthwise_conv_pad(x)
    return org.depthwise_act(org.depthwise_norm(org.depthwise_conv(x)))


@organized_apply
def efficientnet_squeeze_excite_apply(org: StateOrganizer, x: jax.Array) -> Any:
    """`EfficientNetSqueezeExciteLayer`: the input gated by its squeezed channels."""
    gate = org.act_reduce(org.reduce(org.squeeze(x)))
    return x * org.act_expand(org.expand(gate))


@organized_apply
def efficientnet_final_block_apply(
    org: StateOrganizer, embeddings: jax.Array, hidden_states: jax.Array
) -> Any:
    """`EfficientNetFinalBlockLayer`: project and norm; with `apply_dropout`, dropout
    (the block's drop rate, elementwise, as torch's `nn.Dropout`) and the block's input
    added."""
    hidden_states = org.project_bn(org.project_conv(hidden_states))
    if org.apply_dropout:
        hidden_states = org.dropout(hidden_states) + embeddings
    return hidden_states


# ---------------------------------------------------------------- registrations

_CHAINS = ("ConvLayer", "ShortCut", "Embeddings")
register_family(
    {
        "ForImageClassification": image_classification_apply,
        "Model": resnet_model_apply,
        "Encoder": stages_encoder_apply,
        "Stage": layers_apply,
        "BasicLayer": residual_layer_apply,
        "BottleNeckLayer": residual_layer_apply,
        "XLayer": residual_layer_apply,
        "YLayer": residual_layer_apply,
        "SELayer": regnet_se_layer_apply,
        **{name: named_sequential_apply for name in _CHAINS},
    },
    "resnet.modeling_resnet.ResNet",
    "regnet.modeling_regnet.RegNet",
    aux={
        "ForImageClassification": config_reader("problem_type"),
        **{name: child_order for name in _CHAINS},
    },
)
register_family(
    {
        "ForImageClassification": image_classification_apply,
        "Model": convnext_model_apply,
        "Embeddings": named_sequential_apply,
        "Encoder": stages_encoder_apply,
        "Stage": convnext_stage_apply,
        "Layer": convnext_layer_apply,
        "LayerNorm": convnext_layer_norm_apply,
        "DropPath": drop_path_apply,
        "GRN": convnext_v2_grn_apply,
    },
    "convnext.modeling_convnext.ConvNext",
    "convnextv2.modeling_convnextv2.ConvNextV2",
    rng={"DropPath"},
    aux={"ForImageClassification": config_reader("problem_type"), "Embeddings": child_order},
)
register_family(
    {
        "ForImageClassification": image_classification_apply,
        "Model": mobilenet_v2_model_apply,
        "Stem": named_sequential_apply,
        "ConvLayer": mobilenet_v2_conv_layer_apply,
        "InvertedResidual": mobilenet_v2_inverted_residual_apply,
    },
    "mobilenet_v2.modeling_mobilenet_v2.MobileNetV2",
    aux={
        "ForImageClassification": config_reader("problem_type"),
        "Stem": child_order,
        "ConvLayer": config_values("tf_padding"),
    },
)
register_family(
    {
        "ForImageClassification": image_classification_apply,
        "Model": efficientnet_model_apply,
        "Embeddings": named_sequential_apply,
        "Encoder": efficientnet_encoder_apply,
        "Block": efficientnet_block_apply,
        "ExpansionLayer": named_sequential_apply,
        "DepthwiseLayer": efficientnet_depthwise_layer_apply,
        "SqueezeExciteLayer": efficientnet_squeeze_excite_apply,
        "FinalBlockLayer": efficientnet_final_block_apply,
    },
    "efficientnet.modeling_efficientnet.EfficientNet",
    aux={
        "ForImageClassification": config_reader("problem_type"),
        "Embeddings": child_order,
        "ExpansionLayer": child_order,
    },
)
