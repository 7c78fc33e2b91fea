"""What the transformer families share: attention heads and weights, dropout and
drop-path drawn from a node's own key, and Hugging Face's masks, losses, options and
registration of one set of applies for every family that copies another's classes."""

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer
from ..._types import ApplyFn, AuxValue
from ...nn._dropout import read_train_mode
from ...nn.functional import cross_entropy, mse_loss
from .._library import register_apply


def split_heads(x: jax.Array, head_dim: int) -> jax.Array:
    """`(B, L, H * D)` -> `(B, H, L, D)`, as `x.view(B, L, -1, D).transpose(1, 2)`."""
    return x.reshape(*x.shape[:-1], -1, head_dim).swapaxes(-3, -2)


def merge_heads(x: jax.Array) -> jax.Array:
    """`(B, H, L, D)` -> `(B, L, H * D)`, as `x.transpose(1, 2).reshape(B, L, -1)`."""
    x = x.swapaxes(-3, -2)
    return x.reshape(*x.shape[:-2], -1)


def attention_weights(
    query: jax.Array, key: jax.Array, scaling: float, bias: jax.Array | None = None
) -> jax.Array:
    """`softmax(query @ key^T * scaling + bias)` over the keys, the softmax computed in
    float32 and returned in the query's dtype."""
    scores = (query @ key.swapaxes(-1, -2)) * scaling
    if bias is not None:
        scores = scores + bias
    return jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(query.dtype)


def _next_key(org: StateOrganizer) -> jax.Array:
    """Half of the node's `rng` buffer, storing the other half back (so it advances)."""
    keys: jax.Array = jax.random.split(org.rng)
    org.rng = keys[0]
    return keys[1]


def dropout(org: StateOrganizer, x: jax.Array, p: float, who: str) -> jax.Array:
    """`F.dropout(x, p, training)` with the node's own key (`register_apply(..., rng=True)`)."""
    if p == 0.0 or not read_train_mode(org.global_config, who):
        return x
    if p == 1.0:
        return jnp.zeros_like(x)
    keep = jax.random.bernoulli(_next_key(org), 1.0 - p, x.shape)
    return jnp.where(keep, x / (1.0 - p), jnp.zeros((), x.dtype))


def drop_path(
    org: StateOrganizer, x: jax.Array, p: float, scale_by_keep: bool, who: str
) -> jax.Array:
    """Stochastic depth: zero each sample's whole residual branch with probability `p`,
    scaling the kept ones by `1 / (1 - p)` with `scale_by_keep` (timm's `drop_path`)."""
    if p == 0.0 or not read_train_mode(org.global_config, who):
        return x
    keep_prob = 1.0 - p
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = jax.random.bernoulli(_next_key(org), keep_prob, shape).astype(x.dtype)
    if keep_prob > 0.0 and scale_by_keep:
        mask = mask / keep_prob
    return x * mask


# ---------------------------------------------------------------- Hugging Face

_DEFAULTS: dict[str, tuple[Any, ...]] = {"return_dict": (None, True), "use_cache": (None, False)}


def reject_options(who: str, options: Mapping[str, Any]) -> None:
    """Raise for every forward option HAX does not run (`output_attentions=True`,
    `head_mask`, a cache, ...); leaving one out or passing its default is accepted."""
    rejected = [
        f"{name}={value!r}"
        for name, value in options.items()
        if not any(value is ok for ok in _DEFAULTS.get(name, (None, False)))
    ]
    if rejected:
        raise ValueError(
            f"{who}: HAX does not support {', '.join(rejected)}; leave "
            f"{'it' if len(rejected) == 1 else 'them'} out"
        )


def attention_bias(
    attention_mask: jax.Array | None, position_ids: jax.Array | None, dtype: Any
) -> jax.Array | None:
    """The additive mask `(B, 1, L, S)` Hugging Face's eager attention adds (0 where a key
    is seen, the dtype's minimum where not), as its `create_bidirectional_mask`: from a
    2D padding mask of 1s and 0s; a 4D mask as given; with neither but `position_ids`,
    sequences packed in one row (positions restart) do not see each other."""
    lowest = float(jnp.finfo(dtype).min)  # type: ignore[no-untyped-call]  # untyped in jax
    if attention_mask is not None and attention_mask.ndim == 4:
        if attention_mask.dtype == jnp.bool_:
            return jnp.where(attention_mask, 0.0, lowest).astype(dtype)
        return attention_mask.astype(dtype)
    if attention_mask is not None:
        if attention_mask.ndim != 2:
            raise ValueError(
                f"attention_mask: expected a 2D (batch, seq) padding mask or a 4D mask, "
                f"found shape {tuple(attention_mask.shape)}"
            )
        seen = attention_mask.astype(bool)[:, None, None, :]
    elif position_ids is not None:
        step = jnp.diff(position_ids, axis=-1, prepend=position_ids[..., :1] - 1)
        segment = jnp.cumsum(step != 1, axis=-1)
        seen = (segment[..., :, None] == segment[..., None, :])[..., None, :, :]
    else:
        return None
    return jnp.where(seen, 0.0, lowest).astype(dtype)


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
        return cross_entropy(logits.reshape(-1, num_labels), labels.reshape(-1))
    if problem_type == "multi_label_classification":
        y = labels.astype(logits.dtype)
        return jnp.mean(jnp.maximum(logits, 0) - logits * y + jnp.log1p(jnp.exp(-jnp.abs(logits))))
    raise ValueError(f"config.problem_type={problem_type!r} is not a known problem type")


def model_output(**fields: Any) -> dict[str, Any]:
    """A `ModelOutput` as a dict of its array fields (those that are not None)."""
    return {name: value for name, value in fields.items() if value is not None}


def config_reader(*names: str) -> Callable[[Any], Mapping[str, AuxValue]]:
    """An aux reader for values a Hugging Face forward reads from `self.config` (and
    the model's `base_model_prefix`, the name of its base-model child)."""

    def read(module: Any) -> Mapping[str, AuxValue]:
        aux: dict[str, AuxValue] = {"base_model_prefix": module.base_model_prefix}
        aux.update({name: getattr(module.config, name) for name in names})
        return aux

    return read


def register_family(
    module: str,
    prefix: str,
    applies: Mapping[str, ApplyFn],
    *,
    rng: frozenset[str] = frozenset(),
    aux: Mapping[str, Callable[[Any], Mapping[str, AuxValue]]] | None = None,
) -> None:
    """Register `applies` (by class-name suffix, e.g. `"SelfAttention"`) for the classes
    `module.prefix + suffix` of one Hugging Face family; suffixes in `rng` get a key."""
    for suffix, apply in applies.items():
        reader = (aux or {}).get(suffix)
        register_apply(f"{module}.{prefix}{suffix}", apply, rng=suffix in rng, aux=reader)
