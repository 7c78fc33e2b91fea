"""Editing a tree by path or selector: `get`, `replace`, `remove`, `insert_before`,
`insert_after`, `wrap`. Each returns a new tree and never mutates its input."""

from collections.abc import Callable
from typing import TypeAlias

from .._config import merge_configs
from .._module import as_module
from .._path import describe_path
from .._tree import empty_tree, get_subtree, set_subtree, structure_tree_map
from .._types import GlobalConfig, Module, StructureTree
from .._validate import validate
from ..nn import sequential_apply
from ._chain import chain_apply
from ._select import NodePath, Selector, kind_of, match, outermost
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
    return structure_tree_map(  # type: ignore[no-any-return]  # the map rebuilds a tree
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
    return get_subtree(tree, found[0])


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
    who = "hax.surgery.replace"
    configs, names = [config or {}], ["the config passed in"]
    new_tree = tree
    for path in outermost(match(tree, selector, who)):
        node, node_config = _module_for(module, get_subtree(tree, path), path, who)
        configs.append(node_config)
        names.append(f"the new module at {describe_path(path)!r}")
        new_tree = set_subtree(new_tree, path, node)
    merged = merge_configs(*configs, names=names)
    return validate(new_tree, merged if config is not None else None), merged


def _insert(
    tree: StructureTree,
    selector: Selector,
    module: NewModule,
    config: GlobalConfig | None,
    after: bool,
) -> Module:
    who = f"hax.surgery.insert_{'after' if after else 'before'}"
    configs, names = [config or {}], ["the config passed in"]
    new_tree = tree
    # Children before parents, so that the paths still to edit stay valid.
    for path in reversed(match(tree, selector, who)):
        node = get_subtree(new_tree, path)
        new_node, node_config = _module_for(module, node, path, who)
        configs.append(node_config)
        names.append(f"the module inserted at {describe_path(path)!r}")
        pair = (node, new_node) if after else (new_node, node)
        chain: StructureTree = {
            **empty_tree(chain_apply),
            "submodules": {"0": pair[0], "1": pair[1]},
        }
        new_tree = set_subtree(new_tree, path, chain)
    merged = merge_configs(*configs, names=names)
    return validate(new_tree, merged if config is not None else None), merged


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
    return _insert(tree, selector, module, config, after=True)


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
    return _insert(tree, selector, module, config, after=False)


def remove(tree: StructureTree, selector: Selector) -> StructureTree:
    """Drop every node `selector` matches from its parent.

    Only children of a `hax.nn.Sequential` or of a chain made by `insert_*` can go:
    those run their children in order, so the rest still fit together. The other
    children keep their names (removing `"1"` of a Sequential leaves `"0"`, `"2"`,
    ...), so every remaining param keeps its path. Any other parent may call its
    children by name; there, `replace` the node with `hax.nn.Identity()` instead.
    """
    who = "hax.surgery.remove"
    new_tree = tree
    for path in outermost(match(tree, selector, who)):
        if not path:
            raise ValueError(f"{who}: cannot remove the root; selector {selector!r} matched it")
        parent = get_subtree(new_tree, path[:-1])
        if not any(a in _REMOVABLE for a in unwrapped(parent["apply"])):
            raise ValueError(
                f"{who}: cannot remove {describe_path(path)!r}: its parent "
                f"{describe_path(path[:-1])} is a {kind_of(parent['apply'])}, whose apply may "
                "call its submodules by name; only children of a Sequential or a Chain can "
                f"be removed. Replace it with an identity instead: hax.surgery.replace(tree, "
                f"{'/'.join(path)!r}, hax.nn.Identity())"
            )
        children = {k: v for k, v in parent["submodules"].items() if k != path[-1]}
        new_tree = set_subtree(new_tree, path[:-1], {**parent, "submodules": children})
    return validate(new_tree)


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
    new_tree = tree
    for path in match(tree, selector, "hax.surgery.wrap"):
        node = get_subtree(new_tree, path)
        new_tree = set_subtree(new_tree, path, {**node, "apply": Wrapped(fn, node["apply"])})
    return validate(new_tree)
