"""Initial values for constructors, drawn with few compiled programs.

Drawing `jax.random.uniform(key, shape)` eagerly compiles one program per distinct
shape (a few tenths of a second each on a CPU), which made building a ResNet-18 take
seconds. JAX's threefry generator is partitionable by default: element `i` of a draw
depends only on the key and `i`, so the first `n` values of a longer flat draw are
the values of any draw of `n` elements. These helpers draw a flat array of one of a
few fixed sizes (one compiled program per size class) and keep its first `n`
values: exactly `jax.random.uniform(key, shape, dtype, low, high)` (and `normal`),
only faster to build. Under a transform (`jax.jit`, `jax.eval_shape`, as in
`hax.sharding.init`) they give the same values, traced.
"""

import functools
import itertools
import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

# Three size classes: the waste of drawing up to 16x too many values is a few ms at
# most, less than compiling one more program. Above the largest class, one compile
# per shape is cheap next to the draw itself.
_CLASSES = (1 << 16, 1 << 20, 1 << 22)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _uniform_flat(key: jax.Array, size: int, dtype: Any, low: Any, high: Any) -> jax.Array:
    return jax.random.uniform(key, (size,), dtype, low, high)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _normal_flat(key: jax.Array, size: int, dtype: Any) -> jax.Array:
    return jax.random.normal(key, (size,), dtype)


def _size_class(n: int) -> int | None:
    """The flat size to draw for `n` values, or None to draw the shape itself."""
    if not jax.config.jax_threefry_partitionable:  # type: ignore[attr-defined]  # a flag jax declares at runtime
        return None
    return next((size for size in _CLASSES if n <= size), None)


def _first(flat: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """The first `prod(shape)` values of `flat`, shaped; outside a trace through NumPy,
    so no program is compiled for the slice."""
    n = math.prod(shape)
    if isinstance(flat, jax.core.Tracer):
        return flat[:n].reshape(shape)
    placed: jax.Array = jax.device_put(np.asarray(flat)[:n].reshape(shape))
    return placed


def uniform(
    key: jax.Array, shape: tuple[int, ...], dtype: Any, low: float, high: float
) -> jax.Array:
    """`jax.random.uniform(key, shape, dtype, low, high)`: the same values."""
    size = _size_class(math.prod(shape))
    if size is None:
        return jax.random.uniform(key, shape, dtype, low, high)
    bounds = np.asarray(low, jax.numpy.dtype(dtype)), np.asarray(high, jax.numpy.dtype(dtype))
    return _first(_uniform_flat(key, size, jax.numpy.dtype(dtype), *bounds), shape)


def normal(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
    """`jax.random.normal(key, shape, dtype)`: the same values."""
    size = _size_class(math.prod(shape))
    if size is None:
        return jax.random.normal(key, shape, dtype)
    return _first(_normal_flat(key, size, jax.numpy.dtype(dtype)), shape)


def full(shape: tuple[int, ...], value: float, dtype: Any) -> jax.Array:
    """`jnp.full(shape, value, dtype)`, made by NumPy: no program compiled per shape
    (`jax.device_put` of a NumPy array compiles nothing, unlike `jnp.asarray`)."""
    placed: jax.Array = jax.device_put(np.full(shape, value, jax.numpy.dtype(dtype)))
    return placed


def normal_pieces(
    key: jax.Array, shapes: Sequence[tuple[int, ...]], stds: Sequence[float]
) -> list[jax.Array]:
    """One float32 `normal` draw cut into arrays of `shapes`, each scaled by its std:
    a model's re-initialisation pass with one compiled program, not one per shape."""
    sizes = [math.prod(shape) for shape in shapes]
    flat = normal(key, (sum(sizes),), np.float32)
    xp: Any = jax.numpy if isinstance(flat, jax.core.Tracer) else np
    pieces = xp.split(xp.asarray(flat), list(itertools.accumulate(sizes))[:-1])
    out = [(std * p).reshape(shape) for p, std, shape in zip(pieces, stds, shapes, strict=True)]
    return out if xp is jax.numpy else [jax.device_put(piece) for piece in out]
