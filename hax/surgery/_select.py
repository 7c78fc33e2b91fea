"""Selectors: naming one node or many, by path, glob, layer kind or predicate."""

import fnmatch
from collections.abc import Callable
from typing import Any, TypeAlias

from .._path import as_path
from .._tree import named_nodes
from .._types import StructureTree
from ..schema import spec_of
from ._selection import NodePath, Selection, missing_path_message, suggestions
from ._wrap import Wrapped, fn_name, unwrapped

Predicate: TypeAlias = Callable[[StructureTree, NodePath], bool]
"""`predicate(node, path) -> bool`: `node` is the full node (with its submodules)."""


Selector: TypeAlias = str | NodePath | Selection | list[str | NodePath] | Predicate
"""What names nodes: a path (`("a", "b")` or `"a/b"`), a glob string (`"blocks/*/attn"`,
`"**/fc"`), a `Selection` from `select`, a list of paths or globs (their union), or a
predicate `(node, path) -> bool`."""

_GLOB_CHARS = frozenset("*?[")


def kind_of(apply: Any) -> str:
    """The layer kind of an apply, for people: the kind of its registered spec
    (`"Linear"`), else its function name; a wrap is shown after the wrapped kind."""
    if isinstance(apply, Wrapped):
        return f"{kind_of(apply.inner)} [wrap: {fn_name(apply.fn)}]"
    inner = getattr(apply, "__hax_wraps__", None)
    if inner is not None:
        return f"{kind_of(inner)} [{type(apply).__name__}]"
    spec = spec_of(apply)
    if spec is not None:
        return spec.kind
    return str(getattr(apply, "__name__", None) or type(apply).__name__)


def _matches_kind(apply: Any, kind: Any) -> bool:
    """Whether a node's apply (or an apply it wraps) is `kind`, has a spec of that
    kind name, or has that function name."""
    name = kind if isinstance(kind, str) else getattr(kind, "__name__", None)
    for inner in unwrapped(apply):
        if inner is kind:
            return True
        spec = spec_of(inner)
        if name is not None and (
            (spec is not None and spec.kind == name) or getattr(inner, "__name__", None) == name
        ):
            return True
    return False


def _glob_parts(pattern: str) -> NodePath:
    stripped = pattern.strip("/")
    parts = tuple(stripped.split("/")) if stripped else ()
    if any(not p for p in parts):
        raise ValueError(f"invalid glob {pattern!r}: it has an empty name between two '/'")
    return parts


def _glob_match(parts: NodePath, names: NodePath) -> bool:
    if not parts:
        return not names
    head, rest = parts[0], parts[1:]
    if head == "**":
        return any(_glob_match(rest, names[i:]) for i in range(len(names) + 1))
    return bool(names) and fnmatch.fnmatchcase(names[0], head) and _glob_match(rest, names[1:])


def _is_glob(selector: Any) -> bool:
    return isinstance(selector, str) and not _GLOB_CHARS.isdisjoint(selector)


def _describe(selector: Any) -> str:
    if isinstance(selector, Selection):
        return selector.query
    if isinstance(selector, str | tuple):
        return repr(selector)
    if isinstance(selector, list):
        return f"[{', '.join(_describe(s) for s in selector)}]"
    return f"the predicate {fn_name(selector)}"


def _check_type(selector: Any, who: str) -> None:
    ok = isinstance(selector, str | tuple | Selection) or callable(selector)
    if isinstance(selector, list):
        ok = all(isinstance(s, str | tuple) for s in selector)
    if not ok:
        raise TypeError(
            f"{who}: a selector is a path ('a/b' or ('a', 'b')), a glob ('blocks/*/attn', "
            "'**/fc'), a list of those, hax.surgery.select(tree, kind=...), or a predicate "
            f"(node, path) -> bool; found {type(selector).__name__}"
        )


def _find(
    nodes: list[tuple[NodePath, StructureTree]], selector: Any, strict: str | None
) -> list[NodePath]:
    """The paths `selector` names, unordered. `strict` (the caller's name) makes a
    path that does not exist an error; otherwise it matches nothing."""
    if isinstance(selector, list):
        return [p for s in selector for p in _find(nodes, s, strict)]
    if isinstance(selector, Selection):
        return [p for s in selector.paths for p in _find(nodes, s, strict)]
    if callable(selector):
        return [path for path, node in nodes if selector(node, path)]
    if _is_glob(selector):
        parts = _glob_parts(selector)
        return [path for path, _ in nodes if _glob_match(parts, path)]
    path = as_path(selector)
    exists = any(p == path for p, _ in nodes)
    if not exists and strict is not None:
        raise KeyError(missing_path_message(nodes, path, strict))
    return [path] if exists else []


def _in_tree_order(
    nodes: list[tuple[NodePath, StructureTree]], found: list[NodePath]
) -> list[NodePath]:
    wanted = set(found)
    return [path for path, _ in nodes if path in wanted]


def paths(tree: StructureTree, selector: Selector) -> list[NodePath]:
    """The paths of the nodes `selector` matches, in tree order (parents first, as
    `hax.named_nodes`); an empty list when it matches nothing.

    **Example:** `hax.surgery.paths(tree, "blocks/*/attn")` ->
    `[("blocks", "0", "attn"), ("blocks", "1", "attn")]`; `"**"` lists every node.
    """
    _check_type(selector, "hax.surgery.paths")
    nodes = named_nodes(tree)
    return _in_tree_order(nodes, _find(nodes, selector, None))


def select(
    tree: StructureTree,
    pattern: str | NodePath | None = None,
    *,
    kind: Any = None,
    where: Predicate | None = None,
) -> Selection:
    """The nodes that match every criterion given, as a `Selection` to pass to an edit.

    **Arguments:**
    - `pattern`: a path or glob (`"blocks/*/attn"`; `*` is one name, `**` any depth).
    - `kind`: a layer kind: a constructor such as `hax.nn.Linear`, an apply function
      such as `hax.nn.linear_apply`, or a kind name such as `"Linear"`. A node
      matches when its apply (or an apply it wraps) is `kind` or carries a spec of
      that kind name (constructors of `hax.nn` share their layer's kind name), or
      has that function name. For layers without a spec, pass their apply function.
    - `where`: a predicate `(node, path) -> bool`.

    **Example:**
    `tree, config = hax.surgery.replace(tree, hax.surgery.select(tree, kind=nn.ReLU), nn.GELU())`
    """
    if kind is not None and not isinstance(kind, str) and not callable(kind):
        raise TypeError(
            "hax.surgery.select: kind must be a constructor (hax.nn.Linear), an apply "
            f"function (hax.nn.linear_apply) or a kind name ('Linear'), found {type(kind).__name__}"
        )
    nodes = named_nodes(tree)
    found = [path for path, _ in nodes]
    query = []
    if pattern is not None:
        _check_type(pattern, "hax.surgery.select")
        found = _find(nodes, pattern, None)
        query.append(repr(pattern))
    by_path = dict(nodes)
    if kind is not None:
        found = [p for p in found if _matches_kind(by_path[p]["apply"], kind)]
        query.append(f"kind={kind if isinstance(kind, str) else fn_name(kind)}")
    if where is not None:
        found = [p for p in found if where(by_path[p], p)]
        query.append(f"where={fn_name(where)}")
    return Selection(_in_tree_order(nodes, found), f"select({', '.join(query)})")


def match(tree: StructureTree, selector: Selector, who: str) -> Selection:
    """The `Selection` of the nodes `selector` matches, in tree order, for an edit
    named `who`: a path that does not exist, or a selector that matches nothing,
    raises `KeyError`."""
    _check_type(selector, who)
    nodes = named_nodes(tree)
    found = _in_tree_order(nodes, _find(nodes, selector, who))
    if not found:
        raise KeyError(_nothing_message(nodes, selector, who))
    return Selection(found, _describe(selector))


def _nothing_message(nodes: list[tuple[NodePath, StructureTree]], selector: Any, who: str) -> str:
    text = f"{who}: {_describe(selector)} matched no node"
    if isinstance(selector, Selection) and "kind=" in selector.query:
        kinds = sorted({kind_of(node["apply"]) for _, node in nodes})
        return f"{text}; the kinds in this tree are {kinds}"
    if _is_glob(selector):
        return text + suggestions(nodes, str(selector))
    return f"{text} among the tree's {len(nodes)} nodes" + suggestions(nodes, "")
