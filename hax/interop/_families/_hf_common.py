"""What every Hugging Face family shares around its layers: the check that rejects the
forward options HAX does not run, the `ModelOutput` dicts and losses of the heads,
the aux readers of `config` values, and the heads that are alike across families
(pooler, causal LM)."""

from collections.abc import Callable, Collection, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ..._types import ApplyFn, AuxValue, InputArray
from ...nn.functional import cross_entropy, mse_loss
from ._registry import register_all

# ---------------------------------------------------------------- options

_NO_CACHE = "HAX runs the whole sequence at once, without a KV cache"
_WHY = {
    "cache": _NO_CACHE,
    "past_key_values": _NO_CACHE,
    "use_cache": _NO_CACHE,
    "cache_position": _NO_CACHE,
    "output_attentions": "the attention weights are not returned",
    "output_hidden_states": "the per-layer hidden states are not returned; capture them "
    "with hax.surgery.intermediates",
    "return_dict": "the output is always a dict",
}


def reject_options(who: str, options: Mapping[str, Any]) -> None:
    """Raise `ValueError` naming the first forward option (`output_attentions=True`,
    `head_mask`, a cache, ...) set to something HAX does not run; leaving it out,
    `None`, `False` (torch's defaults) and `return_dict=True` pass."""
    for name, value in options.items():
        passes = (None, True) if name == "return_dict" else (None, False)
        if any(value is default for default in passes):
            continue
        why = _WHY.get(name, "it is not implemented")
        raise ValueError(
            f"{who}: {name} is not supported ({why}): HAX does not support "
            f"{name}={value!r}; leave it unset"
        )


def check_model_inputs(
    who: str, options: Mapping[str, Any], input_ids: Any, inputs_embeds: Any
) -> None:
    """What a base model checks first: the options it does not run, and that exactly
    one of `input_ids` and `inputs_embeds` is given."""
    reject_options(who, options)
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError(f"{who}: pass exactly one of input_ids or inputs_embeds")


# ---------------------------------------------------------------- outputs and losses


def model_output(**fields: Any) -> dict[str, Any]:
    """A `ModelOutput` as a dict of its array fields (those that are not None)."""
    return {name: value for name, value in fields.items() if value is not None}


def token_loss(logits: jax.Array, labels: Any) -> jax.Array:
    """Cross entropy of each position's logits against its label, ignoring -100."""
    flat = logits.reshape(-1, logits.shape[-1])
    return cross_entropy(flat, jnp.asarray(labels).reshape(-1), ignore_index=-100)


def causal_lm_loss(logits: jax.Array, labels: Any) -> jax.Array:
    """Transformers' `ForCausalLMLoss`: token `t` predicts label `t + 1`; labels -100
    are ignored; the mean over the others, in float32."""
    labels = jnp.pad(jnp.asarray(labels), ((0, 0), (0, 1)), constant_values=-100)[:, 1:]
    return token_loss(logits.astype(jnp.float32), labels)


def classification_loss(
    logits: jax.Array, labels: jax.Array, problem_type: str | None, num_labels: int
) -> jax.Array:
    """Hugging Face's sequence/image classification loss: mean squared error for one
    label, cross entropy for integer labels (ignoring -100), else binary cross entropy
    with logits; `config.problem_type` picks one when set."""
    if problem_type is None:
        if num_labels == 1:
            problem_type = "regression"
        elif num_labels > 1 and jnp.issubdtype(labels.dtype, jnp.integer):
            problem_type = "single_label_classification"
        else:
            problem_type = "multi_label_classification"
    if problem_type == "regression":
        if num_labels == 1:
            return mse_loss(jnp.squeeze(logits), jnp.squeeze(labels))
        return mse_loss(logits, labels)
    if problem_type == "single_label_classification":
        return token_loss(logits, labels)
    if problem_type == "multi_label_classification":
        y = labels.astype(logits.dtype)
        return jnp.mean(jnp.maximum(logits, 0) - logits * y + jnp.log1p(jnp.exp(-jnp.abs(logits))))
    raise ValueError(f"config.problem_type={problem_type!r} is not a known problem type")


def classifier_output(
    org: StateOrganizer, logits: jax.Array, labels: jax.Array | None
) -> dict[str, jax.Array]:
    """A `...ForSequenceClassification`/`...ForImageClassification` output: `{"logits"}`,
    and `"loss"` with `labels` (`aux["problem_type"]`, the node's `num_labels`)."""
    loss = None
    if labels is not None:
        loss = classification_loss(logits, labels, org.problem_type, org.num_labels)
    return model_output(loss=loss, logits=logits)


# ---------------------------------------------------------------- aux readers


def config_values(*names: str) -> Callable[[Any], Mapping[str, AuxValue]]:
    """An aux reader for values a Hugging Face module's forward reads from
    `self.config` (Olmo's attention reads `config.clip_qkv`)."""

    def read(module: Any) -> Mapping[str, AuxValue]:
        return {name: getattr(module.config, name) for name in names}

    return read


def config_reader(*names: str) -> Callable[[Any], Mapping[str, AuxValue]]:
    """An aux reader for values a Hugging Face model's forward reads from `self.config`
    (and the model's `base_model_prefix`, the name of its base-model child)."""
    values = config_values(*names)

    def read(module: Any) -> Mapping[str, AuxValue]:
        return {"base_model_prefix": module.base_model_prefix, **values(module)}

    return read


def constant_aux(**values: AuxValue) -> Callable[[Any], Mapping[str, AuxValue]]:
    """An aux reader that gives every module of a family's class the same `values`: the
    knobs by which that family's forward differs from the apply's default (e.g.
    `constant_aux(qk_norm="head")` for Qwen3's attention)."""
    return lambda module: dict(values)


def register_family(
    applies: Mapping[str, ApplyFn],
    *families: str,
    rng: Collection[str] = (),
    aux: Mapping[str, Callable[[Any], Mapping[str, AuxValue]]] | None = None,
) -> None:
    """Register `applies` (by class-name suffix, e.g. `"SelfAttention"`) for each
    family `"module.Prefix"` whose classes copy one model's: the classes
    `transformers.models.{module}.{Prefix}{suffix}` (Hugging Face generates them)."""
    for family in families:
        register_all(f"transformers.models.{family}", applies, rng=rng, aux=aux)


def base_model(org: StateOrganizer) -> Any:
    """The base-model child of a head (`bert`, `vit`, ...: `aux["base_model_prefix"]`)."""
    return getattr(org, org.base_model_prefix)


# ---------------------------------------------------------------- layers and heads


def run_layers(layers: Any, hidden_states: jax.Array, attention_mask: Any) -> jax.Array:
    """Each layer of `layers` on the hidden states in turn, with the attention mask."""
    for layer in layers:
        hidden_states = layer(hidden_states, attention_mask)
    return hidden_states


@organized_apply
def encoder_apply(
    org: StateOrganizer, hidden_states: InputArray, attention_mask: InputArray | None = None
) -> jax.Array:
    """`BertEncoder`, DistilBERT's `Transformer`: the layers of `layer` in order."""
    hidden_states = jnp.asarray(hidden_states)
    attention_mask = None if attention_mask is None else jnp.asarray(attention_mask)
    return run_layers(org.layer, hidden_states, attention_mask)


@organized_apply
def gated_mlp_apply(org: StateOrganizer, x: InputArray) -> jax.Array:
    """`LlamaMLP`, `Dinov2SwiGLUFFN`: `down_proj(act_fn(gate_proj(x)) * up_proj(x))`."""
    out: jax.Array = org.down_proj(org.act_fn(org.gate_proj(x)) * org.up_proj(x))
    return out


@organized_apply
def ungated_mlp_apply(org: StateOrganizer, x: jax.Array) -> jax.Array:
    """`ArceeMLP`: `down_proj(act_fn(up_proj(x)))`, no gate."""
    out: jax.Array = org.down_proj(org.act_fn(org.up_proj(x)))
    return out


@organized_apply
def fused_gated_mlp_apply(org: StateOrganizer, x: jax.Array) -> jax.Array:
    """`Phi3MLP`, `GlmMLP`: the gated MLP with the gate and up projections fused,
    `down_proj(up * activation_fn(gate))` for `gate, up = gate_up_proj(x).chunk(2)`."""
    gate, up = jnp.split(org.gate_up_proj(x), 2, axis=-1)
    out: jax.Array = org.down_proj(up * org.activation_fn(gate))
    return out


@organized_apply
def pooler_apply(org: StateOrganizer, hidden_states: InputArray) -> jax.Array:
    """`BertPooler`, `ViTPooler`: dense and activation of the first token."""
    out: jax.Array = org.activation(org.dense(hidden_states[:, 0]))
    return out


def keep_logits(hidden_states: jax.Array, logits_to_keep: Any) -> jax.Array:
    """`slice_logits_to_keep`: the last `logits_to_keep` positions of `(batch, seq,
    hidden)` for an int (0 keeps all), or the positions an integer array names (1-D:
    the same for every row; 2-D: per row)."""
    if isinstance(logits_to_keep, int):
        return hidden_states[:, -logits_to_keep:, :] if logits_to_keep else hidden_states
    positions = jnp.asarray(logits_to_keep)
    if not jnp.issubdtype(positions.dtype, jnp.integer) or positions.ndim not in (1, 2):
        raise ValueError(
            "logits_to_keep must be an int or an integer array of positions (1-D or "
            f"(batch, n)), found {positions.dtype} of shape {positions.shape}; a boolean "
            "mask gives a shape that depends on its values, which HAX does not support"
        )
    if positions.ndim == 1:
        return hidden_states[:, positions, :]
    return jnp.take_along_axis(hidden_states, positions[..., None], axis=1)


@organized_apply
def causal_lm_apply(
    org: StateOrganizer,
    /,
    input_ids: Any = None,
    *,
    labels: Any = None,
    logits_to_keep: Any = 0,
    **kwargs: Any,
) -> dict[str, jax.Array]:
    """`...ForCausalLM`/`...LMHeadModel`: the base model, then `lm_head`;
    `{"logits": ...}`, and `"loss"` with `labels`. Other arguments go to the base model.
    Logits are divided by `aux["logits_scaling"]` when the node has it (Granite's
    `config.logits_scaling`) and multiplied by `aux["logit_scale"]` (Cohere's)."""
    hidden_states = base_model(org)(input_ids, **kwargs)["last_hidden_state"]
    logits = org.lm_head(keep_logits(hidden_states, logits_to_keep))
    if getattr(org, "logits_scaling", None) is not None:
        logits = logits / org.logits_scaling
    if getattr(org, "logit_scale", None) is not None:
        logits = logits * org.logit_scale
    if labels is None:
        return {"logits": logits}
    return {"loss": causal_lm_loss(logits, labels), "logits": logits}
