"""Building and running models: layers, StateOrganizer (untyped and typed), applies."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import hax
from hax import nn


@hax.organized_apply
def mlp_apply(org: hax.StateOrganizer, x: jax.Array) -> jax.Array:
    out: jax.Array = org.fc2(jax.nn.relu(org.fc1(x)))  # untyped: every name is Any
    return out


@hax.organized_init(mlp_apply)
def MLP(org: hax.StateOrganizer, din: int, dhidden: int, dout: int) -> None:
    org.fc1 = nn.Linear(din, dhidden)
    org.fc2 = nn.Linear(dhidden, dout)
    org.register_buffer("steps", jnp.zeros((), jnp.int32))
    org.register_aux("sizes", (din, dhidden, dout))


class BlockParts(hax.TypedOrganizer):
    """What block_apply reads, declared: a misspelt name is a type error."""

    norm: hax.Child[jax.Array]
    layers: hax.Child
    scale: jax.Array
    eps: float


@hax.organized_apply
def block_apply(org: BlockParts, x: jax.Array) -> jax.Array:
    for layer in org.layers:
        x = layer(x)
    first = org.layers[0]
    return org.norm(first(x)) * org.scale + org.eps + len(org.layers)


@hax.organized_init(block_apply)
def Block(org: hax.StateOrganizer, dim: int, depth: int) -> None:
    org.norm = nn.LayerNorm(dim)
    org.layers = nn.Sequential(*[nn.Linear(dim, dim) for _ in range(depth)])
    org.scale = jnp.ones(dim)
    org.register_aux("eps", 1e-3)


def scale_apply(
    tree: hax.StructureTree, global_config: hax.GlobalConfig, x: jax.Array
) -> tuple[hax.StructureTree, jax.Array]:
    aux = tree["aux"]
    factor = aux["factor"]
    assert isinstance(factor, float)
    return tree, x * factor * tree["params"]["w"]


def wrap_apply(
    tree: hax.StructureTree, config: hax.GlobalConfig, inner: hax.ApplyFn, x: np.ndarray[Any, Any]
) -> tuple[hax.StructureTree, Any]:
    return inner(tree, config, x)


with hax.rng_context(np.int64(0)):
    tree, config = MLP(4, 8, 2)
    block, block_config = Block(8, depth=2)
tree, out = hax.apply_tree(tree, config, np.ones((3, 4), np.float32))
node: hax.StructureTree = {
    "params": {"w": jnp.ones(3)},
    "buffers": {},
    "aux": {"factor": 2.0, "shape": (3, (1, "a"))},
    "apply": scale_apply,
    "submodules": {"mlp": tree},
}
node = hax.fill_tree(node)
linear = nn.Linear(4, 2, rng=np.int64(1))
conv = nn.Conv2d(3, 8, 3, rng=jax.random.key(0))
policy = hax.precision.Policy(compute_dtype=jnp.bfloat16)
mixed = hax.precision.mixed_precision(tree, policy)
state, bound = hax.bind_module(tree, config)
state, y = jax.jit(bound)(state, jnp.ones((1, 4)))
tree2, config2 = hax.unbind_module(state, bound)
