"""Hugging Face's Swin Transformer (`transformers.models.swin`): patch embeddings
(padded to whole patches), layers of shifted-window attention with a relative position
bias, patch merging, and the image-classification head. The windowing is shared with
torchvision's Swin (`_window_attention`); attention dropout draws from the attention
node's key, drop-path from the `SwinDropPath` node's, in train mode."""

import functools
from typing import Any

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ._hf_cnn import image_classification_apply
from ._hf_common import config_reader, model_output, register_family, reject_options
from ._hf_vit import vit_mlp_apply
from ._randomness import drop_path_apply, dropout
from ._window_attention import (
    from_windows,
    patch_merging_pad,
    relative_position_bias,
    to_windows,
    window_attention,
    windows_mask,
)

Dims = tuple[int, int]


@organized_apply
def swin_patch_embeddings_apply(
    org: StateOrganizer, pixel_values: jax.Array
) -> tuple[jax.Array, Dims]:
    """`SwinPatchEmbeddings`: pad to whole patches, project, flatten to `(B, patches,
    C)`; with the patch grid's `(height, width)`."""
    height, width = pixel_values.shape[2:]
    ph, pw = org.patch_size
    pads = ((0, 0), (0, 0), (0, (ph - height % ph) % ph), (0, (pw - width % pw) % pw))
    embeddings = org.projection(jnp.pad(pixel_values, pads))
    dims = (embeddings.shape[2], embeddings.shape[3])
    return embeddings.reshape(*embeddings.shape[:2], -1).swapaxes(1, 2), dims


@organized_apply
def swin_embeddings_apply(
    org: StateOrganizer,
    pixel_values: jax.Array,
    bool_masked_pos: jax.Array | None = None,
    interpolate_pos_encoding: bool = False,
) -> tuple[jax.Array, Dims]:
    """`SwinEmbeddings`: patches, norm, masked patches replaced by the mask token, the
    absolute position embeddings (when the config uses them), dropout."""
    embeddings, dims = org.patch_embeddings(pixel_values)
    embeddings = org.norm(embeddings)
    if bool_masked_pos is not None:
        if org.mask_token is None:
            raise ValueError("bool_masked_pos needs a model built with use_mask_token=True")
        mask = bool_masked_pos[..., None].astype(embeddings.dtype)
        embeddings = embeddings * (1.0 - mask) + org.mask_token * mask
    if org.position_embeddings is not None:
        height, width = pixel_values.shape[2:]
        resized = embeddings.shape[1] != org.position_embeddings.shape[1] or height != width
        if interpolate_pos_encoding and resized:
            raise ValueError(
                "interpolate_pos_encoding=True: resampling the position embeddings (bicubic, "
                "for another image size) is not supported"
            )
        embeddings = embeddings + org.position_embeddings
    return org.dropout(embeddings), dims


@organized_apply
def swin_relative_position_bias_apply(org: StateOrganizer) -> jax.Array:
    """`SwinRelativePositionBias`: the learned table at the relative positions of a
    window, `(1, heads, N, N)`."""
    return relative_position_bias(
        org.relative_position_bias_table, org.relative_position_index, org.window_size
    )


@organized_apply
def swin_attention_apply(
    org: StateOrganizer, hidden_states: jax.Array, attention_mask: Any = None
) -> tuple[jax.Array, None]:
    """`SwinAttention` (eager) on windows `(B * windows, N, C)`: queries, keys, values,
    the relative bias plus the shift mask, softmax, dropout, `o_proj`. The attention
    weights are not returned."""
    b, n, _ = hidden_states.shape

    def heads(t: jax.Array) -> jax.Array:
        return t.reshape(b, n, -1, org.head_dim).swapaxes(1, 2)

    q, k, v = (heads(f(hidden_states)) for f in (org.q_proj, org.k_proj, org.v_proj))
    drop = functools.partial(dropout, org, p=org.attention_dropout, who="SwinAttention")
    out = window_attention(
        q, k, v, org.relative_position_bias(), attention_mask, attention_dropout=drop
    )
    return org.o_proj(out), None


@organized_apply
def swin_layer_apply(
    org: StateOrganizer,
    hidden_states: jax.Array,
    input_dimensions: Dims,
    always_partition: bool = False,
) -> tuple[jax.Array, None]:
    """`SwinLayer`: pre-norm shifted-window attention and MLP, each with dropout,
    drop-path (attention) and a residual. A map no larger than a window is one window,
    unshifted (unless `always_partition`)."""
    height, width = input_dimensions
    window, shift = org.window_size, org.shift_size
    if not always_partition and min(input_dimensions) <= window:
        window, shift = min(input_dimensions), 0
    batch_size, _, channels = hidden_states.shape
    shortcut = hidden_states
    x = org.layernorm_before(hidden_states).reshape(batch_size, height, width, channels)
    windows, shifts = to_windows(x, (window, window), (shift, shift))
    mask = windows_mask(height, width, (window, window), shifts)
    attention_output, _ = org.attention(windows, mask)
    attention_output = org.dropout(attention_output)
    x = from_windows(attention_output, height, width, (window, window), shifts)
    hidden_states = shortcut + org.drop_path(x.reshape(batch_size, height * width, channels))
    out = org.dropout(org.mlp(org.layernorm_after(hidden_states))) + hidden_states
    return out, None


@organized_apply
def swin_patch_merging_apply(
    org: StateOrganizer, input_feature: jax.Array, input_dimensions: Dims
) -> jax.Array:
    """`SwinPatchMerging`: 2x2 patches into channels (the map padded to even sizes),
    norm, `reduction`."""
    batch_size, _, channels = input_feature.shape
    x = patch_merging_pad(input_feature.reshape(batch_size, *input_dimensions, channels))
    out: jax.Array = org.reduction(org.norm(x.reshape(batch_size, -1, 4 * channels)))
    return out


@organized_apply
def swin_stage_apply(
    org: StateOrganizer,
    hidden_states: jax.Array,
    input_dimensions: Dims,
    always_partition: bool = False,
) -> jax.Array:
    """`SwinStage`: its layers, then patch merging (all stages but the last); returns
    the hidden states only (the reshaped ones are for `output_hidden_states`)."""
    for layer in org.blocks:
        hidden_states, _ = layer(hidden_states, input_dimensions, always_partition)
    if org.downsample is not None:
        hidden_states = org.downsample(hidden_states, input_dimensions)
    return hidden_states


@organized_apply
def swin_encoder_apply(
    org: StateOrganizer,
    hidden_states: jax.Array,
    input_dimensions: Dims,
    always_partition: bool = False,
) -> dict[str, jax.Array]:
    """`SwinEncoder`: the stages, halving the map's dimensions after each merging."""
    for stage in org.layers:
        hidden_states = stage(hidden_states, input_dimensions, always_partition)
        if "downsample" in stage.tree["submodules"]:
            input_dimensions = ((input_dimensions[0] + 1) // 2, (input_dimensions[1] + 1) // 2)
    return model_output(last_hidden_state=hidden_states)


@organized_apply
def swin_model_apply(
    org: StateOrganizer,
    /,
    pixel_values: jax.Array,
    bool_masked_pos: jax.Array | None = None,
    interpolate_pos_encoding: bool = False,
    **options: Any,
) -> dict[str, jax.Array]:
    """`SwinModel`: `{"last_hidden_state", "pooler_output"}`, the latter the token mean
    (with a pooler)."""
    reject_options("SwinModel", options)
    embedding_output, dims = org.embeddings(
        pixel_values,
        bool_masked_pos=bool_masked_pos,
        interpolate_pos_encoding=interpolate_pos_encoding,
    )
    sequence_output = org.layernorm(org.encoder(embedding_output, dims)["last_hidden_state"])
    pooled_output = None
    if org.pooler is not None:
        pooled_output = org.pooler(sequence_output.swapaxes(1, 2)).reshape(
            sequence_output.shape[0], -1
        )
    return model_output(last_hidden_state=sequence_output, pooler_output=pooled_output)


register_family(
    {
        "PatchEmbeddings": swin_patch_embeddings_apply,
        "Embeddings": swin_embeddings_apply,
        "RelativePositionBias": swin_relative_position_bias_apply,
        "Attention": swin_attention_apply,
        "MLP": vit_mlp_apply,
        "DropPath": drop_path_apply,
        "Layer": swin_layer_apply,
        "PatchMerging": swin_patch_merging_apply,
        "Stage": swin_stage_apply,
        "Encoder": swin_encoder_apply,
        "Model": swin_model_apply,
        "ForImageClassification": image_classification_apply,
    },
    "swin.modeling_swin.Swin",
    rng={"Attention", "DropPath"},
    aux={"ForImageClassification": config_reader("problem_type")},
)
