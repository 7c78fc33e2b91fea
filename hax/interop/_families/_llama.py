"""Hugging Face Llama (`transformers.models.llama`) and the decoders built from copies of
its classes (Mistral, Qwen2): RMSNorm, rotary position embeddings read from the
model's `rotary_emb` (its non-persistent `inv_freq`), grouped-query attention, the
gated MLP, and causal or sliding-window masks per layer.

A family whose classes copy Llama's under its own prefix needs one line,
`register_llama_like("module", "Prefix")`."""

from typing import Any

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ..._types import AuxValue
from ...nn.functional import apply_rotary_embedding
from .._library import register_apply
from ._hf_shared import (
    base_model_prefix,
    causal_lm_apply,
    causal_mask,
    eager_attention,
    functional_dropout,
    packing_positions,
    reject_options,
    split_heads,
    use_cache_default,
)


@organized_apply
def llama_rms_norm_apply(org: StateOrganizer, hidden_states: jax.Array) -> jax.Array:
    """`LlamaRMSNorm`: `weight * x / sqrt(mean(x^2) + eps)`, computed in float32."""
    input_dtype = hidden_states.dtype
    hidden_states = hidden_states.astype(jnp.float32)
    variance = jnp.mean(jnp.square(hidden_states), axis=-1, keepdims=True)
    hidden_states = hidden_states * jax.lax.rsqrt(variance + org.variance_epsilon)
    hidden_states = org.weight * hidden_states.astype(input_dtype)
    return hidden_states


@organized_apply
def rotary_embedding_apply(
    org: StateOrganizer, x: jax.Array, position_ids: Any
) -> tuple[jax.Array, jax.Array]:
    """`LlamaRotaryEmbedding`: `(cos, sin)` of `position * inv_freq`, each frequency twice."""
    if "dynamic" in org.rope_type or org.rope_type == "longrope":
        raise ValueError(
            f"rotary embedding: rope_type {org.rope_type!r} recomputes its frequencies from "
            "the sequence length at every call, which HAX does not; use a static rope_type "
            "(default, linear, llama3, yarn)"
        )
    positions = jnp.asarray(position_ids)[..., None].astype(jnp.float32)
    freqs = positions * org.inv_freq.astype(jnp.float32)
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    cos = jnp.cos(emb) * org.attention_scaling
    sin = jnp.sin(emb) * org.attention_scaling
    return cos.astype(x.dtype), sin.astype(x.dtype)


def repeat_kv(x: jax.Array, n_rep: int) -> jax.Array:
    """Each of the key/value heads repeated for the `n_rep` query heads that share it."""
    return x if n_rep == 1 else jnp.repeat(x, n_rep, axis=1)


@organized_apply
def llama_mlp_apply(org: StateOrganizer, x: jax.Array) -> jax.Array:
    """`LlamaMLP`: `down(act(gate(x)) * up(x))`."""
    down_proj: jax.Array = org.down_proj(org.act_fn(org.gate_proj(x)) * org.up_proj(x))
    return down_proj


@organized_apply
def llama_attention_apply(
    org: StateOrganizer,
    hidden_states: jax.Array,
    position_embeddings: tuple[jax.Array, jax.Array],
    attention_mask: jax.Array | None = None,
) -> jax.Array:
    """`LlamaAttention`: rotary queries and keys, grouped-query eager attention with
    `attention_dropout` drawn from the node's key in train mode."""
    input_shape = hidden_states.shape[:-1]
    query = split_heads(org.q_proj(hidden_states), org.head_dim)
    key = split_heads(org.k_proj(hidden_states), org.head_dim)
    value = split_heads(org.v_proj(hidden_states), org.head_dim)
    cos, sin = position_embeddings
    query = apply_rotary_embedding(query, cos, sin, unsqueeze_dim=1)
    key = apply_rotary_embedding(key, cos, sin, unsqueeze_dim=1)

    def dropout(weights: jax.Array) -> jax.Array:
        return functional_dropout(org, weights, org.attention_dropout, "attention dropout")

    out = eager_attention(
        query,
        repeat_kv(key, org.num_key_value_groups),
        repeat_kv(value, org.num_key_value_groups),
        attention_mask,
        org.scaling,
        upcast=True,
        dropout=dropout,
    )
    attn_output: jax.Array = org.o_proj(out.reshape(*input_shape, -1))
    return attn_output


@organized_apply
def llama_decoder_layer_apply(
    org: StateOrganizer,
    hidden_states: jax.Array,
    attention_mask: jax.Array | None = None,
    position_embeddings: tuple[jax.Array, jax.Array] | None = None,
) -> jax.Array:
    """`LlamaDecoderLayer`: pre-norm attention and MLP, each with a residual."""
    if position_embeddings is None:
        raise ValueError("decoder layer: position_embeddings (cos, sin) are required")
    residual = hidden_states
    hidden_states = org.input_layernorm(hidden_states)
    hidden_states = org.self_attn(
        hidden_states, attention_mask=attention_mask, position_embeddings=position_embeddings
    )
    hidden_states = residual + hidden_states
    residual = hidden_states
    hidden_states = org.post_attention_layernorm(hidden_states)
    hidden_states = residual + org.mlp(hidden_states)
    return hidden_states


@organized_apply
def llama_model_apply(
    org: StateOrganizer,
    /,
    input_ids: Any = None,
    *,
    attention_mask: Any = None,
    position_ids: Any = None,
    inputs_embeds: jax.Array | None = None,
    use_cache: bool | None = None,
    **options: Any,
) -> dict[str, jax.Array]:
    """`LlamaModel`: `{"last_hidden_state": ...}`. Each layer gets the causal mask of its
    kind (`aux["layer_types"]`: full or sliding-window attention)."""
    reject_options("decoder model", options)
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("decoder model: pass exactly one of input_ids or inputs_embeds")
    if inputs_embeds is None:
        inputs_embeds = org.embed_tokens(jnp.asarray(input_ids))
    if position_ids is None:
        position_ids = jnp.arange(inputs_embeds.shape[1])[None]
    packing = packing_positions(org, "decoder model", use_cache, position_ids)
    masks = {
        kind: causal_mask(
            inputs_embeds,
            attention_mask,
            packing,
            org.sliding_window if kind == "sliding_attention" else None,
        )
        for kind in dict.fromkeys(org.layer_types)
    }
    hidden_states = inputs_embeds
    position_embeddings = org.rotary_emb(hidden_states, position_ids)
    for i, decoder_layer in enumerate(org.layers):
        hidden_states = decoder_layer(
            hidden_states,
            attention_mask=masks[org.layer_types[i]],
            position_embeddings=position_embeddings,
        )
    return {"last_hidden_state": org.norm(hidden_states)}


def decoder_config(module: Any) -> dict[str, AuxValue]:
    """From the model's `config`: `use_cache`, `sliding_window`, and the attention kind of
    each layer (`config.layer_types`, else sliding-window everywhere when
    `sliding_window` is set, as Mistral, else full)."""
    config = module.config
    window = getattr(config, "sliding_window", None)
    kinds = (
        getattr(config, "layer_types", None)
        or ["sliding_attention" if window is not None else "full_attention"]
        * config.num_hidden_layers
    )
    return {**use_cache_default(module), "sliding_window": window, "layer_types": tuple(kinds)}


def register_llama_like(module: str, prefix: str) -> None:
    """Register Llama's applies for the classes `{prefix}RMSNorm`, `{prefix}Attention`,
    ... of `transformers.models.{module}.modeling_{module}`."""
    path = f"transformers.models.{module}.modeling_{module}.{prefix}"
    register_apply(path + "RMSNorm", llama_rms_norm_apply)
    register_apply(path + "RotaryEmbedding", rotary_embedding_apply)
    register_apply(path + "MLP", llama_mlp_apply)
    register_apply(path + "Attention", llama_attention_apply, rng=True)
    register_apply(path + "DecoderLayer", llama_decoder_layer_apply)
    register_apply(path + "Model", llama_model_apply, aux=decoder_config)
    register_apply(path + "ForCausalLM", causal_lm_apply, aux=base_model_prefix)


register_llama_like("llama", "Llama")
register_llama_like("mistral", "Mistral")
register_llama_like("qwen2", "Qwen2")
