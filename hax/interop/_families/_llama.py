"""Hugging Face Llama (`transformers.models.llama`) and the decoder-only LLMs built from
copies of its classes: RMSNorm, rotary position embeddings read from the model's
`rotary_emb` (its non-persistent `inv_freq`), grouped-query attention, the gated MLP,
and causal or sliding-window masks per layer.

Each apply runs Llama's forward. Where a family's forward differs in a detail, the
apply reads that detail's knob from the node's `aux`: a plain attribute of the torch
module (Granite's `residual_multiplier`, SmolLM3's `use_rope`), a child it has (Phi3's
fused `qkv_proj`), or a value the family's registration fixes
(`constant_aux(qk_norm="head")` for Qwen3's attention). Every knob defaults to Llama's
behaviour, so a family whose classes copy Llama's under its own prefix needs one more
`"module.Prefix"` in a `register_family` call at the end; one that differs needs its
knobs, or its own apply for the class that differs."""

import functools
from typing import Any

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ..._types import ApplyFn, AuxValue, GlobalConfig, StructureTree
from ...nn._embedding import embedding_apply
from ...nn.functional import apply_rotary_embedding, layer_norm
from ._attention import attention
from ._hf_common import (
    causal_lm_apply,
    check_model_inputs,
    config_reader,
    config_values,
    constant_aux,
    fused_gated_mlp_apply,
    gated_mlp_apply,
    register_family,
    ungated_mlp_apply,
)
from ._hf_masks import causal_mask, packing_positions, use_cache_default
from ._randomness import dropout

# ---------------------------------------------------------------- norms and embeddings


def _rms_normalized(hidden_states: jax.Array, eps: float) -> jax.Array:
    """`x / sqrt(mean(x^2) + eps)` over the last axis, in float32."""
    hidden_states = hidden_states.astype(jnp.float32)
    variance = jnp.mean(jnp.square(hidden_states), axis=-1, keepdims=True)
    return hidden_states * jax.lax.rsqrt(variance + eps)


@organized_apply
def llama_rms_norm_apply(org: StateOrganizer, hidden_states: jax.Array) -> jax.Array:
    """`LlamaRMSNorm`: `weight * x / sqrt(mean(x^2) + eps)`, normalised in float32 and
    cast back before the weight."""
    normalized = _rms_normalized(hidden_states, org.variance_epsilon)
    out: jax.Array = org.weight * normalized.astype(hidden_states.dtype)
    return out


@organized_apply
def rms_norm_weighted_in_float32_apply(org: StateOrganizer, hidden_states: jax.Array) -> jax.Array:
    """`Olmo2RMSNorm`, `HeliumRMSNorm`: Llama's, but the weight multiplies in float32,
    before the cast back."""
    normalized = _rms_normalized(hidden_states, org.variance_epsilon)
    out: jax.Array = (org.weight * normalized).astype(hidden_states.dtype)
    return out


@organized_apply
def gemma_rms_norm_apply(org: StateOrganizer, x: jax.Array) -> jax.Array:
    """`GemmaRMSNorm`: `x / sqrt(mean(x^2) + eps) * (1 + weight)` in float32 (the weight
    is stored as its offset from 1), cast back."""
    scale = 1.0 + org.weight.astype(jnp.float32)
    out: jax.Array = (_rms_normalized(x, org.eps) * scale).astype(x.dtype)
    return out


_OLMO_LAYER_NORM_EPS = 1e-5
"""The epsilon `OlmoLayerNorm.forward` passes to `F.layer_norm` (a literal there)."""


@organized_apply
def weightless_layer_norm_apply(org: StateOrganizer, hidden_states: jax.Array) -> jax.Array:
    """`OlmoLayerNorm`: layer normalisation without weight or bias, in float32."""
    normalized = layer_norm(
        hidden_states.astype(jnp.float32), org.normalized_shape, eps=_OLMO_LAYER_NORM_EPS
    )
    return normalized.astype(hidden_states.dtype)


@organized_apply
def cohere_layer_norm_apply(org: StateOrganizer, hidden_states: jax.Array) -> jax.Array:
    """`CohereLayerNorm`: layer normalisation with a weight and no bias, in float32
    (over the last axis; a `(heads, head_dim)` weight scales each head)."""
    x = hidden_states.astype(jnp.float32)
    centred = x - jnp.mean(x, axis=-1, keepdims=True)
    variance = jnp.mean(jnp.square(centred), axis=-1, keepdims=True)
    normalized = centred * jax.lax.rsqrt(variance + org.variance_epsilon)
    out: jax.Array = (org.weight.astype(jnp.float32) * normalized).astype(hidden_states.dtype)
    return out


@organized_apply
def layer_norm_per_head_apply(org: StateOrganizer, hidden_states: jax.Array) -> jax.Array:
    """`StableLmLayerNormPerHead`: on `(B, H, L, D)` heads, head `i` through `norms[i]`."""
    heads = [norm(hidden_states[:, i : i + 1]) for i, norm in enumerate(org.norms)]
    return jnp.concatenate(heads, axis=1)


def scaled_embedding_apply(
    tree: StructureTree, global_config: GlobalConfig, input_ids: jax.Array
) -> tuple[StructureTree, jax.Array]:
    """`GemmaTextScaledWordEmbedding`: the embedding rows (as `nn.Embedding`, with its
    `padding_idx`) times the non-persistent `embed_scale`, cast to the weight's dtype."""
    tree, rows = embedding_apply(tree, global_config, input_ids)
    scale = tree["buffers"]["embed_scale"].astype(tree["params"]["weight"].dtype)
    return tree, rows * scale


# ---------------------------------------------------------------- rotary embeddings


@organized_apply
def rotary_embedding_apply(
    org: StateOrganizer, x: jax.Array, position_ids: Any
) -> tuple[jax.Array, jax.Array]:
    """`LlamaRotaryEmbedding`: `(cos, sin)` of `position * inv_freq`, the frequencies
    concatenated twice (`[f0, f1, ..., f0, f1, ...]`), or each repeated in place
    (`[f0, f0, f1, f1, ...]`) with the knob `interleaved_tables` (Cohere's); in `x`'s
    dtype, or in float32 with the knob `tables_in_float32` (OLMo's)."""
    if "dynamic" in org.rope_type or org.rope_type == "longrope":
        raise ValueError(
            f"rotary embedding: rope_type {org.rope_type!r} recomputes its frequencies from "
            "the sequence length at every call, which HAX does not; use a static rope_type "
            "(default, linear, llama3, yarn)"
        )
    positions = jnp.asarray(position_ids)[..., None].astype(jnp.float32)
    freqs = positions * org.inv_freq.astype(jnp.float32)
    if getattr(org, "interleaved_tables", False):
        emb = jnp.repeat(freqs, 2, axis=-1)
    else:
        emb = jnp.concatenate([freqs, freqs], axis=-1)
    cos = jnp.cos(emb) * org.attention_scaling
    sin = jnp.sin(emb) * org.attention_scaling
    if getattr(org, "tables_in_float32", False):
        return cos, sin
    return cos.astype(x.dtype), sin.astype(x.dtype)


def apply_interleaved_rotary(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotary embedding of `(B, H, L, D)` heads that turns the feature pairs `(2i, 2i+1)`
    (not the halves) by interleaved `(B, L, R)` tables (`[a0, a0, a1, a1, ...]`);
    tables narrower than the heads (`R < D`) turn only the first `R` features."""
    cos, sin = (t[:, None].astype(x.dtype) for t in (cos, sin))
    width = cos.shape[-1]
    turned, passed = x[..., :width], x[..., width:]
    quarter = jnp.stack([-turned[..., 1::2], turned[..., 0::2]], axis=-1).reshape(turned.shape)
    return jnp.concatenate([turned * cos + quarter * sin, passed], axis=-1)


def _interleave(table: jax.Array) -> jax.Array:
    """Llama's `[a0, a1, ..., a0, a1, ...]` table as `[a0, a0, a1, a1, ...]` (GLM's
    `cos[..., : cos.shape[-1] // 2].repeat_interleave(2)`)."""
    return jnp.repeat(table[..., : table.shape[-1] // 2], 2, axis=-1)


_APPLY_ROTARY = ("llama", "glm", "cohere")


def _rotate(
    org: StateOrganizer, tensors: tuple[jax.Array, ...], tables: tuple[jax.Array, jax.Array]
) -> tuple[jax.Array, ...]:
    """Queries and keys turned by the rotary tables as the family's
    `apply_rotary_pos_emb` does, the knob `apply_rotary`: `"llama"` pairs feature `i`
    with `i + D/2`; `"glm"` (GLM, Helium) pairs neighbours, interleaving Llama's tables;
    `"cohere"` pairs neighbours by tables already interleaved, in float32. They turn in
    the wider of their dtype and the tables' (OLMo's float32 tables) and come back in
    their own. Layers with a false `use_rope` (SmolLM3's NoPE layers) do not turn them."""
    if not getattr(org, "use_rope", True):
        return tensors
    kind = getattr(org, "apply_rotary", "llama")
    if kind not in _APPLY_ROTARY:
        raise ValueError(
            f"attention: apply_rotary={kind!r} is not a rotary embedding HAX runs; register "
            f"the family's attention with one of {_APPLY_ROTARY}"
        )
    cos, sin = tables
    out = []
    for t in tensors:
        dtype = jnp.promote_types(t.dtype, cos.dtype)
        if kind == "cohere":
            dtype = jnp.promote_types(dtype, jnp.float32)
        wide = t.astype(dtype)
        if kind == "llama":
            turned = apply_rotary_embedding(wide, cos, sin, unsqueeze_dim=1)
        elif kind == "glm":
            turned = apply_interleaved_rotary(wide, _interleave(cos), _interleave(sin))
        else:
            turned = apply_interleaved_rotary(wide, cos, sin)
        out.append(turned.astype(t.dtype))
    return tuple(out)


# ---------------------------------------------------------------- attention


def repeat_kv(x: jax.Array, n_rep: int) -> jax.Array:
    """Each of the key/value heads repeated for the `n_rep` query heads that share it."""
    return x if n_rep == 1 else jnp.repeat(x, n_rep, axis=1)


_QK_NORMS = ("head", "projection")


def _qk_norm(org: StateOrganizer) -> str | None:
    """Where the attention's `q_norm`/`k_norm` act (knob `qk_norm`), or None without them."""
    if not hasattr(org, "q_norm"):
        return None
    where = getattr(org, "qk_norm", None)
    if where not in _QK_NORMS:
        raise ValueError(
            f"attention: the module has q_norm and k_norm but qk_norm={where!r}; register "
            "its family with aux constant_aux(qk_norm='head') (each head normalised, as "
            "Qwen3) or constant_aux(qk_norm='projection') (the whole projection, as Olmo2)"
        )
    return str(where)


def _projections(org: StateOrganizer, hidden_states: jax.Array) -> tuple[jax.Array, ...]:
    """Queries, keys and values as `(B, H, L, D)` heads: from `q_proj`, `k_proj`, `v_proj`
    or a fused `qkv_proj` (`[q | k | v]` on the features, Phi3's); clipped to
    `[-clip_qkv, clip_qkv]` when that knob is set (OLMo's `config.clip_qkv`); with
    `q_norm`/`k_norm` where the knob `qk_norm` says, and StableLM's `q_layernorm`/
    `k_layernorm` (one per head) when its `qk_layernorm` is true."""
    if hasattr(org, "qkv_proj"):
        kv_size = org.num_key_value_heads * org.head_dim
        q_size = kv_size * org.num_key_value_groups
        qkv = org.qkv_proj(hidden_states)
        query, key, value = jnp.split(qkv, [q_size, q_size + kv_size], axis=-1)
    else:
        query, key, value = (f(hidden_states) for f in (org.q_proj, org.k_proj, org.v_proj))
    clip = getattr(org, "clip_qkv", None)
    if clip is not None:
        query, key, value = (jnp.clip(t, -clip, clip) for t in (query, key, value))
    norm_at = _qk_norm(org)
    if norm_at == "projection":
        query, key = org.q_norm(query), org.k_norm(key)
    query, key, value = (t.reshape(*t.shape[:-1], -1, org.head_dim) for t in (query, key, value))
    if norm_at == "head":
        query, key = org.q_norm(query), org.k_norm(key)
    query, key, value = (t.swapaxes(-3, -2) for t in (query, key, value))
    if getattr(org, "qk_layernorm", False):  # StableLM's LayerNorm per head
        query, key = org.q_layernorm(query), org.k_layernorm(key)
    return query, key, value


@organized_apply
def llama_attention_apply(
    org: StateOrganizer,
    hidden_states: jax.Array,
    position_embeddings: tuple[jax.Array, jax.Array],
    attention_mask: jax.Array | None = None,
) -> jax.Array:
    """`LlamaAttention`: rotary queries and keys, grouped-query eager attention with
    `attention_dropout` drawn from the node's key in train mode, `o_proj`. Knobs: see
    `_projections` and `_rotate`; `scaling` (Granite's `attention_multiplier`);
    `residual_dropout` drops the output (Starcoder2's)."""
    if not getattr(org, "is_causal", True):
        raise ValueError(
            "attention: is_causal is False (Gemma's use_bidirectional_attention), for which "
            "torch's sdpa and eager attention disagree; HAX runs causal decoders only: build "
            "the model with use_bidirectional_attention=False"
        )
    query, key, value = _projections(org, hidden_states)
    query, key = _rotate(org, (query, key), position_embeddings)
    key, value = (repeat_kv(t, org.num_key_value_groups) for t in (key, value))
    drop = functools.partial(dropout, org, p=org.attention_dropout, who="attention dropout")
    out, _ = attention(query, key, value, org.scaling, attention_mask, dropout=drop)
    attn_output: jax.Array = org.o_proj(out)
    residual_dropout = getattr(org, "residual_dropout", 0.0)
    return dropout(org, attn_output, residual_dropout, who="attention residual dropout")


# ---------------------------------------------------------------- layers and model


@organized_apply
def starcoder2_mlp_apply(org: StateOrganizer, hidden_states: jax.Array) -> jax.Array:
    """`Starcoder2MLP`: `c_fc`, activation, `c_proj`, dropout at `residual_dropout`."""
    out = org.c_proj(org.act(org.c_fc(hidden_states)))
    return dropout(org, out, org.residual_dropout, who="MLP residual dropout")


@organized_apply
def seed_oss_mlp_apply(org: StateOrganizer, x: jax.Array) -> jax.Array:
    """`SeedOssMLP`: Llama's gated MLP, its output dropped at `residual_dropout`."""
    out = org.down_proj(org.act_fn(org.gate_proj(x)) * org.up_proj(x))
    return dropout(org, out, org.residual_dropout, who="MLP residual dropout")


def _add_branch(
    org: StateOrganizer, residual: jax.Array, out: jax.Array, dropout_child: str
) -> jax.Array:
    """`residual + out`, the branch's output first dropped by the layer's child
    `dropout_child` if it has one (Phi3's `resid_attn_dropout`) and scaled by the knob
    `residual_multiplier` if set (Granite's)."""
    if hasattr(org, dropout_child):
        out = getattr(org, dropout_child)(out)
    multiplier = getattr(org, "residual_multiplier", None)
    if multiplier is not None:
        out = out * multiplier
    return residual + out


_NORMS = ("pre", "post", "parallel")


@organized_apply
def llama_decoder_layer_apply(
    org: StateOrganizer,
    hidden_states: jax.Array,
    attention_mask: jax.Array | None = None,
    position_embeddings: tuple[jax.Array, jax.Array] | None = None,
) -> jax.Array:
    """`LlamaDecoderLayer`: attention then MLP, each added to the residual stream. With
    the knob `norms="pre"` (Llama's) each branch normalises its input
    (`input_layernorm`, `post_attention_layernorm`); with `"post"` (OLMo2's) its output
    (`post_attention_layernorm`, `post_feedforward_layernorm`); with `"parallel"`
    (Cohere's) both read `input_layernorm` of the layer's input and add to it. See
    `_add_branch`."""
    if position_embeddings is None:
        raise ValueError("decoder layer: position_embeddings (cos, sin) are required")

    def attend(x: jax.Array) -> jax.Array:
        out: jax.Array = org.self_attn(
            x, attention_mask=attention_mask, position_embeddings=position_embeddings
        )
        return out

    norms = getattr(org, "norms", "pre")
    if norms == "pre":
        attended = attend(org.input_layernorm(hidden_states))
        hidden_states = _add_branch(org, hidden_states, attended, "resid_attn_dropout")
        mixed = org.mlp(org.post_attention_layernorm(hidden_states))
    elif norms == "post":
        attended = org.post_attention_layernorm(attend(hidden_states))
        hidden_states = _add_branch(org, hidden_states, attended, "resid_attn_dropout")
        mixed = org.post_feedforward_layernorm(org.mlp(hidden_states))
    elif norms == "parallel":
        normalized = org.input_layernorm(hidden_states)
        out: jax.Array = hidden_states + attend(normalized) + org.mlp(normalized)
        return out
    else:
        raise ValueError(
            f"decoder layer: norms={norms!r} is not a norm placement HAX runs; register the "
            f"family's decoder layer with one of {_NORMS}"
        )
    return _add_branch(org, hidden_states, mixed, "resid_mlp_dropout")


@organized_apply
def stablelm_decoder_layer_apply(
    org: StateOrganizer,
    hidden_states: jax.Array,
    attention_mask: jax.Array | None = None,
    position_embeddings: tuple[jax.Array, jax.Array] | None = None,
) -> jax.Array:
    """`StableLmDecoderLayer`: attention on `input_layernorm` of the input; the MLP reads
    the same normalised input and both add to the input (`use_parallel_residual`), or
    it reads `post_attention_layernorm` of the attention's residual sum. The MLP's
    output goes through the `dropout` child."""
    normalized = org.input_layernorm(hidden_states)
    attended = org.self_attn(
        normalized, attention_mask=attention_mask, position_embeddings=position_embeddings
    )
    if org.use_parallel_residual:
        out: jax.Array = hidden_states + attended + org.dropout(org.mlp(normalized))
        return out
    hidden_states = hidden_states + attended
    out = hidden_states + org.dropout(org.mlp(org.post_attention_layernorm(hidden_states)))
    return out


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
    kind (`aux["layer_types"]`: full or sliding-window attention). The embeddings are
    scaled by the knob `embedding_multiplier` (Granite's) and dropped at
    `embedding_dropout` (Starcoder2's) when the node has them."""
    check_model_inputs("decoder model", options, input_ids, inputs_embeds)
    if inputs_embeds is None:
        inputs_embeds = org.embed_tokens(jnp.asarray(input_ids))
    if getattr(org, "embedding_multiplier", None) is not None:
        inputs_embeds = inputs_embeds * org.embedding_multiplier
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
    embedding_dropout = getattr(org, "embedding_dropout", 0.0)
    hidden_states = dropout(org, inputs_embeds, embedding_dropout, who="embedding dropout")
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


# ---------------------------------------------------------------- registrations

LLAMA_APPLIES: dict[str, ApplyFn] = {
    "RMSNorm": llama_rms_norm_apply,
    "RotaryEmbedding": rotary_embedding_apply,
    "MLP": gated_mlp_apply,
    "Attention": llama_attention_apply,
    "DecoderLayer": llama_decoder_layer_apply,
    "Model": llama_model_apply,
    "ForCausalLM": causal_lm_apply,
}
"""Llama's applies by class-name suffix, for the families that reuse them."""

LLAMA_AUX = {"Model": decoder_config, "ForCausalLM": config_reader()}
"""The aux readers every Llama-like family needs."""

_FLOAT32_TABLES = constant_aux(tables_in_float32=True)
_GLM_ROTARY = constant_aux(apply_rotary="glm")

# Llama's forward as it is. SmolLM3 differs only by its `use_rope` attribute (NoPE
# layers); the windows of Mistral, Qwen2, Ministral and CWM are read by `decoder_config`.
register_family(
    LLAMA_APPLIES,
    "llama.modeling_llama.Llama",
    "mistral.modeling_mistral.Mistral",
    "qwen2.modeling_qwen2.Qwen2",
    "ministral.modeling_ministral.Ministral",
    "smollm3.modeling_smollm3.SmolLM3",
    "cwm.modeling_cwm.Cwm",
    rng={"Attention"},
    aux=LLAMA_AUX,
)
# Granite: its attention `scaling`, `residual_multiplier` and `embedding_multiplier` are
# attributes the applies read; the head divides by `config.logits_scaling`.
register_family(
    LLAMA_APPLIES,
    "granite.modeling_granite.Granite",
    rng={"Attention"},
    aux={**LLAMA_AUX, "ForCausalLM": config_reader("logits_scaling")},
)
register_family(
    LLAMA_APPLIES,
    "qwen3.modeling_qwen3.Qwen3",
    rng={"Attention"},
    aux={**LLAMA_AUX, "Attention": constant_aux(qk_norm="head")},
)
register_family(
    {
        **LLAMA_APPLIES,
        "RMSNorm": gemma_rms_norm_apply,
        "TextScaledWordEmbedding": scaled_embedding_apply,
    },
    "gemma.modeling_gemma.Gemma",
    rng={"Attention"},
    aux=LLAMA_AUX,
)
# Phi3: fused `qkv_proj` (found by the attention apply), fused `gate_up_proj`, residual
# dropout children.
register_family(
    {**LLAMA_APPLIES, "MLP": fused_gated_mlp_apply},
    "phi3.modeling_phi3.Phi3",
    rng={"Attention"},
    aux=LLAMA_AUX,
)
register_family(
    {**LLAMA_APPLIES, "LayerNorm": weightless_layer_norm_apply},
    "olmo.modeling_olmo.Olmo",
    rng={"Attention"},
    aux={
        **LLAMA_AUX,
        "RotaryEmbedding": _FLOAT32_TABLES,
        "Attention": config_values("clip_qkv"),
    },
)
register_family(
    {**LLAMA_APPLIES, "RMSNorm": rms_norm_weighted_in_float32_apply},
    "olmo2.modeling_olmo2.Olmo2",
    rng={"Attention"},
    aux={
        **LLAMA_AUX,
        "RotaryEmbedding": _FLOAT32_TABLES,
        "Attention": constant_aux(qk_norm="projection"),
        "DecoderLayer": constant_aux(norms="post"),
    },
)
register_family(
    {**LLAMA_APPLIES, "RMSNorm": rms_norm_weighted_in_float32_apply},
    "helium.modeling_helium.Helium",
    rng={"Attention"},
    aux={**LLAMA_AUX, "Attention": _GLM_ROTARY},
)
register_family(
    {**LLAMA_APPLIES, "MLP": fused_gated_mlp_apply},
    "glm.modeling_glm.Glm",
    rng={"Attention"},
    aux={**LLAMA_AUX, "Attention": _GLM_ROTARY},
)
# Arcee and Jais2: an MLP without a gate (Jais2's norms are `nn.LayerNorm`).
register_family(
    {**LLAMA_APPLIES, "MLP": ungated_mlp_apply},
    "arcee.modeling_arcee.Arcee",
    "jais2.modeling_jais2.Jais2",
    rng={"Attention"},
    aux=LLAMA_AUX,
)
# Starcoder2: `nn.LayerNorm` norms (converted as such), an MLP of its own, and dropout
# of the embeddings and of each branch's output.
register_family(
    {**LLAMA_APPLIES, "MLP": starcoder2_mlp_apply},
    "starcoder2.modeling_starcoder2.Starcoder2",
    rng={"Attention", "MLP", "Model"},
    aux=LLAMA_AUX,
)
# Seed-OSS: dropout of the attention's and the MLP's outputs (`residual_dropout`).
register_family(
    {**LLAMA_APPLIES, "MLP": seed_oss_mlp_apply},
    "seed_oss.modeling_seed_oss.SeedOss",
    rng={"Attention", "MLP"},
    aux=LLAMA_AUX,
)
register_family(
    {
        **LLAMA_APPLIES,
        "DecoderLayer": stablelm_decoder_layer_apply,
        "LayerNormPerHead": layer_norm_per_head_apply,
    },
    "stablelm.modeling_stablelm.StableLm",
    rng={"Attention"},
    aux=LLAMA_AUX,
)
# Cohere: mean-centred norms with no bias, interleaved rotary in float32, q/k norms per
# head (`use_qk_norm`), one norm for attention and MLP in parallel, `logit_scale`.
register_family(
    {**LLAMA_APPLIES, "LayerNorm": cohere_layer_norm_apply},
    "cohere.modeling_cohere.Cohere",
    rng={"Attention"},
    aux={
        **LLAMA_AUX,
        "RotaryEmbedding": constant_aux(interleaved_tables=True),
        "Attention": constant_aux(qk_norm="head", apply_rotary="cohere"),
        "DecoderLayer": constant_aux(norms="parallel"),
    },
)
