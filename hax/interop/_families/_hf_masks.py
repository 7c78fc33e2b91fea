"""The additive attention masks Hugging Face's `masking_utils` builds for eager
attention (0 where a key is seen, the dtype's lowest value where not), and when a
decoder looks for packed sequences in `position_ids`."""

from typing import Any

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer
from ..._types import AuxValue, InputArray
from ._hf_common import reject_options


def _additive(allowed: jax.Array, dtype: Any) -> jax.Array:
    """0 where `allowed`, the dtype's lowest value elsewhere."""
    lowest = jnp.finfo(dtype).min  # type: ignore[no-untyped-call]  # untyped in jax
    return jnp.where(allowed, jnp.zeros((), dtype), jnp.asarray(lowest, dtype))


def _padding(attention_mask: jax.Array) -> jax.Array:
    """`(batch, 1, S)` bool from a `(batch, S)` mask of 1s (tokens) and 0s (padding)."""
    if attention_mask.ndim != 2:
        raise ValueError(
            "attention_mask must be (batch, sequence) with 1 for tokens and 0 for padding, "
            f"found shape {tuple(attention_mask.shape)}"
        )
    return attention_mask.astype(bool)[:, None, :]


def _same_sequence(position_ids: jax.Array) -> jax.Array:
    """`(..., L, L)` bool: whether two positions are in one packed sequence, a new one
    starting wherever the positions do not step by +1."""
    starts = jnp.diff(position_ids, axis=-1, prepend=position_ids[..., :1] - 1) != 1
    sequence = jnp.cumsum(starts, axis=-1)
    return sequence[..., :, None] == sequence[..., None, :]


def bidirectional_mask(attention_mask: Any, dtype: Any, position_ids: Any = None) -> Any:
    """`create_bidirectional_mask`: `(B, 1, 1, S)` from a 2D padding mask, a 4D mask as
    given (bool: True is seen); with neither but `position_ids`, `(B, 1, L, L)` in
    which packed sequences do not see each other; else None."""
    if attention_mask is not None:
        mask = jnp.asarray(attention_mask)
        if mask.ndim == 4:
            return _additive(mask, dtype) if mask.dtype == jnp.bool_ else mask.astype(dtype)
        return _additive(_padding(mask), dtype)[:, None]
    if position_ids is not None:
        return _additive(_same_sequence(jnp.asarray(position_ids)), dtype)[..., None, :, :]
    return None


def causal_mask(
    inputs_embeds: InputArray,
    attention_mask: Any,
    position_ids: Any = None,
    sliding_window: int | None = None,
) -> jax.Array:
    """`create_causal_mask` (or `create_sliding_window_causal_mask`): `(B, 1, L, L)`.

    Query `i` sees key `j <= i` (and `j > i - sliding_window`) that the 2D
    `attention_mask` marks with 1. Without `attention_mask`, `position_ids` that restart
    mark packed sequences, which do not see each other."""
    batch, length = inputs_embeds.shape[:2]
    q = jnp.arange(length)[:, None]
    kv = jnp.arange(length)[None, :]
    allowed = kv <= q
    if sliding_window is not None:
        allowed = allowed & (kv > q - sliding_window)
    allowed = jnp.broadcast_to(allowed, (batch, length, length))
    if attention_mask is not None:
        allowed = allowed & _padding(jnp.asarray(attention_mask))
    elif position_ids is not None:
        positions = jnp.broadcast_to(jnp.asarray(position_ids), (batch, length))
        allowed = allowed & _same_sequence(positions)
    return _additive(allowed, inputs_embeds.dtype)[:, None]


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
    """`config.use_cache`, the default of a decoder's `use_cache` argument. A decoder
    whose config sets `is_causal = False` (transformers then builds bidirectional masks)
    is refused: HAX's decoders build causal masks only."""
    if not getattr(module.config, "is_causal", True):
        raise ValueError(
            "config.is_causal is False (bidirectional attention in a decoder), which HAX's "
            "decoder applies do not run; convert a model whose config keeps is_causal=True"
        )
    return {"use_cache": bool(getattr(module.config, "use_cache", False))}
