"""Rotary position embeddings (RoPE), in the layout of Hugging Face's Llama.

`rotary_embedding` gives the `cos`/`sin` tables for some positions and
`apply_rotary_embedding` rotates queries or keys with them. Feature `i` of the first
half of a head is paired with feature `i` of the second half (`rotate_half`), not
with its neighbour as in the original paper's interleaved layout, so weights trained
with Hugging Face's Llama, Mistral, Qwen, GPT-NeoX, ... work unchanged.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike


def rotary_embedding(
    positions: ArrayLike,
    dim: int,
    base: float = 10000.0,
    *,
    scaling_factor: float = 1.0,
    dtype: DTypeLike = jnp.float32,
) -> tuple[jax.Array, jax.Array]:
    """The `(cos, sin)` tables of rotary position embeddings, each of shape
    `positions.shape + (dim,)`, as Hugging Face's `LlamaRotaryEmbedding` computes them.

    With `inv_freq[j] = 1 / base ** (2j / dim)` for `j < dim / 2`, the angle of
    position `p` and feature `i` is `p * inv_freq[i mod dim/2]` (both halves of a head
    share the frequencies). Computed in float32, then cast to `dtype`.

    **Arguments:**
    - `positions`: integer (or float) positions of any shape, e.g. `(seq,)` or
      `(batch, seq)`.
    - `dim`: the rotated features per head (even), usually the head size.
    - `base`: the wavelength base (`rope_theta`; 10000 in Llama 2, 500000 in Llama 3).
    - `scaling_factor`: linear position interpolation (Hugging Face's `"linear"`
      `rope_type`): the frequencies are divided by it, stretching the context.
    - `dtype`: the tables' dtype (Hugging Face casts them to the activations' dtype).
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0 or dim % 2:
        raise ValueError(f"rotary_embedding: dim must be a positive even int, found {dim!r}")
    exponents = np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / np.float32(dim)
    # the power correctly rounded to float32 (as torch's float32 pow, up to an ulp)
    powers = (np.float64(base) ** exponents.astype(np.float64)).astype(np.float32)
    inv_freq = np.float32(1.0) / powers / np.float32(scaling_factor)
    angles = jnp.asarray(positions).astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles).astype(dtype), jnp.sin(angles).astype(dtype)


def rotate_half(x: ArrayLike) -> jax.Array:
    """`(x1, x2) -> (-x2, x1)` for the two halves of the last axis (Hugging Face's
    `rotate_half`): a quarter turn of every feature pair `(i, i + d/2)`."""
    x = jnp.asarray(x)
    half = x.shape[-1] // 2
    return jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def apply_rotary_embedding(
    x: ArrayLike, cos: ArrayLike, sin: ArrayLike, *, unsqueeze_dim: int | None = None
) -> jax.Array:
    """`x * cos + rotate_half(x) * sin`: queries or keys rotated by their positions'
    angles, as Hugging Face's `apply_rotary_pos_emb` (call it once for `q`, once for `k`).

    `cos` and `sin` come from `rotary_embedding` and broadcast against `x` (e.g. `x`
    of shape `(batch, heads, seq, head_dim)` with tables of shape `(seq, head_dim)`);
    `unsqueeze_dim` first inserts an axis into the tables, as Hugging Face's argument
    of that name (`1` for `(batch, seq, head_dim)` tables and head-first `x`). Tables
    narrower than `x`'s last axis rotate only its first features and pass the rest
    through (the partial rotary of GPT-NeoX and Phi). The result has `x`'s dtype.
    """
    x, c, s = jnp.asarray(x), jnp.asarray(cos), jnp.asarray(sin)
    if c.shape != s.shape:
        raise ValueError(
            f"apply_rotary_embedding: cos and sin must have one shape, found {c.shape} and "
            f"{s.shape}"
        )
    if unsqueeze_dim is not None:
        c, s = jnp.expand_dims(c, unsqueeze_dim), jnp.expand_dims(s, unsqueeze_dim)
    rotary = c.shape[-1] if c.ndim else 0
    if rotary == 0 or rotary % 2 or rotary > x.shape[-1]:
        raise ValueError(
            f"apply_rotary_embedding: the tables' last axis ({rotary}) must be even, "
            f"positive and at most x's last axis ({x.shape[-1]}); found tables of shape "
            f"{c.shape} for x of shape {x.shape}"
        )
    rotated, passed = x[..., :rotary], x[..., rotary:]
    out = rotated * c.astype(x.dtype) + rotate_half(rotated) * s.astype(x.dtype)
    return jnp.concatenate([out, passed], axis=-1) if passed.shape[-1] else out
