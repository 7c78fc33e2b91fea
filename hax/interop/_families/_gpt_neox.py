"""Hugging Face GPT-NeoX (`transformers.models.gpt_neox`, Pythia's): one fused
`query_key_value` projection laid out head by head, rotary embeddings on the first
`rotary_ndims` features of each head (Llama's tables), `nn.LayerNorm` norms and a
parallel or sequential residual (`config.use_parallel_residual`)."""

import functools
from typing import Any

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ...nn.functional import apply_rotary_embedding
from ._attention import attention
from ._hf_common import causal_lm_apply, check_model_inputs, config_reader, register_family
from ._hf_masks import causal_mask, packing_positions, use_cache_default
from ._llama import rotary_embedding_apply
from ._randomness import dropout


@organized_apply
def gpt_neox_mlp_apply(org: StateOrganizer, hidden_states: jax.Array) -> jax.Array:
    """`GPTNeoXMLP`: `dense_h_to_4h`, activation, `dense_4h_to_h`."""
    out: jax.Array = org.dense_4h_to_h(org.act(org.dense_h_to_4h(hidden_states)))
    return out


@organized_apply
def gpt_neox_attention_apply(
    org: StateOrganizer,
    hidden_states: jax.Array,
    attention_mask: jax.Array | None = None,
    position_embeddings: tuple[jax.Array, jax.Array] | None = None,
) -> jax.Array:
    """`GPTNeoXAttention`: `query_key_value` gives each head its query, key and value side
    by side (`(B, L, H, 3 * D)`); rotary queries and keys (the tables' width is
    `rotary_ndims`, the rest passes), eager attention with `attention_dropout` drawn
    from the node's key in train mode, `dense`."""
    if position_embeddings is None:
        raise ValueError("GPTNeoXAttention: position_embeddings (cos, sin) are required")
    qkv = org.query_key_value(hidden_states)
    qkv = qkv.reshape(*qkv.shape[:-1], -1, 3 * org.head_size).swapaxes(-3, -2)
    query, key, value = jnp.split(qkv, 3, axis=-1)
    cos, sin = position_embeddings
    query, key = (apply_rotary_embedding(t, cos, sin, unsqueeze_dim=1) for t in (query, key))
    drop = functools.partial(dropout, org, p=org.attention_dropout, who="attention dropout")
    out, _ = attention(query, key, value, org.scaling, attention_mask, dropout=drop)
    attn_output: jax.Array = org.dense(out)
    return attn_output


@organized_apply
def gpt_neox_layer_apply(
    org: StateOrganizer,
    hidden_states: jax.Array,
    attention_mask: jax.Array | None = None,
    position_embeddings: tuple[jax.Array, jax.Array] | None = None,
) -> jax.Array:
    """`GPTNeoXLayer`: pre-norm attention and MLP, each followed by its dropout; the MLP
    reads the layer's input and both add to it (`use_parallel_residual`), or it reads
    the attention's residual sum."""
    attn_output = org.post_attention_dropout(
        org.attention(
            org.input_layernorm(hidden_states),
            attention_mask=attention_mask,
            position_embeddings=position_embeddings,
        )
    )
    if org.use_parallel_residual:
        mlp_output = org.post_mlp_dropout(org.mlp(org.post_attention_layernorm(hidden_states)))
        out: jax.Array = mlp_output + attn_output + hidden_states
        return out
    attn_output = attn_output + hidden_states
    mlp_output = org.post_mlp_dropout(org.mlp(org.post_attention_layernorm(attn_output)))
    out = mlp_output + attn_output
    return out


@organized_apply
def gpt_neox_model_apply(
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
    """`GPTNeoXModel`: `{"last_hidden_state": ...}`, with the causal mask (packed
    sequences as Llama's)."""
    check_model_inputs("GPTNeoXModel", options, input_ids, inputs_embeds)
    if inputs_embeds is None:
        inputs_embeds = org.embed_in(jnp.asarray(input_ids))
    if position_ids is None:
        position_ids = jnp.arange(inputs_embeds.shape[1])[None]
    packing = packing_positions(org, "GPTNeoXModel", use_cache, position_ids)
    mask = causal_mask(inputs_embeds, attention_mask, packing)
    hidden_states = org.emb_dropout(inputs_embeds)
    position_embeddings = org.rotary_emb(hidden_states, position_ids)
    for layer in org.layers:
        hidden_states = layer(
            hidden_states, attention_mask=mask, position_embeddings=position_embeddings
        )
    return {"last_hidden_state": org.final_layer_norm(hidden_states)}


register_family(
    {
        "MLP": gpt_neox_mlp_apply,
        "RotaryEmbedding": rotary_embedding_apply,
        "Attention": gpt_neox_attention_apply,
        "Layer": gpt_neox_layer_apply,
        "Model": gpt_neox_model_apply,
        "ForCausalLM": causal_lm_apply,
    },
    "gpt_neox.modeling_gpt_neox.GPTNeoX",
    rng={"Attention"},
    aux={"Model": use_cache_default, "ForCausalLM": config_reader()},
)
