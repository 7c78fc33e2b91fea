"""`summary`: a table of a model's nodes, params and bytes, for people to read."""

import math
from collections.abc import Mapping
from typing import Any

from ._leaves import LeafAddress, entry_leaves
from ._path import describe_path
from ._tree import named_nodes
from ._types import GlobalConfig, StructureTree
from .surgery._freeze import FROZEN
from .surgery._select import kind_of

_AUX_WIDTH = 48


def _size(leaf: Any) -> int:
    return math.prod(getattr(leaf, "shape", ()))


def _itemsize(leaf: Any) -> int:
    return int(getattr(getattr(leaf, "dtype", None), "itemsize", 0))


def _fmt_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _leaves(entries: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The leaves of one node's params (or buffers), named from the entry on (`w/0`)."""
    return [
        (a.local, leaf)
        for name, value in entries.items()
        for a, leaf in entry_leaves(LeafAddress((), "params", name), value)
    ]


def _fmt_aux(aux: Mapping[str, Any]) -> str:
    """`aux` as `k=v, ...`, led by `frozen` when the node is frozen, cut to a width."""
    items = [f"{k}={v!r}" for k, v in aux.items() if k != FROZEN]
    text = ", ".join(["frozen", *items] if aux.get(FROZEN) is True else items)
    return text if len(text) <= _AUX_WIDTH else text[: _AUX_WIDTH - 3] + "..."


def _devices(leaf: Any) -> set[Any]:
    sharding = getattr(leaf, "sharding", None)
    return set(sharding.device_set) if sharding is not None else set()


def _sharding_text(leaf: Any) -> str:
    sharding = getattr(leaf, "sharding", None)
    if sharding is None:
        return "-"
    spec = getattr(sharding, "spec", None)
    if spec is not None:
        return "P" + str(tuple(spec)).replace(",)", ")")
    if len(sharding.device_set) == 1:
        return "one device"
    return "replicated" if sharding.is_fully_replicated else type(sharding).__name__


def _bytes_by_device(leaf: Any) -> dict[Any, int]:
    """How many bytes of `leaf` each device holds."""
    sharding = getattr(leaf, "sharding", None)
    if sharding is None:
        return {}
    out = {}
    for device, index in sharding.devices_indices_map(tuple(leaf.shape)).items():
        sizes = [len(range(*s.indices(d))) for s, d in zip(index, leaf.shape, strict=True)]
        out[device] = math.prod(sizes) * _itemsize(leaf)
    return out


def _table(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        parts = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def summary(tree: StructureTree, config: GlobalConfig | None = None) -> str:
    """A table of every node of `tree`, one row each, and the totals.

    Columns: the node's path (indented by depth; `<root>` for the root), its layer
    kind (the spec's kind, e.g. `Linear`, else the apply's name), its own params'
    shapes and element count, its buffers' element count and its `aux`. Below: total
    params and buffers with their bytes, and totals by dtype. When the arrays span
    several devices, two more columns give each node's sharding (`P('data', None)`
    for a `NamedSharding`) and the most bytes of it on one device. `config`, if
    given, is printed above the table.

    Reads only shapes, dtypes and shardings (never array values), so it works on
    abstract trees (`jax.ShapeDtypeStruct` leaves) too.

    **Example:** `print(hax.summary(tree, config))`
    """
    nodes = named_nodes(tree)
    all_leaves = [
        leaf
        for _, node in nodes
        for kind in ("params", "buffers")
        for _, leaf in _leaves(node[kind])
    ]
    sharded = len(set().union(*map(_devices, all_leaves))) > 1 if all_leaves else False
    header = ["path", "kind", "params", "#params", "#buffers", "aux"]
    if sharded:
        header += ["sharding", "per device"]
    rows = []
    by_dtype: dict[str, list[int]] = {}  # dtype -> [param elements, buffer elements, bytes]
    device_totals: dict[Any, int] = {}
    totals = {"params": [0, 0], "buffers": [0, 0]}  # kind -> [elements, bytes]
    for path, node in nodes:
        counts = {}
        node_devices: dict[Any, int] = {}
        shardings: dict[str, None] = {}
        for kind in ("params", "buffers"):
            leaves = _leaves(node[kind])
            counts[kind] = sum(_size(leaf) for _, leaf in leaves)
            for _, leaf in leaves:
                size, nbytes = _size(leaf), _size(leaf) * _itemsize(leaf)
                totals[kind][0] += size
                totals[kind][1] += nbytes
                entry = by_dtype.setdefault(str(getattr(leaf, "dtype", "?")), [0, 0, 0])
                entry[0 if kind == "params" else 1] += size
                entry[2] += nbytes
                if sharded:
                    shardings[_sharding_text(leaf)] = None
                    for device, n in _bytes_by_device(leaf).items():
                        node_devices[device] = node_devices.get(device, 0) + n
                        device_totals[device] = device_totals.get(device, 0) + n
        shapes = ", ".join(
            f"{name} {_fmt_shape(tuple(getattr(leaf, 'shape', ())))}"
            for name, leaf in _leaves(node["params"])
        )
        row = [
            "  " * len(path) + describe_path(path),
            kind_of(node["apply"]),
            shapes,
            f"{counts['params']:,}",
            f"{counts['buffers']:,}",
            _fmt_aux(node["aux"]),
        ]
        if sharded:
            heaviest = _fmt_bytes(max(node_devices.values())) if node_devices else ""
            row += [", ".join(shardings), heaviest]
        rows.append(row)
    lines = [f"global config: {config!r}"] if config is not None else []
    lines += _table(header, rows, right={3, 4, 7})
    lines.append("")
    for kind, (count, nbytes) in totals.items():
        lines.append(f"total {kind}: {count:,} ({nbytes:,} bytes, {_fmt_bytes(nbytes)})")
    for dtype, (n_params, n_buffers, nbytes) in sorted(by_dtype.items()):
        lines.append(
            f"  {dtype}: {n_params:,} params, {n_buffers:,} buffer elements, {_fmt_bytes(nbytes)}"
        )
    if sharded:
        most = max(device_totals.values(), default=0)
        lines.append(f"most bytes on one device: {most:,} ({_fmt_bytes(most)})")
    return "\n".join(lines)
