"""Swin's shifted-window self-attention, as the libraries compute it: pad the
`(B, H, W, C)` map to whole windows, roll it by the shift, attend within each window
with a relative position bias (and a mask that keeps the rolled-in regions apart),
roll back and crop. The bias and the projections come from the caller, so torchvision's
and Hugging Face's modules (V1 and V2) share it."""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Dropout = Callable[[jax.Array], jax.Array]


def relative_position_bias(
    table: jax.Array, index: jax.Array, window_size: Sequence[int]
) -> jax.Array:
    """`table[index]` as `(1, heads, N, N)` for the `N` positions of a window."""
    n = window_size[0] * window_size[1]
    bias = table[index.reshape(-1)].reshape(n, n, -1)
    return jnp.transpose(bias, (2, 0, 1))[None]


def shift_mask(
    height: int, width: int, window_size: Sequence[int], shift_size: Sequence[int]
) -> np.ndarray:
    """`(windows, N, N)`: 0 between positions of the same region of the rolled map, -100
    between different ones (Swin's `attn_mask`), from the shapes alone."""
    regions = np.zeros((height, width), np.float32)
    slices = [
        ((0, -size), (-size, -shift), (-shift, None))
        for size, shift in zip(window_size, shift_size, strict=True)
    ]
    count = 0
    for h0, h1 in slices[0]:
        for w0, w1 in slices[1]:
            regions[h0:h1, w0:w1] = count
            count += 1
    windows = _windows(regions[None, :, :, None], window_size)[..., 0]
    diff = windows[:, None, :] - windows[:, :, None]
    return np.where(diff != 0, np.float32(-100.0), np.float32(0.0))


def _windows(x: Any, window_size: Sequence[int]) -> Any:
    """`(B, H, W, C)` -> `(B * windows, N, C)`, windows in row-major order (numpy or
    jax arrays alike)."""
    b, h, w, c = x.shape
    wh, ww = window_size
    x = x.reshape(b, h // wh, wh, w // ww, ww, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b * (h // wh) * (w // ww), wh * ww, c)


def _unwindow(x: jax.Array, b: int, h: int, w: int, window_size: Sequence[int]) -> jax.Array:
    """The inverse of `_windows`."""
    wh, ww = window_size
    x = x.reshape(b, h // wh, w // ww, wh, ww, -1).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, -1)


def to_windows(
    x: jax.Array, window_size: Sequence[int], shift_size: Sequence[int]
) -> tuple[jax.Array, list[int]]:
    """`(B, H, W, C)` padded to whole windows and rolled back by the shift, as `(B *
    windows, N, C)`, and the shift used: none along an axis whose padded size fits one
    window."""
    h, w = x.shape[1:3]
    pad_b = (window_size[0] - h % window_size[0]) % window_size[0]
    pad_r = (window_size[1] - w % window_size[1]) % window_size[1]
    x = jnp.pad(x, ((0, 0), (0, pad_b), (0, pad_r), (0, 0)))
    shift = [
        0 if size >= padded else s
        for size, padded, s in zip(window_size, x.shape[1:3], shift_size, strict=True)
    ]
    if sum(shift) > 0:
        x = jnp.roll(x, (-shift[0], -shift[1]), axis=(1, 2))
    windows: jax.Array = _windows(x, window_size)
    return windows, shift


def from_windows(
    windows: jax.Array, height: int, width: int, window_size: Sequence[int], shift: Sequence[int]
) -> jax.Array:
    """The inverse of `to_windows` for a `height x width` map: unwindow, roll forward
    by `shift`, crop the padding."""
    pad_h = height + (window_size[0] - height % window_size[0]) % window_size[0]
    pad_w = width + (window_size[1] - width % window_size[1]) % window_size[1]
    n_win = (pad_h // window_size[0]) * (pad_w // window_size[1])
    x = _unwindow(windows, windows.shape[0] // n_win, pad_h, pad_w, window_size)
    if sum(shift) > 0:
        x = jnp.roll(x, (shift[0], shift[1]), axis=(1, 2))
    return x[:, :height, :width, :]


def windows_mask(
    height: int, width: int, window_size: Sequence[int], shift: Sequence[int]
) -> np.ndarray | None:
    """`shift_mask` of the padded `height x width` map, or None without a shift."""
    if sum(shift) == 0:
        return None
    pad_h = height + (window_size[0] - height % window_size[0]) % window_size[0]
    pad_w = width + (window_size[1] - width % window_size[1]) % window_size[1]
    return shift_mask(pad_h, pad_w, window_size, shift)


def window_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    bias: jax.Array,
    mask: np.ndarray | None,
    *,
    logit_scale: jax.Array | None = None,
    attention_dropout: Dropout = lambda a: a,
) -> jax.Array:
    """Attention within each window: `q, k, v` are `(B * windows, heads, N, head_dim)`,
    `bias` `(1, heads, N, N)`, `mask` `(windows, N, N)`; returns `(B * windows, N, C)`.
    With `logit_scale` (Swin V2), cosine similarities scaled by `exp(min(logit_scale,
    log 100))`; else scaled dot products."""
    if logit_scale is not None:
        q = q / jnp.maximum(jnp.linalg.norm(q, axis=-1, keepdims=True), 1e-12)
        k = k / jnp.maximum(jnp.linalg.norm(k, axis=-1, keepdims=True), 1e-12)
        attn = q @ jnp.swapaxes(k, -2, -1)
        attn = attn * jnp.exp(jnp.minimum(logit_scale, np.log(100.0)))
    else:
        attn = (q * q.shape[-1] ** -0.5) @ jnp.swapaxes(k, -2, -1)
    attn = attn + bias
    if mask is not None:
        n_win, n = mask.shape[0], mask.shape[1]
        heads = attn.shape[1]
        attn = attn.reshape(-1, n_win, heads, n, n) + mask[None, :, None].astype(attn.dtype)
        attn = attn.reshape(-1, heads, n, n)
    attn = attention_dropout(jax.nn.softmax(attn, axis=-1))
    out = jnp.swapaxes(attn @ v, 1, 2)
    return out.reshape(*out.shape[:2], -1)


def split_heads(qkv: jax.Array, num_heads: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`(B', N, 3 C)` (queries, keys, values concatenated) -> three `(B', heads, N,
    head_dim)`."""
    b, n, c3 = qkv.shape
    parts = qkv.reshape(b, n, 3, num_heads, c3 // (3 * num_heads)).transpose(2, 0, 3, 1, 4)
    return parts[0], parts[1], parts[2]


def shifted_window_attention(
    x: jax.Array,
    qkv: Callable[[jax.Array], jax.Array],
    proj: Callable[[jax.Array], jax.Array],
    bias: jax.Array,
    window_size: Sequence[int],
    num_heads: int,
    shift_size: Sequence[int],
    *,
    logit_scale: jax.Array | None = None,
    attention_dropout: Dropout = lambda a: a,
    dropout: Dropout = lambda a: a,
) -> jax.Array:
    """torchvision's `shifted_window_attention` on `(B, H, W, C)`: `qkv` maps windows
    to queries, keys and values (concatenated), `proj` back; `bias` is `(1, heads, N,
    N)`."""
    h, w = x.shape[1:3]
    windows, shift = to_windows(x, window_size, shift_size)
    q, k, v = split_heads(qkv(windows), num_heads)
    mask = windows_mask(h, w, window_size, shift)
    out = window_attention(
        q, k, v, bias, mask, logit_scale=logit_scale, attention_dropout=attention_dropout
    )
    return from_windows(dropout(proj(out)), h, w, window_size, shift)


def patch_merging_pad(x: jax.Array) -> jax.Array:
    """`_patch_merging_pad`: pad `(..., H, W, C)` to even sizes and gather each 2x2 patch
    into the channels, in the order (0, 0), (1, 0), (0, 1), (1, 1)."""
    h, w = x.shape[-3:-1]
    pads = [(0, 0)] * (x.ndim - 3) + [(0, h % 2), (0, w % 2), (0, 0)]
    x = jnp.pad(x, pads)
    parts = [x[..., i::2, j::2, :] for i, j in ((0, 0), (1, 0), (0, 1), (1, 1))]
    return jnp.concatenate(parts, axis=-1)
