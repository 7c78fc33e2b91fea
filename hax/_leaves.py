"""Leaf addresses: where each array of a structure tree lives, and its one string form.

A leaf is named by its node's path, its kind (`params` or `buffers`), the entry's
name, and, inside a pytree-valued entry, the keys down to the leaf:
`LeafAddress(("encoder", "0"), "params", "weight")` is `"encoder/0/params/weight"`,
and the second leaf of a list-valued param `w` is `"params/w/1"`. The part up to the
entry (`"encoder/0/params/weight"`) is the key of `hax.bind_module`'s flat state.

Binding, `named_leaves`, trainable masks, sharding rules, summaries, transfers,
checkpoints and PyTorch interop all name leaves through this module. Names are
non-empty and contain no `/`, so a name splits back into its parts; `hax.validate`
reports the names that would not (`name_problems`).
"""

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax

from ._types import STATE_KINDS


def segment(key: Any) -> str:
    """One step of a jax key path (`DictKey`, `SequenceKey`, `GetAttrKey`, ...) as the
    string it contributes to a leaf name."""
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def keys_str(key_path: Sequence[Any]) -> str:
    """A jax key path as the `"a/0/b"` it adds to a leaf name."""
    return "/".join(map(segment, key_path))


@dataclass(frozen=True)
class LeafAddress:
    """Where a leaf lives: node `path`, `kind`, entry `name`, and the `keys` inside a
    pytree-valued entry (`()` when the entry is one array)."""

    path: tuple[str, ...]
    kind: str
    name: str
    keys: tuple[str, ...] = ()

    @property
    def entry(self) -> str:
        """The entry's name: a key of `hax.bind_module`'s state (`"a/b/params/w"`)."""
        return "/".join((*self.path, self.kind, self.name))

    def __str__(self) -> str:
        return "/".join((*self.path, self.kind, self.name, *self.keys))

    @property
    def local(self) -> str:
        """The name within its node's kind: `"weight"`, or `"w/0"` inside a pytree."""
        return "/".join((self.name, *self.keys))

    @property
    def dotted(self) -> str:
        """PyTorch's name for the leaf (a `state_dict` key): path, entry name and keys
        joined by dots, without the kind: `"layer1.0.conv1.weight"`."""
        return ".".join((*self.path, self.name, *self.keys))

    def child(self, key: Any) -> "LeafAddress":
        """The address one pytree step below this one (`key` a jax key-path entry or
        a plain dict key / sequence index)."""
        return LeafAddress(self.path, self.kind, self.name, (*self.keys, segment(key)))

    @classmethod
    def parse_entry(cls, key: str) -> "LeafAddress":
        """The address of a bound-state key (`"a/b/params/w"`): the kind is the
        second-to-last name (a node may itself be called `params`). Raises
        `ValueError` for anything else."""
        parts = key.split("/") if isinstance(key, str) else []
        if len(parts) < 2 or parts[-2] not in STATE_KINDS or not all(parts):
            raise ValueError(
                f"{key!r} is not the name of a params or buffers entry, such as "
                "'0/params/weight' (node path, kind, entry name)"
            )
        return cls(tuple(parts[:-2]), parts[-2], parts[-1])

    @classmethod
    def parse(cls, name: str, tree: Mapping[str, Any]) -> "LeafAddress":
        """The address of the leaf of `tree` called `name` (`str(address)` inverted).

        A name alone does not say where the node path ends when a node is called
        `params` or `buffers`, so the tree decides; `hax.validate` guarantees that a
        valid tree has one leaf per name. Raises `KeyError` when no leaf has the name."""
        parts = name.split("/") if isinstance(name, str) else []
        node: Any = tree
        for i, part in enumerate(parts):
            if part in STATE_KINDS and i + 1 < len(parts):
                entries = node.get(part, {}) if isinstance(node, Mapping) else {}
                if parts[i + 1] in entries:
                    address = cls(tuple(parts[:i]), part, parts[i + 1], tuple(parts[i + 2 :]))
                    named = entry_leaves(
                        cls(address.path, part, address.name), entries[address.name]
                    )
                    if any(a == address for a, _ in named):
                        return address
            children = node.get("submodules", {}) if isinstance(node, Mapping) else {}
            if part not in children:
                break
            node = children[part]
        raise KeyError(f"no leaf named {name!r} in this tree (hax.named_leaves lists them)")


def entry_leaves(address: LeafAddress, value: Any) -> list[tuple[LeafAddress, Any]]:
    """The leaves of one entry's value (an array or a pytree of arrays), in jax's order."""
    flat, _ = jax.tree_util.tree_flatten_with_path(value)
    out = []
    for key_path, leaf in flat:
        keys = tuple(map(segment, key_path))
        out.append((LeafAddress(address.path, address.kind, address.name, keys), leaf))
    return out


def kind_leaves(
    path: tuple[str, ...], kind: str, entries: Mapping[str, Any]
) -> list[tuple[LeafAddress, Any]]:
    """Every leaf of one node's `params` or `buffers`, in jax's order (sorted entries)."""
    flat, _ = jax.tree_util.tree_flatten_with_path(entries)
    out = []
    for key_path, leaf in flat:
        name, *keys = map(segment, key_path)
        out.append((LeafAddress(path, kind, name, tuple(keys)), leaf))
    return out


def node_entries(
    path: tuple[str, ...], node: Mapping[str, Any], kinds: Sequence[str] = STATE_KINDS
) -> Iterator[tuple[LeafAddress, Any]]:
    """The entries of one node, kinds in the order given, each with its address."""
    for kind in kinds:
        for name, value in node[kind].items():
            yield LeafAddress(path, kind, name), value


def state_leaves(state: Mapping[str, Any], who: str) -> list[tuple[LeafAddress, Any]]:
    """Every leaf of a bound state (`hax.bind_module`'s flat dict) with its address, in
    order. Two leaves with one name raise `ValueError`."""
    out: list[tuple[LeafAddress, Any]] = []
    seen: set[str] = set()
    for key, value in state.items():
        for address, leaf in entry_leaves(LeafAddress.parse_entry(key), value):
            claim(str(address), seen, who)
            out.append((address, leaf))
    return out


def claim(name: str, seen: set[str], who: str) -> None:
    """Add a leaf (or entry) name to `seen`; a name already there raises `ValueError`:
    two leaves with one name could not be told apart in a state or a file."""
    if name in seen:
        raise ValueError(
            f"{who}: two leaves are named {name!r} (a param or dict key containing '/', or "
            "an int and a str key with the same digits); rename one so that names are unique"
        )
    seen.add(name)


def name_problems(node: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """`(key, found, expected)` for each name in one node that would not give a unique,
    parseable leaf name: an entry name or a dict key inside an entry's pytree that is
    empty or contains `/`, two keys of one dict with the same string form (`1` and
    `"1"`), or a child called `params`/`buffers` whose leaf names would equal some of
    this node's own."""
    from .schema._errors import safe_repr  # hax.schema's package imports this module

    problems = []
    for kind in STATE_KINDS:
        entries = node.get(kind)
        if type(entries) is not dict:
            continue
        for name, value in entries.items():
            if type(name) is not str:
                continue  # not a name at all: the node schema reports it
            if not _is_name(name):
                text = safe_repr(name)
                problems.append((f"{kind}.{text}", f"the name {text}", _NAME))
                continue
            problems.extend(pytree_key_problems(f"{kind}.{name}", value))
    children = node.get("submodules")
    if type(children) is dict:
        for kind in STATE_KINDS:
            child = children.get(kind)
            if isinstance(child, Mapping):
                problems.extend(_shadow_problems(node, kind, child))
    return problems


_NAME = "a non-empty name without '/' (leaf names are 'path/kind/name/...')"


def _is_name(name: Any) -> bool:
    return type(name) is str and bool(name) and "/" not in name


def pytree_key_problems(where: str, value: Any) -> list[tuple[str, str, str]]:
    """`(key, found, expected)` for the dict keys inside an entry's pytree that would not
    give unique leaf names (checked without recursion, at every depth)."""
    from .schema._errors import safe_repr  # hax.schema's package imports this module

    problems = []
    visited: set[int] = set()  # containers already read: a cycle or a shared part is read once
    stack = [(where, value)]
    while stack:
        here, item = stack.pop()
        if type(item) not in (dict, list, tuple) or id(item) in visited:
            continue
        visited.add(id(item))
        if type(item) is not dict:
            stack.extend((f"{here}.{i}", v) for i, v in enumerate(item))
            continue
        seen: dict[str, str] = {}
        for k, v in item.items():
            shown = safe_repr(k)
            try:
                text = str(k)
            except Exception:
                problems.append((f"{here}[{shown}]", f"the key {shown}", _NAME))
                continue
            if not text or "/" in text:
                problems.append((f"{here}[{shown}]", f"the key {shown}", _NAME))
            elif text in seen:
                found = f"keys {seen[text]} and {shown}"
                problems.append((f"{here}[{shown}]", found, "keys with distinct names"))
            seen.setdefault(text, shown)
            stack.append((f"{here}.{text}", v))
    return problems


def _shadow_problems(
    node: Mapping[str, Any], kind: str, child: Mapping[str, Any]
) -> list[tuple[str, str, str]]:
    """A child named like a kind shares the prefix `kind/` with this node's own entries of
    that kind; report the leaf names both would give."""
    entries = node.get(kind)
    if type(entries) is not dict or not entries:
        return []
    own = {
        str(a)
        for name, value in entries.items()
        if _is_name(name)
        for a, _ in entry_leaves(LeafAddress((), kind, name), value)
    }
    clashes = []
    for inner in STATE_KINDS:
        values = child.get(inner)
        if type(values) is not dict:
            continue
        for name, value in values.items():
            if not _is_name(name):
                continue
            for a, _ in entry_leaves(LeafAddress((kind,), inner, name), value):
                if str(a) in own:
                    clashes.append(str(a))
    if not clashes:
        return []
    return [
        (
            f"submodules.{kind}",
            f"leaf names {sorted(clashes)} given both by this node's {kind} and by its child "
            f"{kind!r}",
            "unique leaf names (rename the child or the entry)",
        )
    ]
