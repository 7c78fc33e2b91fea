"""Hugging Face ViT and the families that copy its classes (DeiT, with its distillation
token and teacher head; ViT-MSN), and DINOv2 (layer scale, drop-path, SwiGLU): patch
embeddings with prefix tokens, pre-norm layers, pooler and the image-classification
heads. Each apply follows the torch `forward` line by line, with eager attention;
attention dropout and drop-path draw from their node's key in train mode."""

import functools
from typing import Any

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ..._types import ApplyFn, InputArray
from ._attention import self_attention
from ._elementwise import scaled_by
from ._hf_common import (
    base_model,
    classifier_output,
    config_reader,
    gated_mlp_apply,
    model_output,
    pooler_apply,
    register_family,
    reject_options,
    run_layers,
)
from ._hf_masks import bidirectional_mask
from ._randomness import drop_path_apply, dropout


@organized_apply
def vit_patch_embeddings_apply(org: StateOrganizer, pixel_values: InputArray) -> jax.Array:
    """`ViTPatchEmbeddings`: the patch convolution (on the pixels cast to its dtype, as
    `ViTModel` and DINOv2 do), flattened to `(B, patches, hidden)`."""
    num_channels = pixel_values.shape[1]
    if num_channels != org.num_channels:
        raise ValueError(
            "Make sure that the channel dimension of the pixel values match with the one set "
            f"in the configuration. Expected {org.num_channels} but got {num_channels}."
        )
    weight = org.projection.tree["params"]["weight"]
    x: jax.Array = org.projection(pixel_values.astype(weight.dtype))
    return x.reshape(*x.shape[:2], -1).swapaxes(1, 2)


def _tokens(
    org: StateOrganizer, pixel_values: jax.Array, bool_masked_pos: jax.Array | None
) -> jax.Array:
    """The patches (masked ones replaced by the mask token) after the class token (and
    DeiT's distillation token)."""
    embeddings = org.patch_embeddings(pixel_values)
    if bool_masked_pos is not None:
        if org.mask_token is None:
            raise ValueError("bool_masked_pos needs a model built with use_mask_token=True")
        mask_tokens = jnp.broadcast_to(org.mask_token, embeddings.shape)
        mask = bool_masked_pos[..., None].astype(mask_tokens.dtype)
        embeddings = embeddings * (1.0 - mask) + mask_tokens * mask
    prefix = [org.cls_token, getattr(org, "distillation_token", None)]
    batch_size = embeddings.shape[0]
    tokens = [jnp.broadcast_to(t, (batch_size, *t.shape[1:])) for t in prefix if t is not None]
    return jnp.concatenate([*tokens, embeddings], axis=1)


@organized_apply
def vit_embeddings_apply(
    org: StateOrganizer,
    pixel_values: InputArray,
    bool_masked_pos: InputArray | None = None,
    interpolate_pos_encoding: bool | None = False,
) -> jax.Array:
    """`ViTEmbeddings` (and `DeiTEmbeddings`): patches (masked ones replaced by the mask
    token), after the class token (and DeiT's distillation token), plus the position
    embeddings, then dropout."""
    pixel_values = jnp.asarray(pixel_values)
    bool_masked_pos = None if bool_masked_pos is None else jnp.asarray(bool_masked_pos)
    _, _, height, width = pixel_values.shape
    embeddings = _tokens(org, pixel_values, bool_masked_pos)
    resized = embeddings.shape[1] != org.position_embeddings.shape[1] or height != width
    if interpolate_pos_encoding and resized:
        raise ValueError(
            "interpolate_pos_encoding=True: resampling the position embeddings (bicubic, "
            "for another image size) is not supported"
        )
    if not interpolate_pos_encoding and (height, width) != tuple(org.image_size):
        raise ValueError(
            f"Input image size ({height}*{width}) doesn't match model "
            f"({org.image_size[0]}*{org.image_size[1]})."
        )
    out: jax.Array = org.dropout(embeddings + org.position_embeddings)
    return out


@organized_apply
def vit_attention_apply(
    org: StateOrganizer, hidden_states: InputArray, attention_mask: InputArray | None = None
) -> tuple[jax.Array, jax.Array]:
    """`ViTAttention` (eager): `(attn_output, attn_weights)`; the attention weights are
    dropped out (`attention_dropout`) with the node's key in train mode."""
    attention_mask = None if attention_mask is None else jnp.asarray(attention_mask)
    query, key, value = (f(hidden_states) for f in (org.q_proj, org.k_proj, org.v_proj))
    drop = functools.partial(dropout, org, p=org.attention_dropout, who="ViTAttention")
    out, weights = self_attention(
        query, key, value, org.head_dim, org.scaling, attention_mask, drop
    )
    return org.o_proj(out), weights


@organized_apply
def vit_mlp_apply(org: StateOrganizer, hidden_states: InputArray) -> jax.Array:
    """`ViTMLP`: fc1, activation, fc2."""
    out: jax.Array = org.fc2(org.activation_fn(org.fc1(hidden_states)))
    return out


@organized_apply
def vit_layer_apply(
    org: StateOrganizer, hidden_states: InputArray, attention_mask: InputArray | None = None
) -> jax.Array:
    """`ViTLayer`: pre-norm self-attention and MLP, each with dropout and a residual."""
    residual = hidden_states
    hidden_states, _ = org.attention(org.layernorm_before(hidden_states), attention_mask)
    hidden_states = org.dropout(hidden_states) + residual
    residual = hidden_states
    hidden_states = org.mlp(org.layernorm_after(hidden_states))
    out: jax.Array = org.dropout(hidden_states) + residual
    return out


@organized_apply
def vit_model_apply(
    org: StateOrganizer,
    /,
    pixel_values: InputArray,
    bool_masked_pos: InputArray | None = None,
    interpolate_pos_encoding: bool | None = None,
    attention_mask: InputArray | None = None,
    **options: Any,
) -> dict[str, jax.Array]:
    """`ViTModel`: `{"last_hidden_state", "pooler_output"}` (the latter with a pooler)."""
    reject_options("ViTModel", options)
    embedding_output = org.embeddings(
        pixel_values,
        bool_masked_pos=bool_masked_pos,
        interpolate_pos_encoding=interpolate_pos_encoding,
    )
    bias = bidirectional_mask(attention_mask, embedding_output.dtype)
    sequence_output = org.layernorm(run_layers(org.layers, embedding_output, bias))
    pooler = getattr(org, "pooler", None)
    pooled_output = pooler(sequence_output) if pooler is not None else None
    return model_output(last_hidden_state=sequence_output, pooler_output=pooled_output)


@organized_apply
def dinov2_embeddings_apply(
    org: StateOrganizer, pixel_values: InputArray, bool_masked_pos: InputArray | None = None
) -> jax.Array:
    """`Dinov2Embeddings`: as ViT's; the position embeddings are resampled for another
    image size in torch, which is not supported here."""
    pixel_values = jnp.asarray(pixel_values)
    bool_masked_pos = None if bool_masked_pos is None else jnp.asarray(bool_masked_pos)
    _, _, height, width = pixel_values.shape
    embeddings = _tokens(org, pixel_values, bool_masked_pos)
    if org.position_embeddings is not None:
        if embeddings.shape[1] != org.position_embeddings.shape[1] or height != width:
            raise ValueError(
                f"Dinov2Embeddings: a {height}x{width} image needs the position embeddings "
                "resampled (bicubic), which is not supported"
            )
        embeddings = embeddings + org.position_embeddings
    out: jax.Array = org.dropout(embeddings)
    return out


@organized_apply
def dinov2_layer_apply(
    org: StateOrganizer, hidden_states: InputArray, attention_mask: InputArray | None = None
) -> jax.Array:
    """`Dinov2Layer`: pre-norm attention and MLP, each layer-scaled, drop-pathed and
    residual."""
    attention_output, _ = org.attention(org.norm1(hidden_states), attention_mask=attention_mask)
    hidden_states = hidden_states + org.drop_path(org.layer_scale1(attention_output))
    mlp_output = org.layer_scale2(org.mlp(org.norm2(hidden_states)))
    out: jax.Array = hidden_states + org.drop_path(mlp_output)
    return out


@organized_apply
def dinov2_encoder_apply(
    org: StateOrganizer, hidden_states: InputArray, attention_mask: InputArray | None = None
) -> dict[str, jax.Array]:
    """`Dinov2Encoder`: the layers in order, `{"last_hidden_state"}`."""
    hidden_states = jnp.asarray(hidden_states)
    attention_mask = None if attention_mask is None else jnp.asarray(attention_mask)
    return model_output(last_hidden_state=run_layers(org.layer, hidden_states, attention_mask))


@organized_apply
def dinov2_model_apply(
    org: StateOrganizer,
    /,
    pixel_values: InputArray,
    bool_masked_pos: InputArray | None = None,
    attention_mask: InputArray | None = None,
    **options: Any,
) -> dict[str, jax.Array]:
    """`Dinov2Model`: `{"last_hidden_state", "pooler_output"}`, the latter the normed
    class token."""
    reject_options("Dinov2Model", options)
    embedding_output = org.embeddings(pixel_values, bool_masked_pos=bool_masked_pos)
    bias = bidirectional_mask(attention_mask, embedding_output.dtype)
    encoder_outputs = org.encoder(embedding_output, attention_mask=bias)
    sequence_output = org.layernorm(encoder_outputs["last_hidden_state"])
    return model_output(last_hidden_state=sequence_output, pooler_output=sequence_output[:, 0, :])


@organized_apply
def dinov2_for_image_classification_apply(
    org: StateOrganizer,
    /,
    pixel_values: InputArray,
    labels: InputArray | None = None,
    attention_mask: InputArray | None = None,
    **options: Any,
) -> dict[str, jax.Array]:
    """`Dinov2ForImageClassification`: the classifier on the class token joined with the
    mean patch token; `"loss"` with `labels`."""
    labels = None if labels is None else jnp.asarray(labels)
    reject_options("Dinov2ForImageClassification", options)
    sequence_output = org.dinov2(pixel_values, attention_mask=attention_mask)["last_hidden_state"]
    cls_token, patch_tokens = sequence_output[:, 0], sequence_output[:, 1:]
    logits = org.classifier(jnp.concatenate([cls_token, patch_tokens.mean(axis=1)], axis=1))
    return classifier_output(org, logits, labels)


def _encode(
    org: StateOrganizer,
    who: str,
    pixel_values: jax.Array,
    interpolate_pos_encoding: bool | None,
    attention_mask: jax.Array | None,
    options: dict[str, Any],
) -> jax.Array:
    """The base model's (`vit`, `deit`, ...: `base_model_prefix`) last hidden state."""
    reject_options(who, options)
    outputs = base_model(org)(
        pixel_values,
        interpolate_pos_encoding=interpolate_pos_encoding,
        attention_mask=attention_mask,
    )
    out: jax.Array = outputs["last_hidden_state"]
    return out


@organized_apply
def vit_for_image_classification_apply(
    org: StateOrganizer,
    /,
    pixel_values: InputArray,
    labels: InputArray | None = None,
    interpolate_pos_encoding: bool | None = None,
    attention_mask: InputArray | None = None,
    **options: Any,
) -> dict[str, jax.Array]:
    """`ViTForImageClassification`: `{"logits"}` from the class token, `"loss"` with
    `labels` (regression, single- or multi-label, as torch picks)."""
    pixel_values = jnp.asarray(pixel_values)
    labels = None if labels is None else jnp.asarray(labels)
    attention_mask = None if attention_mask is None else jnp.asarray(attention_mask)
    sequence_output = _encode(
        org,
        "ViTForImageClassification",
        pixel_values,
        interpolate_pos_encoding,
        attention_mask,
        options,
    )
    return classifier_output(org, org.classifier(sequence_output[:, 0, :]), labels)


@organized_apply
def deit_for_image_classification_with_teacher_apply(
    org: StateOrganizer,
    /,
    pixel_values: InputArray,
    interpolate_pos_encoding: bool = False,
    attention_mask: InputArray | None = None,
    **options: Any,
) -> dict[str, jax.Array]:
    """`DeiTForImageClassificationWithTeacher`: the mean of the class-token and the
    distillation-token heads, `{"logits", "cls_logits", "distillation_logits"}`."""
    pixel_values = jnp.asarray(pixel_values)
    attention_mask = None if attention_mask is None else jnp.asarray(attention_mask)
    sequence_output = _encode(
        org,
        "DeiTForImageClassificationWithTeacher",
        pixel_values,
        interpolate_pos_encoding,
        attention_mask,
        options,
    )
    cls_logits = org.cls_classifier(sequence_output[:, 0, :])
    distillation_logits = org.distillation_classifier(sequence_output[:, 1, :])
    logits = (cls_logits + distillation_logits) / 2
    return model_output(
        logits=logits, cls_logits=cls_logits, distillation_logits=distillation_logits
    )


_VIT: dict[str, ApplyFn] = {
    "PatchEmbeddings": vit_patch_embeddings_apply,
    "Embeddings": vit_embeddings_apply,
    "Attention": vit_attention_apply,
    "MLP": vit_mlp_apply,
    "Layer": vit_layer_apply,
    "Pooler": pooler_apply,
    "Model": vit_model_apply,
    "ForImageClassification": vit_for_image_classification_apply,
    "ForImageClassificationWithTeacher": deit_for_image_classification_with_teacher_apply,
}
register_family(
    _VIT,
    "vit.modeling_vit.ViT",
    "deit.modeling_deit.DeiT",
    "vit_msn.modeling_vit_msn.ViTMSN",
    rng={"Attention"},
    aux={
        "ForImageClassification": config_reader("problem_type"),
        "ForImageClassificationWithTeacher": config_reader(),
    },
)
register_family(
    {
        "PatchEmbeddings": vit_patch_embeddings_apply,
        "Embeddings": dinov2_embeddings_apply,
        "Attention": vit_attention_apply,
        "LayerScale": scaled_by("lambda1"),
        "MLP": vit_mlp_apply,
        "SwiGLUFFN": gated_mlp_apply,
        "DropPath": drop_path_apply,
        "Layer": dinov2_layer_apply,
        "Encoder": dinov2_encoder_apply,
        "Model": dinov2_model_apply,
        "ForImageClassification": dinov2_for_image_classification_apply,
    },
    "dinov2.modeling_dinov2.Dinov2",
    rng={"Attention", "DropPath"},
    aux={"ForImageClassification": config_reader("problem_type")},
)
