"""The randomness library blocks draw in training (dropout, drop-path, stochastic
depth), drawn from the node's `rng` buffer: classes registered with `rng=True` get one,
and each draw stores the key's other half back, as `hax.nn.Dropout` does."""

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer
from ...nn._dropout import read_train_mode


def training(org: StateOrganizer) -> bool:
    """`module.training`: the global config's `"train_mode"`."""
    return read_train_mode(org.global_config, "this block")


def _next_key(org: StateOrganizer) -> jax.Array:
    """A key for one draw; the node's `rng` buffer keeps the other half."""
    keys: jax.Array = jax.random.split(org.rng)
    org.rng = keys[0]
    return keys[1]


def dropout(org: StateOrganizer, x: jax.Array, p: float) -> jax.Array:
    """`F.dropout(x, p, training)`: zero elements with probability `p`, scale the rest
    by `1 / (1 - p)`; the identity in eval mode or when `p == 0`."""
    if p == 0.0 or not training(org):
        return x
    if p == 1.0:
        return jnp.zeros_like(x)
    keep = jax.random.bernoulli(_next_key(org), 1.0 - p, x.shape)
    return jnp.where(keep, x / (1.0 - p), jnp.zeros((), x.dtype))


def drop_path(
    org: StateOrganizer, x: jax.Array, p: float, *, per_sample: bool = True, scale: bool = True
) -> jax.Array:
    """Stochastic depth (timm's `drop_path`, torchvision's `stochastic_depth`): zero
    each sample (`per_sample`, torchvision's mode `"row"`) or the whole batch (`"batch"`)
    with probability `p`, and scale what is kept by `1 / (1 - p)` when `scale`."""
    if p == 0.0 or not training(org):
        return x
    keep = 1.0 - p
    shape = (x.shape[0],) + (1,) * (x.ndim - 1) if per_sample else (1,) * x.ndim
    noise = jax.random.bernoulli(_next_key(org), keep, shape).astype(x.dtype)
    if keep > 0.0 and scale:
        noise = noise / keep
    return x * noise
