"""Matching leaves by name, shape and dtype, and `TransferReport`, which says what
matched. `hax.surgery.transfer` and `hax.checkpoint.load(..., strict=False)` return one.

Leaves are named as in `hax.named_leaves`: a bound state's key (`"5/params/weight"`),
followed by the keys inside a pytree-valued entry (`"5/params/w/0"`).
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax

from . import _leaves as leaves

LeafSpec = tuple[tuple[int, ...], str]
"""A leaf's `(shape, dtype name)`, e.g. `((8, 4), "float32")` or `((), "key<fry>")`."""

FIELDS = ("copied", "missing", "unused", "mismatched")


@dataclass(frozen=True)
class TransferEntry:
    """One leaf of a `TransferReport`.

    - `path`: the leaf's name on the destination side, e.g. `"5/params/weight"`. For an
      `unused` leaf it is the name the leaf had after renaming (or its source name if
      a rename dropped it).
    - `src_path`: the leaf's name in the source when a rename changed it, else `None`.
    - `src_shape`, `src_dtype`: the source leaf's shape and dtype name (`None` for a
      `missing` leaf).
    - `dst_shape`, `dst_dtype`: the destination leaf's (`None` for an `unused` leaf).
    """

    path: str
    src_path: str | None = None
    src_shape: tuple[int, ...] | None = None
    src_dtype: str | None = None
    dst_shape: tuple[int, ...] | None = None
    dst_dtype: str | None = None


@dataclass(frozen=True)
class TransferReport:
    """What happened to every leaf when leaves were matched by name, shape and dtype.

    - `copied`: the destination leaf now holds the source leaf, bit for bit.
    - `missing`: in the destination, absent from the source (the leaf kept its value).
    - `unused`: in the source, absent from the destination.
    - `mismatched`: the same name on both sides but a different shape or dtype (the
      destination leaf kept its value).

    `str(report)` is an aligned table with one section per non-empty field.
    """

    copied: list[TransferEntry] = field(default_factory=list)
    missing: list[TransferEntry] = field(default_factory=list)
    unused: list[TransferEntry] = field(default_factory=list)
    mismatched: list[TransferEntry] = field(default_factory=list)

    def __str__(self) -> str:
        return format_report(self, "src", "dst", FIELDS)


def leaf_spec(leaf: Any, name: str) -> LeafSpec:
    """`(shape, dtype name)` of an array leaf (or of anything with `.shape` and `.dtype`,
    such as `jax.ShapeDtypeStruct`)."""
    shape, dtype = getattr(leaf, "shape", None), getattr(leaf, "dtype", None)
    if shape is None or dtype is None:
        raise TypeError(
            f"{name}: expected an array, found a {type(leaf).__name__}; params and buffers "
            "hold arrays (use jnp.asarray for Python numbers)"
        )
    return tuple(int(d) for d in shape), str(dtype)


def match_leaves(
    src: Iterable[tuple[str, str | None, LeafSpec]], dst: Mapping[str, LeafSpec]
) -> TransferReport:
    """Match leaves by name, then by shape and dtype.

    **Arguments:**
    - `src`: `(source name, destination name or None, spec)` per source leaf, in order;
      `None` means a rename dropped the leaf.
    - `dst`: destination name -> spec, in order.

    Two source leaves with the same destination name raise `ValueError`.
    """
    by_target: dict[str, tuple[str, LeafSpec]] = {}
    unused: list[TransferEntry] = []
    for name, target, spec in src:
        renamed = None if target == name else name
        if target is None:
            unused.append(TransferEntry(name, None, *spec))
        elif target in by_target:
            raise ValueError(
                f"the source leaves {by_target[target][0]!r} and {name!r} are both renamed to "
                f"{target!r}; make the rename map them to different names (or drop one)"
            )
        else:
            by_target[target] = (name, spec)
            if target not in dst:
                unused.append(TransferEntry(target, renamed, *spec))
    copied: list[TransferEntry] = []
    missing: list[TransferEntry] = []
    mismatched: list[TransferEntry] = []
    for target, dst_spec in dst.items():
        if target not in by_target:
            missing.append(TransferEntry(target, None, None, None, *dst_spec))
            continue
        name, src_spec = by_target[target]
        entry = TransferEntry(target, None if name == target else name, *src_spec, *dst_spec)
        (copied if src_spec == dst_spec else mismatched).append(entry)
    return TransferReport(copied, missing, unused, mismatched)


def _spec_str(shape: tuple[int, ...] | None, dtype: str | None) -> str:
    return f"{shape} {dtype}"


def _rows(kind: str, entries: Sequence[TransferEntry], src: str, dst: str) -> list[list[str]]:
    rows = []
    for e in entries:
        name = e.path if e.src_path is None else f"{e.path} <- {e.src_path}"
        if kind == "mismatched":
            cells = [
                f"{src} {_spec_str(e.src_shape, e.src_dtype)}",
                f"{dst} {_spec_str(e.dst_shape, e.dst_dtype)}",
            ]
        elif kind == "unused":
            cells = [f"{src} {_spec_str(e.src_shape, e.src_dtype)}"]
        elif kind == "missing":
            cells = [f"{dst} {_spec_str(e.dst_shape, e.dst_dtype)}"]
        else:
            cells = [_spec_str(e.dst_shape, e.dst_dtype)]
        rows.append([name, *cells])
    return rows


def format_report(report: TransferReport, src: str, dst: str, fields: Sequence[str]) -> str:
    """A count line and an aligned table per non-empty field among `fields`; `src` and
    `dst` label the two sides (e.g. `"file"` and `"like"`)."""
    counts = ", ".join(f"{len(getattr(report, f))} {f}" for f in FIELDS)
    lines = [f"TransferReport: {counts}"]
    for kind in fields:
        entries = getattr(report, kind)
        if not entries:
            continue
        lines.append(f"  {kind} ({len(entries)}):")
        rows = _rows(kind, entries, src, dst)
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            cells = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=False)]
            lines.append("    " + "  ".join([*cells, row[-1]]))
    return "\n".join(lines)


def state_leaves(state: Mapping[str, Any], who: str) -> list[tuple[str, Any]]:
    """Every leaf of a bound state with its name, in order (see `hax._leaves`)."""
    return [(str(address), leaf) for address, leaf in leaves.state_leaves(state, who)]


def replace_state_leaves(state: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `state` whose leaves named in `new` hold the given values; every
    other leaf and every untouched entry is shared."""
    out = dict(state)
    for key, value in state.items():
        named = leaves.entry_leaves(leaves.LeafAddress.parse_entry(key), value)
        if any(str(address) in new for address, _ in named):
            treedef = jax.tree_util.tree_structure(value)
            out[key] = jax.tree_util.tree_unflatten(
                treedef, [new.get(str(address), x) for address, x in named]
            )
    return out
