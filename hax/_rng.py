"""Random keys for constructors: explicit `rng=` arguments, or `hax.rng_context`.

Only constructors read the context; apply functions never do (their randomness
lives in `buffers`), so jitted code stays pure.
"""

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any, TypeAlias

import jax
import numpy as np
import numpy.typing as npt

RngLike: TypeAlias = jax.Array | int | np.integer[Any] | npt.NDArray[np.integer[Any]]
"""What `rng=` takes: a typed PRNG key or a legacy `uint32[2]` key, or an int seed
(Python, NumPy, or a 0-d integer array)."""

_CONTEXT: contextvars.ContextVar[list[jax.Array] | None] = contextvars.ContextVar(
    "hax_rng_context", default=None
)


def as_key(key: RngLike) -> jax.Array:
    """A typed PRNG key from an int seed (a Python, NumPy or 0-d array integer), a typed
    key or a legacy `uint32[2]` key."""
    if isinstance(key, bool) or not isinstance(key, int | jax.Array | np.ndarray | np.generic):
        raise TypeError(
            f"a PRNG key or an int seed was expected (rng=0, rng=jax.random.key(0)), found a "
            f"{type(key).__name__}"
        )
    if isinstance(key, int):
        return jax.random.key(key)
    if isinstance(key, jax.Array) and jax.numpy.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if key.ndim == 0 and jax.numpy.issubdtype(key.dtype, jax.numpy.integer):
        return jax.random.key(key)
    if key.shape != (2,) or key.dtype != np.uint32:
        raise TypeError(
            "a PRNG key or an int seed was expected (rng=0, rng=jax.random.key(0)), found an "
            f"array of shape {key.shape} and dtype {key.dtype}"
        )
    wrapped: jax.Array = jax.random.wrap_key_data(jax.numpy.asarray(key))
    return wrapped


@contextlib.contextmanager
def rng_context(key: RngLike) -> Iterator[None]:
    """Supply keys to every constructor called without `rng=` inside the block.

    Each constructor gets a fresh key split from `key`, so
    `Sequential(*[Linear(8, 8) for _ in range(4)])` gets four independent layers.

    **Example:**
    ```python
    with hax.rng_context(0):
        model = hax.nn.Sequential(hax.nn.Linear(8, 8), hax.nn.Linear(8, 2))
    ```
    """
    token = _CONTEXT.set([as_key(key)])
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def next_rng_key(who: str = "this constructor") -> jax.Array:
    """Split a fresh key off the innermost `rng_context`."""
    holder = _CONTEXT.get()
    if holder is None:
        raise ValueError(
            f"{who} needs a random key: pass `rng=jax.random.key(0)`, or build the "
            "model inside `with hax.rng_context(0): ...`"
        )
    # Split eagerly even while a constructor is traced (`jax.jit`, `jax.eval_shape`):
    # the context's key must stay a concrete array, not become a tracer that escapes.
    with jax.ensure_compile_time_eval():
        holder[0], key = jax.random.split(holder[0])
    fresh: jax.Array = key
    return fresh


def resolve_rng(rng: RngLike | None, who: str) -> jax.Array:
    """`rng` as a typed key if given, else the next key of the current `rng_context`."""
    return next_rng_key(who) if rng is None else as_key(rng)
