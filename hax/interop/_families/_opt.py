"""Hugging Face OPT (`transformers.models.opt`): learned positions counted from the
attention mask and offset by 2, queries scaled before the product, a ReLU `fc1`/`fc2`
MLP, norms before (`do_layer_norm_before`, OPT-125m) or after (OPT-350m) each block,
the optional `project_in`/`project_out` around the layers, and LayerDrop."""

import functools
from typing import Any

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ..._types import GlobalConfig, StructureTree
from ...nn._embedding import embedding_apply
from ._attention import attention, split_heads
from ._hf_common import (
    causal_lm_apply,
    check_model_inputs,
    config_reader,
    register_family,
    reject_options,
)
from ._hf_masks import causal_mask, use_cache_default
from ._randomness import drop_layer, dropout


def opt_positions_apply(
    tree: StructureTree, global_config: GlobalConfig, position_ids: Any
) -> tuple[StructureTree, jax.Array]:
    """`OPTLearnedPositionalEmbedding`, given the positions: the rows `position_ids +
    offset` (`offset` is 2; the first two rows are never read)."""
    offset: int = tree["aux"]["offset"]  # type: ignore[assignment]  # an int, from torch
    positions = jnp.asarray(position_ids) + offset
    return embedding_apply(tree, global_config, positions)


@organized_apply
def opt_attention_apply(
    org: StateOrganizer, hidden_states: jax.Array, attention_mask: jax.Array | None = None
) -> jax.Array:
    """`OPTAttention`: queries scaled before `q k^T`, eager attention with the node's
    `dropout` drawn from its key in train mode, `out_proj`."""
    query = split_heads(org.q_proj(hidden_states) * org.scaling, org.head_dim)
    key, value = (split_heads(f(hidden_states), org.head_dim) for f in (org.k_proj, org.v_proj))
    drop = functools.partial(dropout, org, p=org.dropout, who="attention dropout")
    out, _ = attention(query, key, value, 1.0, attention_mask, dropout=drop)
    attn_output: jax.Array = org.out_proj(out)
    return attn_output


@organized_apply
def opt_decoder_layer_apply(
    org: StateOrganizer, hidden_states: jax.Array, attention_mask: jax.Array | None = None
) -> jax.Array:
    """`OPTDecoderLayer`: attention, then `fc1`, activation, `fc2`, each dropped at
    `dropout` and added to its input; the norms act before each block when
    `do_layer_norm_before`, else after each residual sum."""
    before = org.do_layer_norm_before
    residual = hidden_states
    if before:
        hidden_states = org.self_attn_layer_norm(hidden_states)
    hidden_states = org.self_attn(hidden_states, attention_mask=attention_mask)
    hidden_states = residual + dropout(org, hidden_states, org.dropout, who="dropout")
    if not before:
        hidden_states = org.self_attn_layer_norm(hidden_states)
    residual = hidden_states
    if before:
        hidden_states = org.final_layer_norm(hidden_states)
    hidden_states = org.fc2(org.activation_fn(org.fc1(hidden_states)))
    hidden_states = residual + dropout(org, hidden_states, org.dropout, who="dropout")
    if not before:
        hidden_states = org.final_layer_norm(hidden_states)
    return hidden_states


@organized_apply
def opt_decoder_apply(
    org: StateOrganizer,
    /,
    input_ids: Any = None,
    *,
    attention_mask: Any = None,
    inputs_embeds: jax.Array | None = None,
    use_cache: bool | None = None,
    position_ids: Any = None,
    **options: Any,
) -> dict[str, jax.Array]:
    """`OPTDecoder`: `{"last_hidden_state": ...}`. Without `position_ids`, a token's
    position is the count of unmasked tokens before it (-1 for padding). Layers are
    skipped at `layerdrop` in train mode."""
    check_model_inputs("OPTDecoder", options, input_ids, inputs_embeds)
    if use_cache:
        reject_options("OPTDecoder", {"use_cache": use_cache})
    if inputs_embeds is None:
        ids = jnp.asarray(input_ids)
        inputs_embeds = org.embed_tokens(ids.reshape(-1, ids.shape[-1]))
    batch, length = inputs_embeds.shape[:2]
    if position_ids is None:
        seen = jnp.ones((batch, length), jnp.int32)
        if attention_mask is not None:
            seen = jnp.asarray(attention_mask).astype(jnp.int32)
        position_ids = jnp.cumsum(seen, axis=1) * seen - 1
    mask = causal_mask(inputs_embeds, attention_mask)
    pos_embeds = org.embed_positions(position_ids)
    if org.project_in is not None:  # None (an attribute, not a child) without a projection
        inputs_embeds = org.project_in(inputs_embeds)
    hidden_states = inputs_embeds + pos_embeds
    for layer in org.layers:
        out = layer(hidden_states, attention_mask=mask)
        hidden_states = drop_layer(org, hidden_states, out, org.layerdrop, who="layerdrop")
    if org.final_layer_norm is not None:
        hidden_states = org.final_layer_norm(hidden_states)
    if org.project_out is not None:
        hidden_states = org.project_out(hidden_states)
    return {"last_hidden_state": hidden_states}


@organized_apply
def opt_model_apply(org: StateOrganizer, /, *args: Any, **kwargs: Any) -> dict[str, jax.Array]:
    """`OPTModel`: its `decoder`'s `{"last_hidden_state": ...}`."""
    out: dict[str, jax.Array] = org.decoder(*args, **kwargs)
    return out


register_family(
    {
        "LearnedPositionalEmbedding": opt_positions_apply,
        "Attention": opt_attention_apply,
        "DecoderLayer": opt_decoder_layer_apply,
        "Decoder": opt_decoder_apply,
        "Model": opt_model_apply,
        "ForCausalLM": causal_lm_apply,
    },
    "opt.modeling_opt.OPT",
    rng={"Attention", "DecoderLayer", "Decoder"},
    aux={"Decoder": use_cache_default, "ForCausalLM": config_reader()},
)
