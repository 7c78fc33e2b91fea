"""Freezing: mark nodes' params as not trained, and the mask an optimizer reads."""

from typing import Any

import jax

from .._leaves import node_entries
from .._tree import named_nodes, structure_tree_map
from .._types import StructureTree
from .._validate import validate
from ._select import Selector, match

FROZEN = "frozen"
"""The `aux` key that marks a node's params as frozen (`aux["frozen"] = True`)."""


def _set_frozen(tree: StructureTree, selector: Selector, frozen: bool, who: str) -> StructureTree:
    def mark(node: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
        aux = {k: v for k, v in node["aux"].items() if k != FROZEN}
        return {**node, "aux": {**aux, FROZEN: True} if frozen else aux}

    def mark_all(node: StructureTree, path: tuple[str, ...]) -> StructureTree:
        return structure_tree_map(mark, node)

    # A match inside another is marked with it: outermost.
    return validate(match(tree, selector, who).set(tree, mark_all, order="outermost"))


def freeze(tree: StructureTree, selector: Selector) -> StructureTree:
    """Freeze the params of every node `selector` matches and of all their descendants.

    Frozenness is recorded in each node's `aux` as `"frozen": True`, so it travels
    with the node: through `hax.jit` (a change of it recompiles, like any `aux`
    value) and through surgery (a node moved by `insert_after` stays frozen; a node
    added by `replace` or `insert_*` is trainable). `hax.checkpoint.save` records it,
    but `load(path, like=...)` keeps the aux of `like` and warns when that drops a
    saved flag: freeze `like` as it was when saved. Nothing changes in apply: an
    optimizer skips frozen params when given `trainable_mask(tree)`. Buffers (e.g.
    BatchNorm statistics) still update in train mode, as in PyTorch. Returns a new tree.

    **Example:** `tree = hax.surgery.unfreeze(hax.surgery.freeze(tree, ""), "head")`
    trains only the head.
    """
    return _set_frozen(tree, selector, True, "hax.surgery.freeze")


def unfreeze(tree: StructureTree, selector: Selector) -> StructureTree:
    """Undo `freeze` for every node `selector` matches and all their descendants."""
    return _set_frozen(tree, selector, False, "hax.surgery.unfreeze")


def trainable_mask(tree: StructureTree, *, flat: bool = False) -> dict[str, Any]:
    """A boolean mask, `True` for every param to train and `False` for frozen ones.

    By default it has the structure of `hax.filter_keys(tree, "params")` (and of the
    params part of `hax.split_tree(tree, ["params"])`); with `flat=True` it has the
    params keys of `hax.bind_module`'s state (`"0/params/weight"`), the structure of
    `hax.optim.params_of(state)`, which `hax.optim.train_step` updates. Either way
    buffers are not in the mask: they are not trained.

    **Example** (with optax): give frozen params a zero update,
    ```python
    optimizer = optax.multi_transform(
        {True: optax.adam(1e-3), False: optax.set_to_zero()},
        hax.surgery.trainable_mask(tree),
    )
    ```
    (`optax.masked(inner, mask)` alone is not enough: it passes the masked-out
    gradients through unchanged.)
    """

    if not flat:
        params = structure_tree_map(
            lambda n, path: {"params": _filled(n["params"], _trainable(n))}, tree
        )
        return dict(params)
    return {
        address.entry: _filled(value, _trainable(node))
        for path, node in named_nodes(tree)
        for address, value in node_entries(path, node, ("params",))
    }


def _trainable(node: Any) -> bool:
    return node["aux"].get(FROZEN) is not True


def _filled(value: Any, flag: bool) -> Any:
    """`value` (an array or a pytree of arrays) with every leaf replaced by `flag`."""
    return jax.tree_util.tree_map(lambda _: flag, value)
