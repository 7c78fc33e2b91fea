"""Eager multi-head attention as the libraries write it out: heads split from and
merged into the feature axis, and `softmax(q k^T * scaling + masks) v` with the
additive masks, upcast and dropout each family's torch code uses."""

from collections.abc import Callable

import jax
import jax.numpy as jnp


def split_heads(x: jax.Array, head_dim: int) -> jax.Array:
    """`(B, L, H * D)` -> `(B, H, L, D)`, as `x.view(B, L, -1, D).transpose(1, 2)`."""
    return x.reshape(*x.shape[:-1], -1, head_dim).swapaxes(-3, -2)


def merge_heads(x: jax.Array) -> jax.Array:
    """`(B, H, L, D)` -> `(B, L, H * D)`, as `x.transpose(1, 2).reshape(B, L, -1)`."""
    x = x.swapaxes(-3, -2)
    return x.reshape(*x.shape[:-2], -1)


def attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    scaling: float,
    *masks: jax.Array | None,
    upcast: bool = True,
    dropout: Callable[[jax.Array], jax.Array] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """`(softmax(q k^T * scaling + masks...) v, weights)` on `(B, H, L, D)` heads, the
    output merged to `(B, L, H * D)`. The masks (None skipped) are added in order;
    `upcast` takes the softmax in float32; the weights, in `value`'s dtype, go through
    `dropout` (a dropout child, or a draw from the node's key) before `v`."""
    scores = query @ key.swapaxes(-1, -2) * scaling
    for mask in masks:
        if mask is not None:
            scores = scores + mask
    if upcast:
        scores = scores.astype(jnp.float32)
    weights = jax.nn.softmax(scores, axis=-1).astype(value.dtype)
    if dropout is not None:
        weights = dropout(weights)
    return merge_heads(weights @ value), weights


def self_attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    head_dim: int,
    scaling: float,
    mask: jax.Array | None,
    dropout: Callable[[jax.Array], jax.Array],
) -> tuple[jax.Array, jax.Array]:
    """`attention` of projected `(B, L, H * D)` queries, keys and values, split into
    heads of `head_dim` (the encoders' eager self-attention, upcast softmax)."""
    q, k, v = (split_heads(t, head_dim) for t in (query, key, value))
    return attention(q, k, v, scaling, mask, dropout=dropout)
