"""Placing a model's arrays on a mesh, and building a model directly in its shards."""

from collections.abc import Callable
from typing import Any

import jax

from .._module import bind_module, tree_state, unbind_module
from .._tree import is_structure_tree
from .._types import Module, StructureTree

ShardingsFor = Callable[[StructureTree], dict[str, Any]]
"""`fn(tree) -> shardings` keyed like the bound state, e.g.
`lambda t: hax.sharding.shardings(t, mesh, rules)`."""


def place(state: Any, shardings: dict[str, Any]) -> Any:
    """Put every param and buffer of a tree (or of a bound state) on its sharding.

    `shardings` is keyed like the state of `hax.bind_module` (`"0/params/weight"`),
    as `hax.sharding.shardings` returns it. Arrays already placed so are not copied.
    """
    if not is_structure_tree(state):
        return jax.device_put(state, shardings)
    placed = jax.device_put(tree_state(state), shardings)
    return bind_module(state, {})[1].tree(placed)


def _shape_of(x: Any) -> Any:
    return jax.ShapeDtypeStruct(x.shape, x.dtype)  # type: ignore[no-untyped-call]  # untyped in jax


def _abstract(tree: StructureTree) -> StructureTree:
    """The tree with every array replaced by its `jax.ShapeDtypeStruct`."""
    return bind_module(tree, {})[1].tree(jax.tree.map(_shape_of, tree_state(tree)))


def init(constructor: Callable[[], Module], shardings_for: ShardingsFor) -> Module:
    """Build a module with every array created directly in its shards.

    `constructor()` returns `(tree, config)` (e.g. `lambda: Model(..., rng=key)`). It
    is traced once without computing anything (`jax.eval_shape`) to learn the shapes,
    `shardings_for(abstract_tree)` chooses the shardings, and the constructor then
    runs under `jax.jit(..., out_shardings=...)`, so each device computes only its
    own shards: no device ever holds a full copy. Works the same across hosts.
    """
    captured: dict[str, Any] = {}

    def build_state() -> dict[str, Any]:
        tree, config = constructor()
        captured["tree"], captured["config"] = _abstract(tree), config
        return tree_state(tree)

    jax.eval_shape(build_state)
    abstract, config = captured["tree"], captured["config"]
    shards = shardings_for(abstract)
    state = jax.jit(build_state, out_shardings=shards)()
    return unbind_module(state, bind_module(abstract, config)[1])
