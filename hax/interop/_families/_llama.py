"""Hugging Face Llama (`transformers.models.llama`) and the decoders built from copies of
its classes (Mistral, Qwen2): RMSNorm, rotary position embeddings read from the
model's `rotary_emb` (its non-persistent `inv_freq`), grouped-query attention, the
gated MLP, and causal or sliding-window masks per layer.

A family whose classes copy Llama's under its own prefix needs one more
`"module.Prefix"` in the `register_family` call at the end."""

import functools
from typing import Any

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ..._types import AuxValue, InputArray
from ...nn.functional import apply_rotary_embedding
from ._attention import attention, split_heads
from ._hf_common import (
    causal_lm_apply,
    check_model_inputs,
    config_reader,
    gated_mlp_apply,
    register_family,
)
from ._hf_masks import causal_mask, packing_positions, use_cache_default
from ._randomness import dropout


@organized_apply
def llama_rms_norm_apply(org: StateOrganizer, hidden_states: InputArray) -> jax.Array:
    """`LlamaRMSNorm`: `weight * x / sqrt(mean(x^2) + eps)`, computed in float32."""
    h: jax.Array = jnp.asarray(hidden_states)
    input_dtype = h.dtype
    h = h.astype(jnp.float32)
    variance = jnp.mean(jnp.square(h), axis=-1, keepdims=True)
    h = h * jax.lax.rsqrt(variance + org.variance_epsilon)
    h = org.weight * h.astype(input_dtype)
    return h


@organized_apply
def rotary_embedding_apply(
    org: StateOrganizer, x: InputArray, position_ids: Any
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
def llama_attention_apply(
    org: StateOrganizer,
    hidden_states: InputArray,
    position_embeddings: tuple[jax.Array, jax.Array],
    attention_mask: InputArray | None = None,
) -> jax.Array:
    """`LlamaAttention`: rotary queries and keys, grouped-query eager attention with
    `attention_dropout` drawn from the node's key in train mode."""
    attention_mask = None if attention_mask is None else jnp.asarray(attention_mask)
    query, key, value = (
        split_heads(f(hidden_states), org.head_dim) for f in (org.q_proj, org.k_proj, org.v_proj)
    )
    cos, sin = position_embeddings
    query = apply_rotary_embedding(query, cos, sin, unsqueeze_dim=1)
    key = apply_rotary_embedding(key, cos, sin, unsqueeze_dim=1)
    key, value = (repeat_kv(t, org.num_key_value_groups) for t in (key, value))
    drop = functools.partial(dropout, org, p=org.attention_dropout, who="attention dropout")
    out, _ = attention(query, key, value, org.scaling, attention_mask, dropout=drop)
    attn_output: jax.Array = org.o_proj(out)
    return attn_output


@organized_apply
def llama_decoder_layer_apply(
    org: StateOrganizer,
    hidden_states: InputArray,
    attention_mask: InputArray | None = None,
    position_embeddings: tuple[jax.Array, jax.Array] | None = None,
) -> jax.Array:
    """`LlamaDecoderLayer`: pre-norm attention and MLP, each with a residual."""
    if position_embeddings is None:
        raise ValueError("decoder layer: position_embeddings (cos, sin) are required")
    hidden_states = hidden_states + org.self_attn(
        org.input_layernorm(hidden_states),
        attention_mask=attention_mask,
        position_embeddings=position_embeddings,
    )
    out: jax.Array = hidden_states + org.mlp(org.post_attention_layernorm(hidden_states))
    return out


@organized_apply
def llama_model_apply(
    org: StateOrganizer,
    /,
    input_ids: Any = None,
    *,
    attention_mask: Any = None,
    position_ids: Any = None,
    inputs_embeds: InputArray | None = None,
    use_cache: bool | None = None,
    **options: Any,
) -> dict[str, jax.Array]:
    """`LlamaModel`: `{"last_hidden_state": ...}`. Each layer gets the causal mask of its
    kind (`aux["layer_types"]`: full or sliding-window attention)."""
    inputs_embeds = None if inputs_embeds is None else jnp.asarray(inputs_embeds)
    check_model_inputs("decoder model", options, input_ids, inputs_embeds)
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


register_family(
    {
        "RMSNorm": llama_rms_norm_apply,
        "RotaryEmbedding": rotary_embedding_apply,
        "MLP": gated_mlp_apply,
        "Attention": llama_attention_apply,
        "DecoderLayer": llama_decoder_layer_apply,
        "Model": llama_model_apply,
        "ForCausalLM": causal_lm_apply,
    },
    "llama.modeling_llama.Llama",
    "mistral.modeling_mistral.Mistral",
    "qwen2.modeling_qwen2.Qwen2",
    rng={"Attention"},
    aux={"Model": decoder_config, "ForCausalLM": config_reader()},
)
