"""The randomness library blocks draw in training (dropout, drop-path, stochastic
depth), drawn from the node's own `rng` buffer: classes registered with `rng=True` get
one, and each draw stores the key's other half back, as `hax.nn.Dropout` does."""

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ..._types import InputArray
from ...nn._dropout import read_train_mode
from ...nn.functional import dropout as functional_dropout


def training(org: StateOrganizer, who: str = "this block") -> bool:
    """`module.training`: the global config's `"train_mode"` (`who` names the reader in
    the error when it is missing)."""
    return read_train_mode(org.global_config, who)


def _next_key(org: StateOrganizer) -> jax.Array:
    """A key for one draw; the node's `rng` buffer keeps the other half."""
    keys: jax.Array = jax.random.split(org.rng)
    org.rng = keys[0]
    return keys[1]


def dropout(org: StateOrganizer, x: jax.Array, p: float, who: str = "this block") -> jax.Array:
    """`F.dropout(x, p, training)`: zero elements with probability `p`, scale the rest
    by `1 / (1 - p)`; the identity in eval mode or when `p == 0`."""
    if p == 0.0 or not training(org, who):
        return x
    return functional_dropout(x, p, rng=_next_key(org))


def drop_layer(
    org: StateOrganizer, x: jax.Array, out: jax.Array, p: float, who: str = "this block"
) -> jax.Array:
    """LayerDrop (OPT's `layerdrop`): in train mode, the layer's input `x` in place of its
    output `out` with probability `p` (torch skips the layer; here it runs and is not
    used, so the result is the same under `jit`)."""
    if p == 0.0 or not training(org, who):
        return out
    skip = jax.random.uniform(_next_key(org)) < p
    return jnp.where(skip, x, out)


def drop_path(
    org: StateOrganizer,
    x: jax.Array,
    p: float,
    *,
    per_sample: bool = True,
    scale: bool = True,
    who: str = "this block",
) -> jax.Array:
    """Stochastic depth (timm's `drop_path`, torchvision's `stochastic_depth`): zero
    each sample (`per_sample`, torchvision's mode `"row"`) or the whole batch (`"batch"`)
    with probability `p`, and scale what is kept by `1 / (1 - p)` when `scale`."""
    if p == 0.0 or not training(org, who):
        return x
    keep = 1.0 - p
    shape = (x.shape[0],) + (1,) * (x.ndim - 1) if per_sample else (1,) * x.ndim
    noise = jax.random.bernoulli(_next_key(org), keep, shape).astype(x.dtype)
    if keep > 0.0 and scale:
        noise = noise / keep
    return x * noise


@organized_apply
def drop_path_apply(org: StateOrganizer, x: InputArray) -> jax.Array:
    """timm's `DropPath`, Hugging Face's `Dinov2DropPath`: drop each sample's residual
    branch with probability `drop_prob`, scaling by keep when `scale_by_keep` (which
    DINOv2's always does)."""
    x = jnp.asarray(x)
    scale = getattr(org, "scale_by_keep", True)
    return drop_path(org, x, org.drop_prob, scale=scale, who="DropPath")
