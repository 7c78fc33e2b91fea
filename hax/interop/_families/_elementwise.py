"""Modules that map their input elementwise, as applies: activations (no state, run
as `fn(x)`; those the libraries write alike are here once) and layer scales (the
input times a learned per-channel factor)."""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ..._types import ApplyFn, GlobalConfig, InputArray, StructureTree


@functools.cache
def elementwise(fn: Callable[[jax.Array], jax.Array]) -> ApplyFn:
    """The apply of a module whose forward is `fn(x)` (one apply per `fn`)."""

    def apply(
        tree: StructureTree, global_config: GlobalConfig, x: InputArray
    ) -> tuple[StructureTree, jax.Array]:
        x = jnp.asarray(x)
        return tree, fn(x)

    return apply


def quick_gelu(x: jax.Array) -> jax.Array:
    """Quick GELU: `x * sigmoid(1.702 x)`."""
    return x * jax.nn.sigmoid(1.702 * x)


@functools.cache
def scaled_by(param: str) -> ApplyFn:
    """The apply of a layer scale: `x * param` (timm's `LayerScale` `gamma`, DINOv2's
    `lambda1`)."""

    @organized_apply
    def apply(org: StateOrganizer, x: InputArray) -> jax.Array:
        x = jnp.asarray(x)
        factor: jax.Array = getattr(org, param)
        return x * factor

    return apply
