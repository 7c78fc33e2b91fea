"""Mistakes with structure trees, each on its marked line."""

from typing import Any

import jax
import jax.numpy as jnp

import hax


def good_apply(
    tree: hax.StructureTree, config: hax.GlobalConfig, x: jax.Array
) -> tuple[hax.StructureTree, jax.Array]:
    return tree, x


def bad_apply(x: int) -> int:
    return x


tree, config = hax.nn.Linear(2, 2, rng=0)
x = jnp.ones(2)

# Kinds of mistake that mypy --strict rejected before these types:
hax.apply_tree([1, 2], config, x)  # expect-error: arg-type
partial: hax.StructureTree = {"params": {}}  # expect-error: typeddict-item
wrong: hax.StructureTree = {
    "params": {}, "buffers": {}, "aux": {}, "apply": bad_apply, "submodules": {}  # expect-error
}
hax.bind_module(tree, [config])  # expect-error: arg-type
tree["parms"]  # expect-error: typeddict-item
hax.apply_tree(config, tree, x)  # expect-error: arg-type
hax.nn.Linear("4", 2)  # expect-error: arg-type
new_tree, out, extra = hax.apply_tree(tree, config, x)  # expect-error: misc
tree["submodules"]["fc"]["parms"]  # expect-error: typeddict-item
hax.get_subtree(tree, 0)  # expect-error: arg-type
state, bound = hax.bind_module(tree, config)
bound(tree, x)  # expect-error: arg-type
hax.unbind_module(bound, state)  # expect-error: arg-type
hax.rng_context("0")  # expect-error: arg-type
hax.nn.Sequential(hax.nn.Linear(2, 2), jnp.ones(2))  # expect-error: arg-type
hax.validate(tree, [config])  # expect-error: arg-type

# Kinds of mistake that the types reject now:
hax.split_tree(tree, ["param"])  # expect-error: list-item
hax.filter_keys(tree, "param")  # expect-error: arg-type
hax.named_leaves(tree, "params")  # expect-error: arg-type
hax.empty_tree(bad_apply)  # expect-error: arg-type
hax.structure_tree_map(lambda n, path: {**n, "aux": {}}, tree)["parms"]  # expect-error: typeddict-item
sizes: hax.StructureTree = {
    "params": {}, "buffers": {}, "aux": {"sizes": [1, 2]}, "apply": good_apply, "submodules": {}  # expect-error: dict-item
}
scalar: hax.StructureTree = {
    "params": {"w": 1.0}, "buffers": {}, "aux": {}, "apply": good_apply, "submodules": {}  # expect-error: dict-item
}
weights: Any = tree["params"]["weight"]
