"""Hugging Face DistilBERT: word and position embeddings, post-norm blocks of
self-attention and feed-forward, and the sequence-classification head. Each apply
follows the torch `forward`, with eager attention; attention dropout is the
self-attention's `dropout` child."""

from typing import Any

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ..._types import InputArray
from ._attention import self_attention
from ._hf_common import (
    check_model_inputs,
    classifier_output,
    config_reader,
    encoder_apply,
    model_output,
    reject_options,
)
from ._hf_masks import bidirectional_mask
from ._registry import register_all


@organized_apply
def embeddings_apply(
    org: StateOrganizer,
    input_ids: InputArray | None,
    inputs_embeds: InputArray | None = None,
    position_ids: InputArray | None = None,
) -> jax.Array:
    """`Embeddings`: word + position embeddings (positions `0..L-1` by default), then
    LayerNorm and dropout."""
    if input_ids is not None:
        inputs_embeds = org.word_embeddings(input_ids)
    if inputs_embeds is None:
        raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
    if position_ids is None:
        position_ids = org.position_ids[:, : inputs_embeds.shape[1]]
    embeddings = inputs_embeds + org.position_embeddings(position_ids)
    out: jax.Array = org.dropout(org.LayerNorm(embeddings))
    return out


@organized_apply
def self_attention_apply(
    org: StateOrganizer, hidden_states: InputArray, attention_mask: InputArray | None = None
) -> tuple[jax.Array, jax.Array]:
    """`DistilBertSelfAttention` (eager): `(attn_output, attn_weights)`."""
    attention_mask = None if attention_mask is None else jnp.asarray(attention_mask)
    query, key, value = (f(hidden_states) for f in (org.q_lin, org.k_lin, org.v_lin))
    head_dim, scaling = org.attention_head_size, org.scaling
    out, weights = self_attention(query, key, value, head_dim, scaling, attention_mask, org.dropout)
    return org.out_lin(out), weights


@organized_apply
def ffn_apply(org: StateOrganizer, input: InputArray) -> jax.Array:
    """`FFN`: lin1, activation, lin2, dropout (chunking over the sequence gives the same
    values, so it runs whole)."""
    out: jax.Array = org.dropout(org.lin2(org.activation(org.lin1(input))))
    return out


@organized_apply
def transformer_block_apply(
    org: StateOrganizer, hidden_states: InputArray, attention_mask: InputArray | None = None
) -> jax.Array:
    """`TransformerBlock`: self-attention and feed-forward, each a LayerNorm of the
    residual sum."""
    attention_output, _ = org.attention(hidden_states, attention_mask)
    attention_output = org.sa_layer_norm(attention_output + hidden_states)
    out: jax.Array = org.output_layer_norm(org.ffn(attention_output) + attention_output)
    return out


@organized_apply
def distilbert_model_apply(
    org: StateOrganizer,
    /,
    input_ids: InputArray | None = None,
    attention_mask: InputArray | None = None,
    inputs_embeds: InputArray | None = None,
    position_ids: InputArray | None = None,
    **options: Any,
) -> dict[str, jax.Array]:
    """`DistilBertModel`: `{"last_hidden_state"}`; `attention_mask` is a `(batch, seq)`
    padding mask of 1s and 0s (or a 4D additive mask)."""
    check_model_inputs("DistilBertModel", options, input_ids, inputs_embeds)
    embeddings = org.embeddings(input_ids, inputs_embeds, position_ids)
    bias = bidirectional_mask(attention_mask, embeddings.dtype)
    return model_output(last_hidden_state=org.transformer(embeddings, bias))


@organized_apply
def distilbert_for_sequence_classification_apply(
    org: StateOrganizer,
    /,
    input_ids: InputArray | None = None,
    attention_mask: InputArray | None = None,
    inputs_embeds: InputArray | None = None,
    position_ids: InputArray | None = None,
    labels: InputArray | None = None,
    **options: Any,
) -> dict[str, jax.Array]:
    """`DistilBertForSequenceClassification`: the first token through `pre_classifier`,
    ReLU, dropout and `classifier`; `"loss"` with `labels`."""
    labels = None if labels is None else jnp.asarray(labels)
    reject_options("DistilBertForSequenceClassification", options)
    hidden_state = org.distilbert(
        input_ids=input_ids,
        attention_mask=attention_mask,
        inputs_embeds=inputs_embeds,
        position_ids=position_ids,
    )["last_hidden_state"]
    pooled_output = jnp.maximum(org.pre_classifier(hidden_state[:, 0]), 0)
    return classifier_output(org, org.classifier(org.dropout(pooled_output)), labels)


register_all(
    "transformers.models.distilbert.modeling_distilbert.",
    {
        "Embeddings": embeddings_apply,
        "DistilBertSelfAttention": self_attention_apply,
        "FFN": ffn_apply,
        "TransformerBlock": transformer_block_apply,
        "Transformer": encoder_apply,
        "DistilBertModel": distilbert_model_apply,
        "DistilBertForSequenceClassification": distilbert_for_sequence_classification_apply,
    },
    aux={"DistilBertForSequenceClassification": config_reader("problem_type")},
)
