"""What Hugging Face decoders and encoder-decoders share: the additive attention masks
`transformers.masking_utils` builds for eager attention, eager attention itself,
dropout drawn from a node's own key, the causal-LM head and loss, and the check that
rejects the forward options HAX does not run (KV caches, returned attention weights)."""

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ..._types import AuxValue
from ...nn._dropout import read_train_mode
from ...nn.functional import cross_entropy, dropout

_UNSUPPORTED = {
    "cache": "HAX runs the whole sequence at once, without a KV cache",
    "past_key_values": "HAX runs the whole sequence at once, without a KV cache",
    "use_cache": "HAX runs the whole sequence at once, without a KV cache",
    "cache_position": "HAX runs the whole sequence at once, without a KV cache",
    "output_attentions": "the attention weights are not returned",
    "output_hidden_states": "the per-layer hidden states are not returned; capture them "
    "with hax.surgery.intermediates",
    "return_dict": "the output is always a dict",
}


def reject_options(who: str, options: Mapping[str, Any]) -> None:
    """Raise `ValueError` naming the first forward option that is set to something HAX
    does not run; `None` and `False` (torch's defaults) pass, and `return_dict=True`."""
    for name, value in options.items():
        if value is None or value is False or (name == "return_dict" and value is True):
            continue
        why = _UNSUPPORTED.get(name, "HAX does not implement this option")
        raise ValueError(f"{who}: {name} is not supported ({why}); leave it unset")


def _allowed(
    attention_mask: Any, batch: int, q_len: int, kv_len: int, causal: bool, window: int | None
) -> jax.Array:
    """`(batch, q_len, kv_len)` bool: which keys each query attends to."""
    q = jnp.arange(q_len)[:, None]
    kv = jnp.arange(kv_len)[None, :]
    allowed = kv <= q if causal else jnp.ones((q_len, kv_len), bool)
    if window is not None:
        allowed = allowed & (kv > q - window)
    allowed = jnp.broadcast_to(allowed, (batch, q_len, kv_len))
    if attention_mask is not None:
        if attention_mask.ndim != 2:
            raise ValueError(
                f"attention_mask must be (batch, sequence) with 1 for tokens and 0 for "
                f"padding, found shape {attention_mask.shape}"
            )
        allowed = allowed & jnp.asarray(attention_mask).astype(bool)[:, None, :]
    return allowed


def _additive(allowed: jax.Array, dtype: Any) -> jax.Array:
    """0 where attended, the dtype's lowest value elsewhere, with a head axis: what
    eager attention adds to its logits."""
    lowest = jnp.finfo(dtype).min  # type: ignore[no-untyped-call]  # untyped in jax
    return jnp.where(allowed, jnp.zeros((), dtype), jnp.asarray(lowest, dtype))[:, None]


def causal_mask(
    inputs_embeds: jax.Array,
    attention_mask: Any,
    position_ids: Any = None,
    sliding_window: int | None = None,
) -> jax.Array:
    """`create_causal_mask` (or `create_sliding_window_causal_mask`): `(batch, 1, L, L)`.

    Query `i` sees key `j <= i` (and `j > i - sliding_window`) that the 2-D
    `attention_mask` marks with 1. Without `attention_mask`, `position_ids` that restart
    (a step other than +1) mark packed sequences, which do not see each other."""
    batch, length = inputs_embeds.shape[:2]
    allowed = _allowed(attention_mask, batch, length, length, True, sliding_window)
    if attention_mask is None and position_ids is not None:
        positions = jnp.broadcast_to(jnp.asarray(position_ids), (batch, length))
        starts = jnp.diff(positions, axis=-1, prepend=positions[:, :1] - 1) != 1
        sequence = jnp.cumsum(starts, axis=-1)
        allowed = allowed & (sequence[:, :, None] == sequence[:, None, :])
    return _additive(allowed, inputs_embeds.dtype)


def packing_positions(
    org: StateOrganizer, who: str, use_cache: bool | None, position_ids: Any
) -> Any:
    """The `position_ids` in which `create_causal_mask` looks for packed sequences: only
    when the model runs without a cache, i.e. `use_cache=False`, or `use_cache=None` and
    a false `config.use_cache` (`aux["use_cache"]`); else None. HAX keeps no cache, so
    an explicit `use_cache=True` is an error."""
    if use_cache:
        reject_options(who, {"use_cache": use_cache})
    cache_free = use_cache is False or (use_cache is None and not org.use_cache)
    return position_ids if cache_free else None


def use_cache_default(module: Any) -> dict[str, AuxValue]:
    """`config.use_cache`, the default of a decoder's `use_cache` argument."""
    return {"use_cache": bool(getattr(module.config, "use_cache", False))}


def padding_mask(inputs_embeds: jax.Array, attention_mask: Any) -> jax.Array | None:
    """`create_bidirectional_mask`: `(batch, 1, 1, S)` hiding the keys `attention_mask`
    marks with 0, or None without a mask."""
    if attention_mask is None:
        return None
    mask = jnp.asarray(attention_mask)
    allowed = _allowed(mask, mask.shape[0], 1, mask.shape[1], False, None)
    return _additive(allowed, inputs_embeds.dtype)


def split_heads(x: jax.Array, head_dim: int) -> jax.Array:
    """`(batch, seq, heads * head_dim)` -> `(batch, heads, seq, head_dim)`."""
    return jnp.swapaxes(x.reshape(*x.shape[:-1], -1, head_dim), 1, 2)


def eager_attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    mask: jax.Array | None,
    scaling: float,
    *,
    bias: jax.Array | None = None,
    upcast: bool = False,
    dropout: Any = None,
) -> jax.Array:
    """Transformers' `eager_attention_forward` on `(batch, heads, seq, head_dim)`:
    `softmax(q k^T * scaling + bias + mask) v`, returned as `(batch, seq, heads,
    head_dim)`. `upcast` takes the softmax in float32; `dropout(weights)` drops the
    weights in train mode."""
    weights = query @ jnp.swapaxes(key, -1, -2) * scaling
    if bias is not None:
        weights = weights + bias
    if mask is not None:
        weights = weights + mask
    if upcast:
        weights = weights.astype(jnp.float32)
    weights = jax.nn.softmax(weights, axis=-1).astype(value.dtype)
    if dropout is not None:
        weights = dropout(weights)
    return jnp.swapaxes(weights @ value, 1, 2)


def functional_dropout(org: StateOrganizer, x: jax.Array, p: float, who: str) -> jax.Array:
    """`nn.functional.dropout(x, p, training)` for a node registered with `rng=True`:
    in train mode, drop with the node's key `org.rng` and store the advanced key."""
    if p == 0.0 or not read_train_mode(org.global_config, who):
        return x
    key, sub = jax.random.split(org.rng)
    org.rng = key
    return dropout(x, p, rng=sub)


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


def causal_lm_loss(logits: jax.Array, labels: Any) -> jax.Array:
    """Transformers' `ForCausalLMLoss`: token `t` predicts label `t + 1`; labels -100
    are ignored; the mean over the others, in float32."""
    labels = jnp.pad(jnp.asarray(labels), ((0, 0), (0, 1)), constant_values=-100)[:, 1:]
    return lm_loss(logits, labels)


def lm_loss(logits: jax.Array, labels: Any) -> jax.Array:
    """Cross entropy of each position's logits against its label, ignoring -100."""
    flat = logits.astype(jnp.float32).reshape(-1, logits.shape[-1])
    return cross_entropy(flat, jnp.asarray(labels).reshape(-1), ignore_index=-100)


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
    """`...ForCausalLM`/`...LMHeadModel`: the base model (the child named by
    `aux["base_model_prefix"]`), then `lm_head`; `{"logits": ...}`, and `"loss"` with
    `labels`. Other arguments go to the base model."""
    base_model = getattr(org, org.base_model_prefix)
    hidden_states = base_model(input_ids, **kwargs)["last_hidden_state"]
    logits = org.lm_head(keep_logits(hidden_states, logits_to_keep))
    if labels is None:
        return {"logits": logits}
    return {"loss": causal_lm_loss(logits, labels), "logits": logits}


def base_model_prefix(module: Any) -> dict[str, AuxValue]:
    """The name of the base model's child (`base_model_prefix`, a class attribute)."""
    return {"base_model_prefix": str(module.base_model_prefix)}
