"""Hugging Face T5 (`transformers.models.t5`) and the families built from copies of its
classes (mT5): `T5Model`, `T5ForConditionalGeneration`, `T5EncoderModel`, the stacks,
blocks and layers they are made of, the relative position bias of the first layer
(shared by the others) and `T5LayerNorm`. The shared embedding is tied across
encoder, decoder and LM head by `convert` (one leaf).

A family whose classes copy T5's under its own prefix needs one more
`"module.Prefix"` in the `register_family` call at the end."""

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..._organizer import StateOrganizer, organized_apply
from ..._types import AuxValue, InputArray
from ._attention import attention, split_heads
from ._hf_common import check_model_inputs, register_family, reject_options, token_loss
from ._hf_masks import bidirectional_mask, causal_mask
from ._randomness import dropout

_HALF = (jnp.float16, jnp.bfloat16)


@organized_apply
def t5_layer_norm_apply(org: StateOrganizer, hidden_states: InputArray) -> jax.Array:
    """`T5LayerNorm`: scale by the root mean square (no mean subtracted, no bias)."""
    h: jax.Array = jnp.asarray(hidden_states)
    variance = jnp.mean(jnp.square(h.astype(jnp.float32)), axis=-1, keepdims=True)
    h = h * jax.lax.rsqrt(variance + org.variance_epsilon)
    if org.weight.dtype in _HALF:
        h = h.astype(org.weight.dtype)
    h = org.weight * h
    return h


def _project_out(org: StateOrganizer, hidden_states: jax.Array) -> jax.Array:
    """Dropout, then `wo` on the states cast to its weight's dtype."""
    hidden_states = org.dropout(hidden_states)
    out: jax.Array = org.wo(hidden_states.astype(org.wo.tree["params"]["weight"].dtype))
    return out


@organized_apply
def t5_dense_act_dense_apply(org: StateOrganizer, hidden_states: InputArray) -> jax.Array:
    """`T5DenseActDense`: `wo(dropout(act(wi(x))))`."""
    return _project_out(org, org.act(org.wi(hidden_states)))


@organized_apply
def t5_dense_gated_act_dense_apply(org: StateOrganizer, hidden_states: InputArray) -> jax.Array:
    """`T5DenseGatedActDense`: `wo(dropout(act(wi_0(x)) * wi_1(x)))`."""
    return _project_out(org, org.act(org.wi_0(hidden_states)) * org.wi_1(hidden_states))


@organized_apply
def t5_layer_ff_apply(org: StateOrganizer, hidden_states: InputArray) -> jax.Array:
    """`T5LayerFF`: pre-norm feed-forward with a residual."""
    h: jax.Array = jnp.asarray(hidden_states)
    forwarded_states = org.DenseReluDense(org.layer_norm(h))
    h = h + org.dropout(forwarded_states)
    return h


def relative_position_bucket(
    relative_position: np.ndarray, bidirectional: bool, num_buckets: int, max_distance: int
) -> np.ndarray:
    """T5's bucket of each relative position (key minus query): exact for small
    distances, logarithmic up to `max_distance`. Positions are static, so this runs in
    NumPy, in float32 as torch does."""
    relative_buckets = np.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        relative_buckets += (relative_position > 0).astype(relative_position.dtype) * num_buckets
        relative_position = np.abs(relative_position)
    else:
        relative_position = -np.minimum(relative_position, 0)
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    with np.errstate(divide="ignore"):  # log(0) at the small positions, not used
        scaled = np.log(relative_position.astype(np.float32) / np.float32(max_exact))
    scaled = scaled / np.float32(math.log(max_distance / max_exact))
    scaled = scaled * np.float32(num_buckets - max_exact)
    if_large = max_exact + np.where(is_small, 0, scaled).astype(relative_position.dtype)
    if_large = np.minimum(if_large, num_buckets - 1)
    return relative_buckets + np.where(is_small, relative_position, if_large)


def compute_bias(org: StateOrganizer, query_length: int, key_length: int) -> jax.Array:
    """`(1, heads, query_length, key_length)`: the learned bias of each relative position."""
    context_position = np.arange(query_length)[:, None]
    memory_position = np.arange(key_length)[None, :]
    buckets = relative_position_bucket(
        memory_position - context_position,
        bidirectional=not org.is_decoder,
        num_buckets=org.relative_attention_num_buckets,
        max_distance=org.relative_attention_max_distance,
    )
    values = org.relative_attention_bias(jnp.asarray(buckets))
    return jnp.transpose(values, (2, 0, 1))[None]


@organized_apply
def t5_attention_apply(
    org: StateOrganizer,
    hidden_states: InputArray,
    mask: InputArray | None = None,
    key_value_states: InputArray | None = None,
    position_bias: InputArray | None = None,
) -> tuple[jax.Array, jax.Array]:
    """`T5Attention`: `(output, position_bias)`, self-attention or (with
    `key_value_states`) cross-attention; unscaled logits plus the position bias, which
    the first layer computes and the others receive. Its `dropout` on the weights is
    drawn from the node's key in train mode."""
    mask = None if mask is None else jnp.asarray(mask)
    position_bias = None if position_bias is None else jnp.asarray(position_bias)
    input_shape = hidden_states.shape[:-1]
    query = split_heads(org.q(hidden_states), org.key_value_proj_dim)
    current_states = hidden_states if key_value_states is None else key_value_states
    key = split_heads(org.k(current_states), org.key_value_proj_dim)
    value = split_heads(org.v(current_states), org.key_value_proj_dim)
    if position_bias is None:
        key_length = key.shape[-2]
        if not org.has_relative_attention_bias:
            position_bias = jnp.zeros((1, org.n_heads, input_shape[1], key_length), query.dtype)
        else:
            position_bias = compute_bias(org, input_shape[1], key_length)
    drop = functools.partial(dropout, org, p=org.dropout, who="T5Attention")
    out, _ = attention(
        query, key, value, org.scaling, position_bias, mask, upcast=False, dropout=drop
    )
    return org.o(out), position_bias


def _attention_layer(
    org: StateOrganizer, attention: Any, hidden_states: jax.Array, **kwargs: Any
) -> tuple[jax.Array, jax.Array]:
    """Pre-norm `attention(normed, **kwargs)` with a residual; its position bias too."""
    attention_output, position_bias = attention(org.layer_norm(hidden_states), **kwargs)
    return hidden_states + org.dropout(attention_output), position_bias


@organized_apply
def t5_layer_self_attention_apply(
    org: StateOrganizer,
    hidden_states: InputArray,
    attention_mask: InputArray | None = None,
    position_bias: InputArray | None = None,
) -> tuple[jax.Array, jax.Array]:
    """`T5LayerSelfAttention`: pre-norm self-attention with a residual."""
    hidden_states = jnp.asarray(hidden_states)
    attention_mask = None if attention_mask is None else jnp.asarray(attention_mask)
    position_bias = None if position_bias is None else jnp.asarray(position_bias)
    return _attention_layer(
        org, org.SelfAttention, hidden_states, mask=attention_mask, position_bias=position_bias
    )


@organized_apply
def t5_layer_cross_attention_apply(
    org: StateOrganizer,
    hidden_states: InputArray,
    key_value_states: InputArray,
    attention_mask: InputArray | None = None,
    position_bias: InputArray | None = None,
) -> tuple[jax.Array, jax.Array]:
    """`T5LayerCrossAttention`: pre-norm attention over the encoder's states."""
    hidden_states = jnp.asarray(hidden_states)
    return _attention_layer(
        org,
        org.EncDecAttention,
        hidden_states,
        mask=attention_mask,
        key_value_states=key_value_states,
        position_bias=position_bias,
    )


def _clamp_fp16(hidden_states: jax.Array) -> jax.Array:
    """T5's guard against float16 overflow: clamp to the finite range."""
    if hidden_states.dtype != jnp.float16:
        return hidden_states
    largest = float(jnp.finfo(jnp.float16).max)  # type: ignore[no-untyped-call]  # untyped in jax
    clamp_value = jnp.where(jnp.isinf(hidden_states).any(), largest - 1000, largest)
    return jnp.clip(hidden_states, -clamp_value, clamp_value).astype(jnp.float16)


@organized_apply
def t5_block_apply(
    org: StateOrganizer,
    hidden_states: InputArray,
    attention_mask: InputArray | None = None,
    position_bias: InputArray | None = None,
    encoder_hidden_states: InputArray | None = None,
    encoder_attention_mask: InputArray | None = None,
    encoder_decoder_position_bias: InputArray | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """`T5Block`: self-attention, cross-attention (decoders given encoder states),
    feed-forward; `(hidden_states, self_attention_bias, cross_attention_bias)`."""
    h: jax.Array = jnp.asarray(hidden_states)
    h, self_attn_position_bias = org.layer[0](
        h, attention_mask=attention_mask, position_bias=position_bias
    )
    h = _clamp_fp16(h)
    cross_attn_position_bias = None
    if org.is_decoder and encoder_hidden_states is not None:
        h, cross_attn_position_bias = org.layer[1](
            h,
            key_value_states=encoder_hidden_states,
            attention_mask=encoder_attention_mask,
            position_bias=encoder_decoder_position_bias,
        )
        h = _clamp_fp16(h)
    h = _clamp_fp16(org.layer[-1](h))
    return h, self_attn_position_bias, cross_attn_position_bias


@organized_apply
def t5_stack_apply(
    org: StateOrganizer,
    /,
    input_ids: Any = None,
    *,
    attention_mask: Any = None,
    encoder_hidden_states: InputArray | None = None,
    encoder_attention_mask: Any = None,
    inputs_embeds: InputArray | None = None,
    **options: Any,
) -> dict[str, jax.Array]:
    """`T5Stack`, the encoder or (`is_decoder`) the causal decoder:
    `{"last_hidden_state": ...}`."""
    inputs_embeds = None if inputs_embeds is None else jnp.asarray(inputs_embeds)
    check_model_inputs("T5Stack", options, input_ids, inputs_embeds)
    if inputs_embeds is None:
        inputs_embeds = org.embed_tokens(jnp.asarray(input_ids))
    mask: jax.Array | None
    if org.is_decoder:
        mask = causal_mask(inputs_embeds, attention_mask)
    else:
        mask = bidirectional_mask(attention_mask, inputs_embeds.dtype)
    encoder_extended_attention_mask = None
    if org.is_decoder and encoder_hidden_states is not None:
        encoder_extended_attention_mask = bidirectional_mask(
            encoder_attention_mask, inputs_embeds.dtype
        )
    position_bias = None
    encoder_decoder_position_bias = None
    hidden_states = org.dropout(inputs_embeds)
    for layer_module in org.block:
        hidden_states, position_bias, cross_attention_position_bias = layer_module(
            hidden_states,
            mask,
            position_bias,
            encoder_hidden_states,
            encoder_extended_attention_mask,
            encoder_decoder_position_bias,
        )
        if org.is_decoder and encoder_hidden_states is not None:
            encoder_decoder_position_bias = cross_attention_position_bias
    hidden_states = org.final_layer_norm(hidden_states)
    return {"last_hidden_state": org.dropout(hidden_states)}


def _encoder_state(encoder_outputs: Any) -> jax.Array:
    """The encoder's last hidden state from `encoder_outputs` (a dict or a tuple)."""
    if isinstance(encoder_outputs, dict):
        state: jax.Array = encoder_outputs["last_hidden_state"]
        return state
    first: jax.Array = encoder_outputs[0]
    return first


def _encode_decode(
    org: StateOrganizer,
    who: str,
    input_ids: Any = None,
    *,
    attention_mask: Any = None,
    decoder_input_ids: Any = None,
    decoder_attention_mask: Any = None,
    encoder_outputs: Any = None,
    inputs_embeds: jax.Array | None = None,
    decoder_inputs_embeds: jax.Array | None = None,
    **options: Any,
) -> tuple[jax.Array, jax.Array]:
    """`(decoder last hidden state, encoder last hidden state)` of an encoder-decoder
    `who`, encoding unless given `encoder_outputs`."""
    reject_options(who, options)
    if encoder_outputs is None:
        encoder_outputs = org.encoder(
            input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds
        )
    hidden_states = _encoder_state(encoder_outputs)
    decoder_outputs = org.decoder(
        decoder_input_ids,
        attention_mask=decoder_attention_mask,
        inputs_embeds=decoder_inputs_embeds,
        encoder_hidden_states=hidden_states,
        encoder_attention_mask=attention_mask,
    )
    return decoder_outputs["last_hidden_state"], hidden_states


@organized_apply
def t5_model_apply(
    org: StateOrganizer, /, input_ids: Any = None, **kwargs: Any
) -> dict[str, jax.Array]:
    """`T5Model`: `{"last_hidden_state": ..., "encoder_last_hidden_state": ...}`; the
    keyword arguments are `attention_mask`, `decoder_input_ids`,
    `decoder_attention_mask`, `encoder_outputs`, `inputs_embeds` and
    `decoder_inputs_embeds`."""
    decoded, encoded = _encode_decode(org, "T5Model", input_ids, **kwargs)
    return {"last_hidden_state": decoded, "encoder_last_hidden_state": encoded}


def shift_right(org: StateOrganizer, input_ids: Any) -> jax.Array:
    """`_shift_right`: the decoder inputs of `labels`, starting with
    `decoder_start_token_id`, -100 replaced by `pad_token_id`."""
    if org.decoder_start_token_id is None or org.pad_token_id is None:
        raise ValueError(
            "labels: shifting them into decoder_input_ids needs config.decoder_start_token_id "
            "and config.pad_token_id; set them, or pass decoder_input_ids"
        )
    input_ids = jnp.asarray(input_ids)
    start = jnp.full((*input_ids.shape[:-1], 1), org.decoder_start_token_id, input_ids.dtype)
    shifted = jnp.concatenate([start, input_ids[..., :-1]], axis=-1)
    return jnp.where(shifted == -100, org.pad_token_id, shifted)


@organized_apply
def t5_for_conditional_generation_apply(
    org: StateOrganizer,
    /,
    input_ids: Any = None,
    *,
    decoder_input_ids: Any = None,
    decoder_inputs_embeds: InputArray | None = None,
    labels: Any = None,
    **kwargs: Any,
) -> dict[str, jax.Array]:
    """`T5ForConditionalGeneration`: `{"logits": ..., "encoder_last_hidden_state": ...}`,
    and `"loss"` with `labels` (which also give `decoder_input_ids`, shifted right);
    other keyword arguments as `T5Model`'s. The decoder output is scaled by
    `d_model ** -0.5` when `config.scale_decoder_outputs` (T5's tied-embedding
    rescaling)."""
    decoder_inputs_embeds = (
        None if decoder_inputs_embeds is None else jnp.asarray(decoder_inputs_embeds)
    )
    if labels is not None and decoder_input_ids is None and decoder_inputs_embeds is None:
        decoder_input_ids = shift_right(org, labels)
    sequence_output, encoded = _encode_decode(
        org,
        "T5ForConditionalGeneration",
        input_ids,
        decoder_input_ids=decoder_input_ids,
        decoder_inputs_embeds=decoder_inputs_embeds,
        **kwargs,
    )
    if org.scale_decoder_outputs:
        sequence_output = sequence_output * (org.model_dim**-0.5)
    lm_logits = org.lm_head(sequence_output)
    out = {"logits": lm_logits, "encoder_last_hidden_state": encoded}
    if labels is not None:
        out["loss"] = token_loss(lm_logits.astype(jnp.float32), labels)
    return out


@organized_apply
def t5_encoder_model_apply(
    org: StateOrganizer,
    /,
    input_ids: Any = None,
    *,
    attention_mask: Any = None,
    inputs_embeds: InputArray | None = None,
    **options: Any,
) -> dict[str, jax.Array]:
    """`T5EncoderModel`: `{"last_hidden_state": ...}`."""
    reject_options("T5EncoderModel", options)
    outputs: dict[str, jax.Array] = org.encoder(
        input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds
    )
    return outputs


def generation_config(module: Any) -> dict[str, AuxValue]:
    """From the model's `config`: whether the decoder output is rescaled before the LM
    head, and the token ids that shift labels into decoder inputs."""
    config = module.config
    return {
        "scale_decoder_outputs": bool(getattr(config, "scale_decoder_outputs", False)),
        "decoder_start_token_id": getattr(config, "decoder_start_token_id", None),
        "pad_token_id": getattr(config, "pad_token_id", None),
    }


register_family(
    {
        "LayerNorm": t5_layer_norm_apply,
        "DenseActDense": t5_dense_act_dense_apply,
        "DenseGatedActDense": t5_dense_gated_act_dense_apply,
        "LayerFF": t5_layer_ff_apply,
        "Attention": t5_attention_apply,
        "LayerSelfAttention": t5_layer_self_attention_apply,
        "LayerCrossAttention": t5_layer_cross_attention_apply,
        "Block": t5_block_apply,
        "Stack": t5_stack_apply,
        "Model": t5_model_apply,
        "ForConditionalGeneration": t5_for_conditional_generation_apply,
        "EncoderModel": t5_encoder_model_apply,
    },
    "t5.modeling_t5.T5",
    "mt5.modeling_mt5.MT5",
    rng={"Attention"},
    aux={"ForConditionalGeneration": generation_config},
)
