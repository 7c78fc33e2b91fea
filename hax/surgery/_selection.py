"""`Selection`: the paths a selector matched, and the one way surgery reads and
rewrites the nodes at those paths."""

import difflib
from collections.abc import Callable, Iterator, Sequence
from typing import Literal, TypeAlias, overload

from .._path import describe_path, path_str
from .._tree import named_nodes
from .._types import StructureTree

NodePath: TypeAlias = tuple[str, ...]
NodeFn: TypeAlias = Callable[[StructureTree, NodePath], StructureTree]
"""`fn(node, path) -> new_node`, called once per edited node."""
Order: TypeAlias = Literal["outermost", "deepest_first"]


class Selection(Sequence[NodePath]):
    """The paths `select` found (a sequence of path tuples, in tree order) and the
    query that found them, so that an edit matching nothing can say what was asked.

    Pass it wherever a path is accepted: `hax.surgery.replace(tree, sel, ...)`. It
    also reads and rewrites those nodes of a tree: `get`, `set`, and `outermost`
    and `parents` to derive other selections. Every edit of `hax.surgery` is one
    `set` of the selection its selector matches.
    """

    __slots__ = ("paths", "query")

    def __init__(self, paths: Sequence[NodePath], query: str) -> None:
        self.paths: tuple[NodePath, ...] = tuple(paths)
        self.query: str = query

    @overload
    def __getitem__(self, index: int) -> NodePath: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[NodePath]: ...

    def __getitem__(self, index: int | slice) -> NodePath | Sequence[NodePath]:
        return self.paths[index]

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[NodePath]:
        return iter(self.paths)

    def __repr__(self) -> str:
        return f"{self.query} -> {[describe_path(p) for p in self.paths]}"

    def get(self, tree: StructureTree) -> list[StructureTree]:
        """The node of `tree` at each path, in the selection's order (the nodes
        themselves, not copies). A path `tree` lacks raises `KeyError` naming what
        exists there."""
        nodes = []
        for path in self.paths:
            node = tree
            for name in path:
                if name not in node["submodules"]:
                    raise _no_node(tree, path, "hax.surgery.Selection.get")
                node = node["submodules"][name]
            nodes.append(node)
        return nodes

    def set(self, tree: StructureTree, fn: NodeFn, *, order: Order = "outermost") -> StructureTree:
        """A new tree in which the node at each path is `fn(node, path)`.

        **Arguments:**
        - `tree`: the tree to edit; it is not mutated.
        - `fn`: `fn(node, path) -> new_node`, called once per edited path; it must
          not mutate `node`.
        - `order`: which matches `fn` sees when one lies inside another.
            - `"outermost"` (replace, freeze): a match inside another goes
              with its ancestor; `fn` gets the original node, in tree order.
            - `"deepest_first"` (insert, wrap): every match is edited, children
              before parents, so `fn` gets a node whose matched descendants are
              already edited and whose paths below it may have changed.

        Only the nodes on the paths from the root to the edited ones are copied;
        every other node (and every array) is shared with `tree`. A path `tree`
        lacks raises `KeyError` naming what exists there.
        """
        if order not in ("outermost", "deepest_first"):
            raise ValueError(
                f"Selection.set: order must be 'outermost' or 'deepest_first', found {order!r}"
            )
        deepest_first = order == "deepest_first"

        def rebuild(node: StructureTree, path: NodePath, below: list[NodePath]) -> StructureTree:
            # `below`: the selected paths at or under `path`, grouped by the next name.
            depth = len(path)
            here = False
            routes: dict[str, list[NodePath]] = {}
            for p in below:
                if len(p) == depth:
                    here = True
                else:
                    routes.setdefault(p[depth], []).append(p)
            if here and not deepest_first:
                return fn(node, path)
            children = node["submodules"]
            for name, through in routes.items():
                if name not in children:
                    raise _no_node(tree, through[0], "hax.surgery.Selection.set")
            # Reversed sibling order makes "deepest_first" the reverse of tree order.
            visit = list(reversed(routes)) if deepest_first else list(routes)
            edited = {name: rebuild(children[name], (*path, name), routes[name]) for name in visit}
            new_node: StructureTree = {**node, "submodules": {**children, **edited}}
            return fn(new_node, path) if here else new_node

        return rebuild(tree, (), list(self.paths)) if self.paths else tree

    def outermost(self) -> "Selection":
        """The same selection without the paths that lie inside another of its paths."""
        chosen = set(self.paths)
        outer = [p for p in self.paths if not any(p[:i] in chosen for i in range(len(p)))]
        return Selection(outer, self.query)

    def parents(self) -> "Selection":
        """The parent of each path, in the same order (a parent shared by several
        paths is listed for each; `set` edits it once). The root has no parent:
        selecting it raises `ValueError`."""
        if () in self.paths:
            raise ValueError(f"Selection.parents: the root has no parent; {self!r}")
        return Selection([p[:-1] for p in self.paths], f"parents of {self.query}")


def _no_node(tree: StructureTree, path: NodePath, who: str) -> KeyError:
    return KeyError(missing_path_message(named_nodes(tree), path, who))


def missing_path_message(
    nodes: list[tuple[NodePath, StructureTree]], path: NodePath, who: str
) -> str:
    """Why `path` names none of `nodes` (a tree's `named_nodes`): the deepest node on
    the way that exists, its submodules, and the nearest paths that do exist."""
    by_path = dict(nodes)
    depth = 0
    while depth < len(path) and path[: depth + 1] in by_path:
        depth += 1
    parent = path[:depth]
    children = list(by_path[parent]["submodules"])
    listed = f"submodules {children[:20]}{' ...' if len(children) > 20 else ''}"
    where = repr(path_str(parent)) if parent else "<root>"
    text = (
        f"{who}: no node at {path_str(path)!r}: {where} has "
        f"{listed if children else 'no submodules'}"
    )
    return text + suggestions(nodes, path_str(path))


def suggestions(nodes: list[tuple[NodePath, StructureTree]], text: str) -> str:
    """Up to three paths of `nodes` close to `text`, and where to list them all."""
    close = difflib.get_close_matches(text, [path_str(p) for p, _ in nodes if p], n=3)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return hint + " (hax.surgery.paths(tree, '**') lists every path)"
