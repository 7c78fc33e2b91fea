"""Hugging Face GPT-2 (`transformers.models.gpt2`): `GPT2Model`, `GPT2LMHeadModel`
and the blocks they are made of, and `Conv1D`, the linear layer with its weight stored
`(in, out)`. The LM head is tied to `wte` by `convert` (one leaf)."""

from typing import Any

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ..._types import InputArray
from ._attention import attention, split_heads
from ._hf_common import causal_lm_apply, check_model_inputs, config_reader
from ._hf_masks import bidirectional_mask, causal_mask, packing_positions, use_cache_default
from ._registry import register_all


@organized_apply
def conv1d_apply(org: StateOrganizer, x: InputArray) -> jax.Array:
    """`Conv1D`: `x @ weight + bias`, the weight `(nx, nf)`."""
    out: jax.Array = x @ org.weight + org.bias
    return out


@organized_apply
def gpt2_attention_apply(
    org: StateOrganizer,
    hidden_states: InputArray,
    attention_mask: InputArray | None = None,
    encoder_hidden_states: InputArray | None = None,
    encoder_attention_mask: InputArray | None = None,
) -> jax.Array:
    """`GPT2Attention`, self-attention or (with `encoder_hidden_states`) cross-attention."""
    attention_mask = None if attention_mask is None else jnp.asarray(attention_mask)
    if encoder_hidden_states is not None:
        query = org.q_attn(hidden_states)
        attention_mask = (
            None if encoder_attention_mask is None else jnp.asarray(encoder_attention_mask)
        )
        key, value = jnp.split(org.c_attn(encoder_hidden_states), 2, axis=2)
    else:
        query, key, value = jnp.split(org.c_attn(hidden_states), 3, axis=2)
    query, key, value = (split_heads(t, org.head_dim) for t in (query, key, value))
    upcast, drop = org.reorder_and_upcast_attn, org.attn_dropout
    out, _ = attention(query, key, value, org.scaling, attention_mask, upcast=upcast, dropout=drop)
    attn_output: jax.Array = org.resid_dropout(org.c_proj(out))
    return attn_output


@organized_apply
def gpt2_mlp_apply(org: StateOrganizer, hidden_states: InputArray) -> jax.Array:
    """`GPT2MLP`: `c_fc`, activation, `c_proj`, dropout."""
    out: jax.Array = org.dropout(org.c_proj(org.act(org.c_fc(hidden_states))))
    return out


@organized_apply
def gpt2_block_apply(
    org: StateOrganizer,
    hidden_states: InputArray,
    attention_mask: InputArray | None = None,
    encoder_hidden_states: InputArray | None = None,
    encoder_attention_mask: InputArray | None = None,
) -> jax.Array:
    """`GPT2Block`: pre-norm attention, cross-attention when given encoder states, MLP,
    each with a residual."""
    hidden_states = hidden_states + org.attn(org.ln_1(hidden_states), attention_mask=attention_mask)
    if encoder_hidden_states is not None:
        if not hasattr(org, "crossattention"):
            raise ValueError(
                "GPT2Block: encoder_hidden_states needs cross-attention layers; build the "
                "model with config.add_cross_attention=True"
            )
        hidden_states = hidden_states + org.crossattention(
            org.ln_cross_attn(hidden_states),
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
        )
    out: jax.Array = hidden_states + org.mlp(org.ln_2(hidden_states))
    return out


@organized_apply
def gpt2_model_apply(
    org: StateOrganizer,
    /,
    input_ids: Any = None,
    *,
    attention_mask: Any = None,
    token_type_ids: Any = None,
    position_ids: Any = None,
    inputs_embeds: InputArray | None = None,
    encoder_hidden_states: InputArray | None = None,
    encoder_attention_mask: Any = None,
    use_cache: bool | None = None,
    **options: Any,
) -> dict[str, jax.Array]:
    """`GPT2Model`: `{"last_hidden_state": ...}`."""
    inputs_embeds = None if inputs_embeds is None else jnp.asarray(inputs_embeds)
    check_model_inputs("GPT2Model", options, input_ids, inputs_embeds)
    if inputs_embeds is not None:
        input_shape = inputs_embeds.shape[:-1]
    else:
        input_shape = jnp.shape(input_ids)
        input_ids = jnp.reshape(jnp.asarray(input_ids), (-1, input_shape[-1]))
    if token_type_ids is not None:
        token_type_ids = jnp.reshape(jnp.asarray(token_type_ids), (-1, input_shape[-1]))
    if inputs_embeds is None:
        inputs_embeds = org.wte(input_ids)
    if position_ids is None:
        position_ids = jnp.arange(inputs_embeds.shape[1])[None]
    hidden_states = inputs_embeds + org.wpe(jnp.asarray(position_ids))
    if attention_mask is not None:
        attention_mask = jnp.reshape(jnp.asarray(attention_mask), (inputs_embeds.shape[0], -1))
    packing = packing_positions(org, "GPT2Model", use_cache, position_ids)
    mask = causal_mask(inputs_embeds, attention_mask, packing)
    if encoder_hidden_states is not None:
        encoder_attention_mask = bidirectional_mask(encoder_attention_mask, inputs_embeds.dtype)
    if token_type_ids is not None:
        hidden_states = hidden_states + org.wte(token_type_ids)
    hidden_states = org.drop(hidden_states)
    for block in org.h:
        hidden_states = block(
            hidden_states,
            mask,
            encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
        )
    hidden_states = org.ln_f(hidden_states)
    return {"last_hidden_state": hidden_states.reshape(*input_shape, hidden_states.shape[-1])}


register_all("transformers.pytorch_utils.", {"Conv1D": conv1d_apply})
register_all(
    "transformers.models.gpt2.modeling_gpt2.GPT2",
    {
        "Attention": gpt2_attention_apply,
        "MLP": gpt2_mlp_apply,
        "Block": gpt2_block_apply,
        "Model": gpt2_model_apply,
        "LMHeadModel": causal_lm_apply,
    },
    aux={"Model": use_cache_default, "LMHeadModel": config_reader()},
)
