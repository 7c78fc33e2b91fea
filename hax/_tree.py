"""Functions over structure trees: defaults, mapping, splitting, merging, paths, leaves.

Every function here is functional: inputs are never mutated, outputs share unchanged
arrays (and unchanged subtrees, where documented) with their inputs.
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeGuard, cast, overload

import jax
import numpy as np

from ._leaves import kind_leaves
from ._path import as_path, describe_path
from ._types import KINDS, STATE_KINDS, ApplyFn, GlobalConfig, Kind, Path, StateKind, StructureTree

_DICT_KINDS = ("params", "buffers", "aux")
_LEAF_KINDS = ("params", "buffers", "aux", "apply")


def missing_apply(
    tree: StructureTree, global_config: GlobalConfig, /, *args: Any, **kwargs: Any
) -> Any:
    """The `apply` of a node made by `empty_tree()`/`fill_tree()` without one: always raises."""
    raise TypeError(
        "this node has no apply function. Set one with `tree['apply'] = my_apply` "
        "(a module-level function `my_apply(tree, global_config, *args) -> (tree, out)`)."
    )


def empty_tree(apply: ApplyFn = missing_apply) -> StructureTree:
    """A node with no params, buffers, aux or submodules.

    **Arguments:**
    - `apply`: the node's apply function; by default one that raises when called.
    """
    return {"params": {}, "buffers": {}, "aux": {}, "apply": apply, "submodules": {}}


def _to_jax(x: Any) -> Any:
    return jax.numpy.asarray(x) if isinstance(x, np.ndarray | np.generic) else x


def _rebuild(
    roots: Sequence[Any],
    visit: Callable[[Sequence[Any], tuple[str, ...]], Any],
    children_of: Callable[[Sequence[Any]], list[tuple[str, Sequence[Any]]]],
    join: Callable[[Any, dict[str, Any], tuple[str, ...]], Any],
) -> Any:
    """Rebuild one or more trees walked in step, without recursion (any depth works).

    `visit(nodes, path)` runs on every position parents first (children in order);
    `children_of(nodes)` gives `(name, child nodes)` for each child position; and
    `join(visited, {name: joined child}, path)` assembles each result, children first.
    """
    entries: list[tuple[tuple[str, ...], Any, int, str]] = []  # path, visited, parent, name
    stack: list[tuple[tuple[str, ...], Sequence[Any], int, str]] = [((), roots, -1, "")]
    while stack:
        path, nodes, parent, name = stack.pop()
        index = len(entries)
        entries.append((path, visit(nodes, path), parent, name))
        stack.extend(
            ((*path, child), child_nodes, index, child)
            for child, child_nodes in reversed(children_of(nodes))
        )
    built: list[dict[str, Any]] = [{} for _ in entries]
    result = None
    for index in reversed(range(len(entries))):
        path, visited, parent, name = entries[index]
        joined = join(visited, dict(reversed(built[index].items())), path)
        if parent < 0:
            result = joined
        else:
            built[parent][name] = joined
    return result


def fill_tree(tree: Mapping[str, Any]) -> StructureTree:
    """Add the missing keys of every node (empty dicts, `missing_apply`).

    NumPy arrays in `params` and `buffers` become JAX arrays. The input is not
    mutated. An unknown key raises `ValueError` naming the node.
    """

    def visit(nodes: Sequence[Any], path: tuple[str, ...]) -> StructureTree:
        (node,) = nodes
        if not isinstance(node, Mapping):
            raise TypeError(
                f"{describe_path(path)}: expected a structure tree (a dict), "
                f"found {type(node).__name__}"
            )
        unknown = sorted(set(node) - set(KINDS))
        if unknown:
            raise ValueError(
                f"{describe_path(path)}: unknown keys {unknown}; a node has only the keys "
                f"{list(KINDS)}"
            )
        filled = empty_tree(node.get("apply", missing_apply))
        for kind in ("params", "buffers"):
            filled[kind] = jax.tree_util.tree_map(_to_jax, dict(node.get(kind, {})))
        filled["aux"] = dict(node.get("aux", {}))
        return filled

    def children_of(nodes: Sequence[Any]) -> list[tuple[str, Sequence[Any]]]:
        (node,) = nodes
        children = node.get("submodules", {}) if isinstance(node, Mapping) else {}
        return [(name, (child,)) for name, child in children.items()]

    def join(filled: Any, children: dict[str, Any], path: tuple[str, ...]) -> Any:
        return {**filled, "submodules": children}

    return cast(StructureTree, _rebuild((tree,), visit, children_of, join))


def is_structure_tree(x: Any) -> TypeGuard[StructureTree]:
    """Whether `x` has the shape of a structure tree: a dict with exactly the five keys
    at every node, dict-valued kinds and a callable `apply`.

    This is a cheap structural check; `hax.validate` checks everything.
    """
    stack = [x]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict) or node.keys() != set(KINDS):
            return False
        if not all(isinstance(node[k], dict) for k in (*_DICT_KINDS, "submodules")):
            return False
        if not callable(node["apply"]):
            return False
        stack.extend(node["submodules"].values())
    return True


def _union_names(nodes: Iterable[Mapping[str, Any] | None]) -> list[str]:
    names: dict[str, None] = {}
    for node in nodes:
        if node is not None:
            names.update(dict.fromkeys(node.get("submodules", {})))
    return list(names)


@overload
def structure_tree_map(
    fn: Callable[..., tuple[Mapping[str, Any], ...]],
    tree: Mapping[str, Any],
    *rest: Mapping[str, Any],
) -> tuple[dict[str, Any], ...]: ...


@overload
def structure_tree_map(
    fn: Callable[..., Mapping[str, Any]], tree: StructureTree, *rest: Mapping[str, Any]
) -> StructureTree: ...


@overload
def structure_tree_map(
    fn: Callable[..., Mapping[str, Any]], tree: Mapping[str, Any], *rest: Mapping[str, Any]
) -> dict[str, Any]: ...


def structure_tree_map(
    fn: Callable[..., Mapping[str, Any] | tuple[Mapping[str, Any], ...]],
    tree: Mapping[str, Any],
    *rest: Mapping[str, Any],
) -> StructureTree | dict[str, Any] | tuple[dict[str, Any], ...]:
    """Map `fn` over the nodes of one or more trees and rebuild the tree(s).

    `fn(*nodes, path=path)` receives, for each tree, the node at `path` without its
    `submodules` key (or `None` where that tree has no node at `path`), and returns
    one node, or a tuple of nodes to build several trees at once. The result has
    the union of the input trees' paths; each returned node gets the mapped children
    as its `submodules`. It is typed by the inputs: a `StructureTree` maps to a
    `StructureTree` (`fn` keeps nodes whole), a partial tree to a `dict`, and a `fn`
    that returns tuples to a tuple of partial trees.

    **Example:**
    ```python
    zeros = hax.structure_tree_map(
        lambda n, path: {**n, "params": jax.tree.map(jnp.zeros_like, n["params"])}, tree
    )
    ```
    """

    def visit(nodes: Sequence[Any], path: tuple[str, ...]) -> Any:
        leaf_nodes = [
            None if n is None else {k: v for k, v in n.items() if k != "submodules"} for n in nodes
        ]
        return fn(*leaf_nodes, path=path)

    def children_of(nodes: Sequence[Any]) -> list[tuple[str, Sequence[Any]]]:
        return [
            (name, [None if n is None else n.get("submodules", {}).get(name) for n in nodes])
            for name in _union_names(nodes)
        ]

    def join(result: Any, children: dict[str, Any], path: tuple[str, ...]) -> Any:
        if isinstance(result, tuple):
            for name, child in children.items():
                if not isinstance(child, tuple) or len(child) != len(result):
                    raise ValueError(
                        f"structure_tree_map: fn returned a tuple of {len(result)} nodes at "
                        f"{describe_path(path)} but not at {describe_path((*path, name))}; "
                        "return the same number of nodes everywhere"
                    )
            return tuple(
                {**_check_node(r, path), "submodules": {n: c[i] for n, c in children.items()}}
                for i, r in enumerate(result)
            )
        for name, child in children.items():
            if isinstance(child, tuple):
                raise ValueError(
                    f"structure_tree_map: fn returned one node at {describe_path(path)} but a "
                    f"tuple at {describe_path((*path, name))}; return the same number of nodes "
                    "everywhere"
                )
        return {**_check_node(result, path), "submodules": children}

    result: StructureTree | dict[str, Any] | tuple[dict[str, Any], ...]
    result = _rebuild((tree, *rest), visit, children_of, join)
    return result


def _check_node(node: Any, path: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(node, dict):
        raise TypeError(
            f"structure_tree_map: fn must return a node (a dict) or a tuple of nodes, "
            f"found {type(node).__name__} at {describe_path(path)}"
        )
    return node


def _check_kinds(
    keys: Iterable[str], what: str, allowed: tuple[str, ...] = _LEAF_KINDS
) -> tuple[str, ...]:
    keys = tuple(keys)
    for k in keys:
        if not isinstance(k, str):
            raise TypeError(
                f"{what}: a kind is a str such as {allowed[0]!r}; found the "
                f"{type(k).__name__} {k!r}"
            )
    bad = [k for k in keys if k not in allowed]
    if bad:
        kept = " ('submodules' is always kept, it carries the structure)" * ("apply" in allowed)
        raise ValueError(f"{what}: unknown kinds {bad}; choose from {list(allowed)}{kept}")
    return keys


def filter_keys(tree: Mapping[str, Any], *keys: Kind) -> dict[str, Any]:
    """A partial tree keeping only the kinds `keys` at every node (plus `submodules`).

    **Example:** `hax.filter_keys(tree, "params")` is the trainable part of a model, a
    pytree of arrays that `jax.grad` can differentiate.
    """
    for k in keys:
        if isinstance(k, list | tuple):
            raise TypeError(
                f"filter_keys: pass each kind as its own argument, such as "
                f"filter_keys(tree, 'params', 'aux'); found the {type(k).__name__} {k!r}"
            )
    kinds = _check_kinds(keys, "filter_keys")
    return dict(structure_tree_map(lambda n, path: {k: n[k] for k in kinds if k in n}, tree))


def split_tree(
    tree: Mapping[str, Any], key_sets: Kind | Sequence[Kind | Sequence[Kind]]
) -> tuple[dict[str, Any], ...]:
    """Split a tree into partial trees, one per entry of `key_sets`, plus one final
    part with every kind no entry named. `merge_trees(*parts)` gives the tree back.
    A single kind may be given as a bare str: `split_tree(tree, "params")`.

    **Example:**
    ```python
    params, rest = hax.split_tree(tree, ["params"])
    params, buffers, rest = hax.split_tree(tree, ["params", "buffers"])
    ```
    """
    if isinstance(key_sets, str) or not isinstance(key_sets, Iterable):
        key_sets = [key_sets]
    sets = [
        _check_kinds(
            (ks,) if isinstance(ks, str) or not isinstance(ks, Iterable) else ks, "split_tree"
        )
        for ks in key_sets
    ]
    seen: set[str] = set()
    for ks in sets:
        overlap = seen.intersection(ks)
        if overlap:
            raise ValueError(f"split_tree: kinds {sorted(overlap)} appear in more than one key set")
        seen.update(ks)
    rest = tuple(k for k in _LEAF_KINDS if k not in seen)
    parts = (*sets, rest)
    return structure_tree_map(
        lambda n, path: tuple({k: n[k] for k in ks if k in n} for ks in parts), tree
    )


def merge_trees(*trees: Mapping[str, Any]) -> StructureTree:
    """Merge partial trees (e.g. from `split_tree` or `filter_keys`) back into one.

    Nodes are matched by path; `params`/`buffers`/`aux` dicts are merged key by key.
    The same key in two parts (or two different `apply` functions for one node)
    raises `ValueError` naming the path. The result is typed as a full tree; when
    the parts do not cover all five kinds it is partial (complete it with `fill_tree`).
    """
    if not trees:
        raise TypeError("merge_trees needs at least one tree")

    def children_of(nodes: Sequence[Any]) -> list[tuple[str, Sequence[Any]]]:
        return [
            (name, [n["submodules"][name] for n in nodes if name in n.get("submodules", {})])
            for name in _union_names(nodes)
        ]

    def join(out: Any, children: dict[str, Any], path: tuple[str, ...]) -> Any:
        return {**out, "submodules": children}

    return cast(StructureTree, _rebuild(trees, _merge_node, children_of, join))


def _merge_node(nodes: Sequence[Mapping[str, Any]], path: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for node in nodes:
        for kind, value in node.items():
            if kind == "submodules":
                continue
            if kind not in out:
                out[kind] = dict(value) if kind in _DICT_KINDS else value
            elif kind in _DICT_KINDS:
                clash = [k for k in value if k in out[kind] and out[kind][k] is not value[k]]
                if clash:
                    raise ValueError(
                        f"merge_trees: {describe_path(path)}: {kind} {clash} appear in more "
                        "than one tree; each leaf must come from exactly one part"
                    )
                out[kind].update(value)
            elif out[kind] is not value:
                raise ValueError(
                    f"merge_trees: {describe_path(path)}: two different {kind!r} values "
                    f"({out[kind]!r} and {value!r}); each kind must come from one part"
                )
    return out


def get_subtree(tree: StructureTree, path: Path) -> StructureTree:
    """The node at `path` (a tuple of names or `"a/b/c"`); the root for `()` or `""`."""
    node = tree
    names = as_path(path)
    for i, name in enumerate(names):
        children = node["submodules"]
        if name not in children:
            raise KeyError(
                f"no submodule {name!r} at {describe_path(names[:i])}; "
                f"it has {sorted(children) or 'no submodules'}"
            )
        node = children[name]
    return node


def set_subtree(tree: StructureTree, path: Path, subtree: StructureTree) -> StructureTree:
    """A copy of `tree` with the node at `path` replaced by (or set to) `subtree`.

    Only the nodes along `path` are copied; everything else is shared. The parent of
    `path` must exist; the last name may be new, which adds a submodule.
    """
    names = as_path(path)
    if not names:
        return subtree
    nodes = [tree]
    for i, name in enumerate(names[:-1]):
        children = nodes[-1]["submodules"]
        if name not in children:
            raise KeyError(
                f"no submodule {name!r} at {describe_path(names[:i])}; "
                f"it has {sorted(children) or 'no submodules'}"
            )
        nodes.append(children[name])
    new = subtree
    for name, parent in zip(reversed(names), reversed(nodes), strict=True):
        new = cast(StructureTree, {**parent, "submodules": {**parent["submodules"], name: new}})
    return new


def named_nodes(tree: StructureTree) -> list[tuple[tuple[str, ...], StructureTree]]:
    """Every node with its path, parents before children (like PyTorch's `named_modules`)."""
    out: list[tuple[tuple[str, ...], StructureTree]] = []
    stack: list[tuple[tuple[str, ...], StructureTree]] = [((), tree)]
    while stack:
        path, node = stack.pop()
        out.append((path, node))
        stack.extend(((*path, name), child) for name, child in reversed(node["submodules"].items()))
    return out


def numbered_children(tree: StructureTree, who: str) -> list[str]:
    """The submodule names of a node that runs its children in order (`Sequential`),
    sorted by number: `"0", "1", ..., "10"`.

    The order comes from the names, not from the dict, because JAX rebuilds dicts with
    sorted keys (`"10"` before `"2"`) whenever a tree passes through `jax.jit`,
    `jax.grad` or `hax.jit`. Gaps (after `hax.surgery.remove`) are fine.
    """
    names = list(tree["submodules"])
    bad = [n for n in names if not (n.isdecimal() and n.isascii())]
    if bad:
        raise ValueError(
            f"{who} runs its children in the order of their numeric names ('0', '1', ...), "
            f"but found {bad}; rename them to numbers (their order is not kept by JAX, "
            "which sorts dict keys)"
        )
    return sorted(names, key=int)


def named_leaves(
    tree: StructureTree, kinds: Sequence[StateKind] = STATE_KINDS
) -> list[tuple[str, Any]]:
    """Every array leaf with its full path, e.g. `("encoder/0/params/weight", array)`.

    Nodes come parents first; within a node, `kinds` (a sequence such as
    `["params"]`) in the order given and keys in pytree order. Nested pytrees inside a
    param add their keys: `"params/w/0"`.
    """
    if isinstance(kinds, str):  # a str is a sequence of letters, never what is meant
        raise TypeError(
            f"named_leaves: kinds is a sequence of kinds, such as [{kinds!r}]; found the "
            f"str {kinds!r}"
        )
    checked = _check_kinds(kinds, "named_leaves", STATE_KINDS)
    out: list[tuple[str, Any]] = []
    for path, node in named_nodes(tree):
        for kind in checked:
            entries = node["params"] if kind == "params" else node["buffers"]
            out.extend((str(a), leaf) for a, leaf in kind_leaves(path, kind, entries))
    return out
