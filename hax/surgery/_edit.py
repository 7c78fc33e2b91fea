"""Editing a tree by path or selector: `get`, `replace`, `remove`, `insert_before`,
`insert_after`, `wrap`. Each returns a new tree and never mutates its input."""

from collections.abc import Callable
from typing import TypeAlias

from .._config import merge_configs
from .._module import as_module
from .._path import describe_path, path_str
from .._tree import empty_tree, structure_tree_map
from .._types import GlobalConfig, Module, StructureTree
from .._validate import validate
from ..nn import sequential_apply
from ._chain import chain_apply
from ._select import Selector, kind_of, match
from ._selection import NodePath, Order
from ._wrap import WrapFn, Wrapped, unwrapped

NewModule: TypeAlias = (
    Module | StructureTree | Callable[[StructureTree, NodePath], Module | StructureTree]
)
"""A module `(tree, config)`, a bare tree, or a function `(old_node, path) -> module`
called once per matched node (to build, e.g., a layer sized like the one it replaces)."""

_REMOVABLE = (sequential_apply, chain_apply)


def _copy(tree: StructureTree) -> StructureTree:
    """New node dicts all the way down (arrays shared), so one module placed at several
    paths gives distinct nodes."""
    return structure_tree_map(
        lambda n, path: {k: dict(v) if isinstance(v, dict) else v for k, v in n.items()}, tree
    )


def _module_for(
    module: NewModule, old: StructureTree, path: NodePath, who: str
) -> tuple[StructureTree, GlobalConfig]:
    value = module(old, path) if callable(module) else module
    pair = as_module(value)
    if pair is None:
        source = f" returned by the function for {describe_path(path)}" if callable(module) else ""
        raise TypeError(
            f"{who}: expected a module `(tree, config)` such as hax.nn.Linear(4, 2), a "
            f"structure tree, or a function (node, path) -> module; found "
            f"{type(value).__name__}{source}"
        )
    return _copy(pair[0]), pair[1]


def _add_modules(
    tree: StructureTree,
    selector: Selector,
    module: NewModule,
    config: GlobalConfig | None,
    who: str,
    label: str,
    place: Callable[[StructureTree, StructureTree], StructureTree],
    *,
    order: Order,
) -> Module:
    """An edit that adds modules: each matched node becomes `place(node, new_node)`,
    and the new modules' configs merge into `config`."""
    configs, names = [config or {}], ["the config passed in"]

    def add(node: StructureTree, path: NodePath) -> StructureTree:
        new_node, node_config = _module_for(module, node, path, who)
        configs.append(node_config)
        names.append(f"{label} at {describe_path(path)!r}")
        return place(node, new_node)

    new_tree = match(tree, selector, who).set(tree, add, order=order)
    merged = merge_configs(*configs, names=names)
    return validate(new_tree, merged if config is not None else None), merged


def _chain(first: StructureTree, second: StructureTree) -> StructureTree:
    """The node `insert_*` puts at a path: `first` at `path/0`, then `second` at `path/1`."""
    return {**empty_tree(chain_apply), "submodules": {"0": first, "1": second}}


def get(tree: StructureTree, selector: Selector) -> StructureTree:
    """The node at a path (`"a/b"` or `("a", "b")`), or the one node a selector matches.

    Raises `KeyError` naming the path and what exists nearby when there is no such
    node, or when the selector matches several (list those with `hax.surgery.paths`).
    """
    found = match(tree, selector, "hax.surgery.get")
    if len(found) != 1:
        names = [describe_path(p) for p in found[:5]]
        more = ", ..." if len(found) > 5 else ""
        raise KeyError(
            f"hax.surgery.get: {selector!r} matched {len(found)} nodes "
            f"({', '.join(names)}{more}); get returns one node: give one path, or list the "
            "matches with hax.surgery.paths(tree, selector)"
        )
    return found.get(tree)[0]


def replace(
    tree: StructureTree,
    selector: Selector,
    module: NewModule,
    *,
    config: GlobalConfig | None = None,
) -> Module:
    """Put `module` in place of every node `selector` matches.

    **Arguments:**
    - `tree`: the host tree.
    - `selector`: a path or any selector (see `hax.surgery.paths`); a match inside
      another match goes with it.
    - `module`: a module `(tree, config)`, a bare tree, or `fn(old_node, path) ->
      module`. Each match gets its own copy of the nodes (sharing the initial arrays).
    - `config`: the host's global config, merged with the new modules' configs.

    **Returns:** `(new_tree, merged_config)`; without `config`, the merged config of
    the new modules only. The new nodes are trainable (see `hax.surgery.freeze`).

    **Example:**
    `tree, config = hax.surgery.replace(tree, "fc", hax.nn.Linear(128, 10), config=config)`
    """
    return _add_modules(
        tree,
        selector,
        module,
        config,
        "hax.surgery.replace",
        "the new module",
        lambda node, new_node: new_node,
        order="outermost",
    )


def insert_after(
    tree: StructureTree,
    selector: Selector,
    module: NewModule,
    *,
    config: GlobalConfig | None = None,
) -> Module:
    """Run `module` on the output of every node `selector` matches.

    The node at `path` becomes a chain (`hax.surgery.chain_apply`) of two
    submodules: `path/0` is the original node (its params move under it, e.g.
    `"fc/params/weight"` becomes `"fc/0/params/weight"`) and `path/1` is `module`,
    which receives the original's output. Every param outside `path` keeps its path.
    Arguments and return value as for `hax.surgery.replace`.

    **Example:**
    `tree, config = hax.surgery.insert_after(tree, "2", hax.nn.Dropout(0.1, rng=0))`
    """
    return _add_modules(
        tree,
        selector,
        module,
        config,
        "hax.surgery.insert_after",
        "the module inserted",
        lambda node, new_node: _chain(node, new_node),
        order="deepest_first",  # a match inside another is inserted at too
    )


def insert_before(
    tree: StructureTree,
    selector: Selector,
    module: NewModule,
    *,
    config: GlobalConfig | None = None,
) -> Module:
    """Run `module` on the input of every node `selector` matches.

    As `insert_after`, but `path/0` is `module` (it receives every argument) and
    `path/1` the original node, which receives `module`'s output.
    """
    return _add_modules(
        tree,
        selector,
        module,
        config,
        "hax.surgery.insert_before",
        "the module inserted",
        lambda node, new_node: _chain(new_node, node),
        order="deepest_first",
    )


def remove(tree: StructureTree, selector: Selector) -> StructureTree:
    """Drop every node `selector` matches from its parent.

    Only children of a `hax.nn.Sequential` or of a chain made by `insert_*` can go:
    those run their children in order, so the rest still fit together. The other
    children keep their names (removing `"1"` of a Sequential leaves `"0"`, `"2"`,
    ...), so every remaining param keeps its path. Any other parent may call its
    children by name; there, `replace` the node with `hax.nn.Identity()` instead.
    """
    who = "hax.surgery.remove"
    found = match(tree, selector, who).outermost()
    if () in found:
        raise ValueError(f"{who}: cannot remove the root; selector {selector!r} matched it")
    parents = found.parents()
    for path, parent in zip(found, parents.get(tree), strict=True):
        _check_removable(path, parent, who)
    gone = set(found)

    def drop(parent: StructureTree, path: NodePath) -> StructureTree:
        kept = {k: v for k, v in parent["submodules"].items() if (*path, k) not in gone}
        return {**parent, "submodules": kept}

    # A parent may lie inside another's subtree: edit the deeper one first.
    return validate(parents.set(tree, drop, order="deepest_first"))


def _check_removable(path: NodePath, parent: StructureTree, who: str) -> None:
    """Raise unless `parent` runs its children in order (so one can go)."""
    if not any(a in _REMOVABLE for a in unwrapped(parent["apply"])):
        raise ValueError(
            f"{who}: cannot remove {describe_path(path)!r}: its parent "
            f"{describe_path(path[:-1])} is a {kind_of(parent['apply'])}, whose apply may "
            "call its submodules by name; only children of a Sequential or a Chain can "
            f"be removed. Replace it with an identity instead: hax.surgery.replace(tree, "
            f"{path_str(path)!r}, hax.nn.Identity())"
        )


def wrap(tree: StructureTree, selector: Selector, fn: WrapFn) -> StructureTree:
    """Wrap the apply of every node `selector` matches: the node then runs
    `fn(inner_apply, tree, global_config, *args, **kwargs) -> (new_tree, out)`.

    Paths, params and buffers are unchanged; `fn` decides how to call `inner_apply`
    (to scale an output, to add a residual, to record a value). Define `fn` at module
    level: it is part of the node's static apply (a `Wrapped`, compared by value, so
    rebuilding the same wrap does not retrace `hax.jit`). Wrapping twice nests.

    **Example:**
    ```python
    def halve(inner, tree, config, *args, **kwargs):
        tree, out = inner(tree, config, *args, **kwargs)
        return tree, out * 0.5

    tree = hax.surgery.wrap(tree, "blocks/*/attn", halve)
    ```
    """

    def wrapped(node: StructureTree, path: NodePath) -> StructureTree:
        return {**node, "apply": Wrapped(fn, node["apply"])}

    found = match(tree, selector, "hax.surgery.wrap")
    return validate(found.set(tree, wrapped, order="deepest_first"))
