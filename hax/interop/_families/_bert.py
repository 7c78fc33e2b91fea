"""Hugging Face BERT and the encoders that copy its classes (ELECTRA, RoBERTa,
XLM-RoBERTa, CamemBERT, Data2VecText): embeddings, post-norm self-attention layers,
pooler and the classification, token-classification and masked-LM heads. Each apply
follows the torch `forward` line by line, with eager attention; the dropout children
draw from their own keys in train mode (attention dropout is the self-attention's
`dropout` child)."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ..._types import ApplyFn, InputArray
from ._attention import self_attention
from ._hf_common import (
    base_model,
    check_model_inputs,
    classifier_output,
    config_reader,
    encoder_apply,
    model_output,
    pooler_apply,
    register_family,
    reject_options,
    token_loss,
)
from ._hf_masks import bidirectional_mask


def _input_shape(input_ids: jax.Array | None, inputs_embeds: jax.Array | None) -> tuple[int, int]:
    """`(batch, seq)` of the token ids, or of the embeddings given instead."""
    if input_ids is not None:
        return input_ids.shape[0], input_ids.shape[1]
    if inputs_embeds is not None:
        return inputs_embeds.shape[0], inputs_embeds.shape[1]
    raise ValueError("You must specify exactly one of input_ids or inputs_embeds")


def _embed(
    org: StateOrganizer,
    input_ids: jax.Array | None,
    token_type_ids: jax.Array | None,
    position_ids: InputArray,
    inputs_embeds: jax.Array | None,
) -> jax.Array:
    """Word + token-type + position embeddings, then LayerNorm and dropout."""
    batch_size, seq_length = _input_shape(input_ids, inputs_embeds)
    if token_type_ids is None:
        buffered = getattr(org, "token_type_ids", None)
        if buffered is not None:
            buffered = jnp.broadcast_to(buffered, (position_ids.shape[0], buffered.shape[1]))
            buffered = jnp.take_along_axis(buffered, position_ids, axis=1)
            token_type_ids = jnp.broadcast_to(buffered, (batch_size, seq_length))
        else:
            token_type_ids = jnp.zeros((batch_size, seq_length), jnp.int32)
    if inputs_embeds is None:
        inputs_embeds = org.word_embeddings(input_ids)
    embeddings = inputs_embeds + org.token_type_embeddings(token_type_ids)
    embeddings = embeddings + org.position_embeddings(position_ids)
    embeddings = org.LayerNorm(embeddings)
    out: jax.Array = org.dropout(embeddings)
    return out


@organized_apply
def bert_embeddings_apply(
    org: StateOrganizer,
    input_ids: InputArray | None = None,
    token_type_ids: InputArray | None = None,
    position_ids: InputArray | None = None,
    inputs_embeds: InputArray | None = None,
    cache_length: int = 0,
) -> jax.Array:
    """`BertEmbeddings`: positions `0..L-1` (the `position_ids` buffer) by default."""
    input_ids = None if input_ids is None else jnp.asarray(input_ids)
    token_type_ids = None if token_type_ids is None else jnp.asarray(token_type_ids)
    position_ids = None if position_ids is None else jnp.asarray(position_ids)
    inputs_embeds = None if inputs_embeds is None else jnp.asarray(inputs_embeds)
    if position_ids is None:
        seq_length = _input_shape(input_ids, inputs_embeds)[1]
        position_ids = org.position_ids[:, cache_length : seq_length + cache_length]
    return _embed(org, input_ids, token_type_ids, position_ids, inputs_embeds)


@organized_apply
def roberta_embeddings_apply(
    org: StateOrganizer,
    input_ids: InputArray | None = None,
    token_type_ids: InputArray | None = None,
    position_ids: InputArray | None = None,
    inputs_embeds: InputArray | None = None,
    cache_length: int = 0,
) -> jax.Array:
    """`RobertaEmbeddings`: positions count from `padding_idx + 1` over the non-padding
    tokens (padding tokens keep `padding_idx`)."""
    input_ids = None if input_ids is None else jnp.asarray(input_ids)
    token_type_ids = None if token_type_ids is None else jnp.asarray(token_type_ids)
    position_ids = None if position_ids is None else jnp.asarray(position_ids)
    inputs_embeds = None if inputs_embeds is None else jnp.asarray(inputs_embeds)
    padding_idx = org.padding_idx
    if position_ids is None:
        if input_ids is not None:
            mask = (input_ids != padding_idx).astype(jnp.int32)
            position_ids = (jnp.cumsum(mask, axis=1) + cache_length) * mask + padding_idx
        else:
            batch_size, seq_length = _input_shape(input_ids, inputs_embeds)
            positions = jnp.arange(padding_idx + 1, seq_length + padding_idx + 1)
            position_ids = jnp.broadcast_to(positions, (batch_size, seq_length))
    return _embed(org, input_ids, token_type_ids, position_ids, inputs_embeds)


@organized_apply
def bert_self_attention_apply(
    org: StateOrganizer, hidden_states: InputArray, attention_mask: InputArray | None = None
) -> tuple[jax.Array, jax.Array]:
    """`BertSelfAttention` (eager): `(attn_output, attn_weights)`."""
    attention_mask = None if attention_mask is None else jnp.asarray(attention_mask)
    query, key, value = (f(hidden_states) for f in (org.query, org.key, org.value))
    head_dim, scaling = org.attention_head_size, org.scaling
    return self_attention(query, key, value, head_dim, scaling, attention_mask, org.dropout)


@organized_apply
def bert_self_output_apply(
    org: StateOrganizer, hidden_states: InputArray, input_tensor: InputArray
) -> jax.Array:
    """`BertSelfOutput`, `BertOutput`: dense, dropout, then LayerNorm of the residual sum."""
    hidden_states = org.dropout(org.dense(hidden_states))
    out: jax.Array = org.LayerNorm(hidden_states + input_tensor)
    return out


@organized_apply
def bert_attention_apply(
    org: StateOrganizer, hidden_states: InputArray, attention_mask: InputArray | None = None
) -> tuple[jax.Array, jax.Array]:
    """`BertAttention` (self-attention only): `(attention_output, attn_weights)`."""
    if org.is_cross_attention:
        raise ValueError("BertAttention: cross-attention (a decoder's) is not supported")
    attention_output, attn_weights = org.self(hidden_states, attention_mask)
    return org.output(attention_output, hidden_states), attn_weights


@organized_apply
def bert_intermediate_apply(org: StateOrganizer, hidden_states: InputArray) -> jax.Array:
    """`BertIntermediate`: dense, then the `hidden_act` activation."""
    out: jax.Array = org.intermediate_act_fn(org.dense(hidden_states))
    return out


@organized_apply
def bert_layer_apply(
    org: StateOrganizer, hidden_states: InputArray, attention_mask: InputArray | None = None
) -> jax.Array:
    """`BertLayer`: self-attention, then the feed-forward block (chunking the feed-forward
    over the sequence, `chunk_size_feed_forward`, gives the same values, so it runs whole)."""
    attention_output, _ = org.attention(hidden_states, attention_mask)
    out: jax.Array = org.output(org.intermediate(attention_output), attention_output)
    return out


@organized_apply
def bert_model_apply(
    org: StateOrganizer,
    /,
    input_ids: InputArray | None = None,
    attention_mask: InputArray | None = None,
    token_type_ids: InputArray | None = None,
    position_ids: InputArray | None = None,
    inputs_embeds: InputArray | None = None,
    **options: Any,
) -> dict[str, jax.Array]:
    """`BertModel` (and `ElectraModel`, which projects the embeddings and has no pooler):
    `{"last_hidden_state", "pooler_output"}` (the latter with a pooler).
    `attention_mask` is a `(batch, seq)` padding mask of 1s and 0s (or a 4D additive mask)."""
    check_model_inputs("BertModel", options, input_ids, inputs_embeds)
    if org.is_decoder:
        raise ValueError("BertModel: config.is_decoder=True (causal BERT) is not supported")
    embedding_output = org.embeddings(
        input_ids=input_ids,
        position_ids=position_ids,
        token_type_ids=token_type_ids,
        inputs_embeds=inputs_embeds,
    )
    project = getattr(org, "embeddings_project", None)  # ELECTRA's, when sizes differ
    if project is not None:
        embedding_output = project(embedding_output)
    bias = bidirectional_mask(attention_mask, embedding_output.dtype, position_ids)
    sequence_output = org.encoder(embedding_output, bias)
    pooler = getattr(org, "pooler", None)
    pooled_output = pooler(sequence_output) if pooler is not None else None
    return model_output(last_hidden_state=sequence_output, pooler_output=pooled_output)


@organized_apply
def bert_prediction_head_transform_apply(
    org: StateOrganizer, hidden_states: InputArray
) -> jax.Array:
    """`BertPredictionHeadTransform`: dense, activation, LayerNorm."""
    out: jax.Array = org.LayerNorm(org.transform_act_fn(org.dense(hidden_states)))
    return out


@organized_apply
def bert_lm_prediction_head_apply(org: StateOrganizer, hidden_states: InputArray) -> jax.Array:
    """`BertLMPredictionHead`: transform, then the decoder (tied to the word embeddings)."""
    out: jax.Array = org.decoder(org.transform(hidden_states))
    return out


@organized_apply
def bert_only_mlm_head_apply(org: StateOrganizer, sequence_output: InputArray) -> jax.Array:
    """`BertOnlyMLMHead`: the prediction head."""
    out: jax.Array = org.predictions(sequence_output)
    return out


@organized_apply
def roberta_lm_head_apply(org: StateOrganizer, features: InputArray) -> jax.Array:
    """`RobertaLMHead`: dense, exact GELU, LayerNorm, decoder."""
    x = jax.nn.gelu(org.dense(features), approximate=False)
    out: jax.Array = org.decoder(org.layer_norm(x))
    return out


def _classification_head(
    org: StateOrganizer, features: jax.Array, activation: Callable[[jax.Array], jax.Array]
) -> jax.Array:
    """The first token through dropout, dense, `activation`, dropout, `out_proj`."""
    x = activation(org.dense(org.dropout(features[:, 0, :])))
    out: jax.Array = org.out_proj(org.dropout(x))
    return out


@organized_apply
def roberta_classification_head_apply(org: StateOrganizer, features: InputArray) -> jax.Array:
    """`RobertaClassificationHead`: the classification head with tanh."""
    features = jnp.asarray(features)
    return _classification_head(org, features, jnp.tanh)


@organized_apply
def electra_classification_head_apply(org: StateOrganizer, features: InputArray) -> jax.Array:
    """`ElectraClassificationHead`: as RoBERTa's, with its `activation` (GELU) for tanh."""
    features = jnp.asarray(features)
    return _classification_head(org, features, org.activation)


def _head(
    who: str,
    logits_of: Callable[[StateOrganizer, dict[str, jax.Array]], jax.Array],
    *,
    per_token: bool,
) -> ApplyFn:
    """The apply of a head `who` on the base model (`bert`, `roberta`, ...:
    `base_model_prefix`): `{"logits": logits_of(org, base_outputs)}`, and `"loss"` with
    `labels`, per token (cross entropy, -100 ignored) or per sequence (regression,
    single- or multi-label, as torch picks)."""

    @organized_apply
    def head_apply(
        org: StateOrganizer,
        /,
        input_ids: InputArray | None = None,
        attention_mask: InputArray | None = None,
        token_type_ids: InputArray | None = None,
        position_ids: InputArray | None = None,
        inputs_embeds: InputArray | None = None,
        labels: InputArray | None = None,
        **options: Any,
    ) -> dict[str, jax.Array]:
        labels = None if labels is None else jnp.asarray(labels)
        reject_options(who, options)
        outputs = base_model(org)(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
        )
        logits = logits_of(org, outputs)
        if not per_token:
            return classifier_output(org, logits, labels)
        return model_output(
            loss=None if labels is None else token_loss(logits, labels), logits=logits
        )

    return head_apply


bert_for_sequence_classification_apply = _head(
    "BertForSequenceClassification",
    lambda org, outputs: org.classifier(org.dropout(outputs["pooler_output"])),
    per_token=False,
)
roberta_for_sequence_classification_apply = _head(
    "RobertaForSequenceClassification",
    lambda org, outputs: org.classifier(outputs["last_hidden_state"]),
    per_token=False,
)
bert_for_token_classification_apply = _head(
    "BertForTokenClassification",
    lambda org, outputs: org.classifier(org.dropout(outputs["last_hidden_state"])),
    per_token=True,
)
bert_for_masked_lm_apply = _head(
    "BertForMaskedLM", lambda org, outputs: org.cls(outputs["last_hidden_state"]), per_token=True
)
roberta_for_masked_lm_apply = _head(
    "RobertaForMaskedLM",
    lambda org, outputs: org.lm_head(outputs["last_hidden_state"]),
    per_token=True,
)


_LAYERS: dict[str, ApplyFn] = {
    "SelfAttention": bert_self_attention_apply,
    "SelfOutput": bert_self_output_apply,
    "Attention": bert_attention_apply,
    "Intermediate": bert_intermediate_apply,
    "Output": bert_self_output_apply,
    "Layer": bert_layer_apply,
    "Encoder": encoder_apply,
    "Pooler": pooler_apply,
    "Model": bert_model_apply,
    "ForTokenClassification": bert_for_token_classification_apply,
}
_MODEL_AUX = config_reader("is_decoder")
_HEAD_AUX = config_reader("problem_type")
_AUX = {
    "Model": _MODEL_AUX,
    "ForSequenceClassification": _HEAD_AUX,
    "ForTokenClassification": _HEAD_AUX,
    "ForMaskedLM": _HEAD_AUX,
}

register_family(
    {
        **_LAYERS,
        "Embeddings": bert_embeddings_apply,
        "ForSequenceClassification": bert_for_sequence_classification_apply,
        "PredictionHeadTransform": bert_prediction_head_transform_apply,
        "LMPredictionHead": bert_lm_prediction_head_apply,
        "OnlyMLMHead": bert_only_mlm_head_apply,
        "ForMaskedLM": bert_for_masked_lm_apply,
    },
    "bert.modeling_bert.Bert",
    aux=_AUX,
)
register_family(
    {
        **_LAYERS,
        "Embeddings": bert_embeddings_apply,
        "ClassificationHead": electra_classification_head_apply,
        "ForSequenceClassification": roberta_for_sequence_classification_apply,
    },
    "electra.modeling_electra.Electra",
    aux=_AUX,
)
# Families whose classes are RoBERTa's (Hugging Face generates them from it).
register_family(
    {
        **_LAYERS,
        "Embeddings": roberta_embeddings_apply,
        "ClassificationHead": roberta_classification_head_apply,
        "ForSequenceClassification": roberta_for_sequence_classification_apply,
        "LMHead": roberta_lm_head_apply,
        "ForMaskedLM": roberta_for_masked_lm_apply,
    },
    "roberta.modeling_roberta.Roberta",
    "xlm_roberta.modeling_xlm_roberta.XLMRoberta",
    "camembert.modeling_camembert.Camembert",
    "data2vec.modeling_data2vec_text.Data2VecText",
    aux=_AUX,
)
