"""Tied params: one leaf read in two places (an embedding and the output head)."""

from collections.abc import Iterator, Mapping
from typing import Any

from .._leaves import LeafAddress
from .._tree import get_subtree, named_nodes, set_subtree
from .._types import ApplyFn, GlobalConfig, StructureTree
from .._validate import validate
from ._wrap import WrapperApply, fn_name, unwrapped

TIED = "tied"
"""The `aux` key listing a node's entries that another node holds (`("weight",)`): the
node's spec does not require them, since a tie lends them at every call."""

Tie = tuple[LeafAddress, LeafAddress]
"""`(destination, source)` entry addresses, relative to the node whose apply ties them."""


def _get(tree: StructureTree, address: LeafAddress) -> Any:
    return get_subtree(tree, address.path)[address.kind][address.name]  # type: ignore[literal-required]  # kind is params or buffers


def _set(tree: StructureTree, address: LeafAddress, value: Any) -> StructureTree:
    node = get_subtree(tree, address.path)
    entries = {**node[address.kind], address.name: value}  # type: ignore[literal-required]  # as above
    return set_subtree(tree, address.path, {**node, address.kind: entries})  # type: ignore[misc]  # as above


def _drop(tree: StructureTree, address: LeafAddress) -> StructureTree:
    node = get_subtree(tree, address.path)
    entries = {k: v for k, v in node[address.kind].items() if k != address.name}  # type: ignore[literal-required]  # as above
    return set_subtree(tree, address.path, {**node, address.kind: entries})  # type: ignore[misc]  # as above


class Tied(WrapperApply):
    """The apply of a node below which some entries are tied: for each call, every
    destination entry is lent its source's array, the wrapped apply runs, and the lent
    copies are dropped from the result. So the tree holds each tied array once (one
    leaf in the state, one gradient: the uses add up), and each layer still finds its
    weight where it expects it.

    Compared by value (its `inner` apply and its ties), so `hax.jit` does not retrace
    a rebuilt tie. Surgery, `select(kind=...)` and `validate` see through it."""

    __slots__ = ("__weakref__", "inner", "ties")

    def __init__(self, inner: ApplyFn, ties: tuple[Tie, ...]) -> None:
        self.inner: ApplyFn = inner
        self.ties: tuple[Tie, ...] = ties

    def __call__(
        self, tree: StructureTree, global_config: GlobalConfig, /, *args: Any, **kwargs: Any
    ) -> tuple[StructureTree, Any]:
        lent = tree
        for dst, src in self.ties:
            lent = _set(lent, dst, _get(tree, src))
        new_tree, out = self.inner(lent, global_config, *args, **kwargs)
        for dst, _ in self.ties:
            new_tree = _drop(new_tree, dst)
        return self.owned(new_tree), out

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Tied) and self.ties == other.ties and bool(self.inner == other.inner)
        )

    def __hash__(self) -> int:
        return hash((Tied, self.ties, self.inner))

    def __repr__(self) -> str:
        pairs = ", ".join(f"{dst.entry} <- {src.entry}" for dst, src in self.ties)
        return f"Tied({fn_name(self.inner)}, {pairs})"


def tie(tree: StructureTree, ties: Mapping[str, str]) -> StructureTree:
    """Make each destination entry read its source: `{"lm_head/params/weight":
    "embed/params/weight"}` removes the head's own weight and lends it the
    embedding's at every call (weight tying, as `torch` shares one `Parameter`).

    The node holding a destination lists it in `aux["tied"]`; the lowest node above
    both ends runs them through a `Tied` apply. `hax.interop.to_torch` writes a tied
    array under every torch name, and `summary`, checkpoints and optimizers see it
    once. Returns a new tree (validated).
    """
    new = tree
    for dst_name, src_name in ties.items():
        dst, src = LeafAddress.parse_entry(dst_name), LeafAddress.parse_entry(src_name)
        if dst.kind != src.kind:
            raise ValueError(f"hax.surgery.tie: {dst_name} and {src_name} are of different kinds")
        _get(new, src)  # the source must exist: KeyError names what is there
        owner = get_subtree(new, dst.path)
        aux: dict[str, Any] = owner["aux"]
        listed = aux.get(TIED, ())
        new = _drop(
            set_subtree(new, dst.path, {**owner, "aux": {**aux, TIED: (*listed, dst.name)}}), dst
        )
        depth = 0
        while depth < min(len(dst.path), len(src.path)) and dst.path[depth] == src.path[depth]:
            depth += 1
        top = dst.path[:depth]
        pair = (
            LeafAddress(dst.path[depth:], dst.kind, dst.name),
            LeafAddress(src.path[depth:], src.kind, src.name),
        )
        node = get_subtree(new, top)
        apply = node["apply"]
        if isinstance(apply, Tied):
            apply = Tied(apply.inner, (*apply.ties, pair))
        else:
            apply = Tied(apply, (pair,))
        new = set_subtree(new, top, {**node, "apply": apply})
    return validate(new)


def tied_entries(tree: StructureTree) -> Iterator[tuple[LeafAddress, LeafAddress]]:
    """Every tie in `tree` as absolute `(destination, source)` entry addresses."""
    for path, node in named_nodes(tree):
        for apply in unwrapped(node["apply"]):
            if isinstance(apply, Tied):
                for dst, src in apply.ties:
                    yield (
                        LeafAddress((*path, *dst.path), dst.kind, dst.name),
                        LeafAddress((*path, *src.path), src.kind, src.name),
                    )
