"""Shardings for a structure tree, from rules on the layers' named dimensions."""

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .._leaves import node_entries
from .._path import describe_path
from .._tree import named_nodes
from .._types import StructureTree
from ..schema import ArraySpec, spec_of

Axis: TypeAlias = str | tuple[str, ...] | None
"""Where one array dimension goes: a mesh axis name, several (sharded over their
product), or None (replicated)."""

Rules: TypeAlias = Mapping[str, Axis]
"""Dimension name (as in the layers' shape specs, e.g. `"out_features"`) -> mesh axis."""

Overrides: TypeAlias = Mapping[str, Rules] | Sequence[tuple[Any, Rules]]
"""Per-node rules that take precedence over the global ones: `{selector: rules}` or
`[(selector, rules), ...]`, where a selector is anything `hax.surgery.paths` accepts
(a path, a glob such as `"**/linear1"`, `select(tree, kind=...)`, a predicate).
Later entries win where several match a node."""


class ShardingError(ValueError):
    """Rules that cannot be applied; `problems` lists each offending path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems: list[str] = list(problems)
        n = len(problems)
        lines = [f"{n} sharding problem{'s' if n != 1 else ''}:", *(f"  {p}" for p in problems)]
        super().__init__("\n".join(lines))


def _axes(axis: Axis) -> tuple[str, ...]:
    if axis is None:
        return ()
    return (axis,) if isinstance(axis, str) else tuple(axis)


def _dim_names(aspec: ArraySpec | None, ndim: int) -> list[str | None]:
    """The name of each of `ndim` dimensions under `aspec`: a named dim's name, a
    symbolic dim's expression as spelled in the spec (`"3*embed_dim"`), else None."""
    if aspec is None:
        return [None] * ndim
    names: list[str | None] = []
    for dim in aspec.dims:
        if dim.kind == "variadic":
            names.extend([None] * (ndim - (len(aspec.dims) - 1)))
        else:
            names.append(
                dim.name if dim.kind == "named" else dim.expr if dim.kind == "symbolic" else None
            )
    return names if len(names) == ndim else [None] * ndim


def _leaf_spec(
    where: str,
    shape: tuple[int, ...],
    names: list[str | None],
    rules: Rules,
    mesh: Mesh,
    used: set[str],
    problems: list[str],
    unknown_axes: dict[tuple[str, str], list[str]],
) -> PartitionSpec:
    entries: list[Axis] = []
    taken: dict[str, str] = {}
    for i, (size, name) in enumerate(zip(shape, names, strict=True)):
        axis = rules.get(name) if name is not None else None
        if name is not None and name in rules:
            used.add(name)
        axes = _axes(axis)
        unknown = [a for a in axes if a not in mesh.shape]
        if unknown:
            unknown_axes.setdefault((str(name), unknown[0]), []).append(where)
            entries.append(None)
            continue
        for a in axes:
            if a in taken:
                problems.append(
                    f"{where}: mesh axis {a!r} shards both dimension {taken[a]!r} and {name!r}; "
                    "an axis can shard one dimension of an array"
                )
            taken[a] = str(name)
        parts = 1
        for a in axes:
            parts *= mesh.shape[a]
        if size % parts:
            problems.append(
                f"{where}: dimension {i} ({name}={size}) does not divide evenly over mesh axis "
                f"{axis!r} of size {parts}; change the rule or the layer size"
            )
            entries.append(None)
            continue
        entries.append(axis)
    while entries and entries[-1] is None:
        entries.pop()
    return PartitionSpec(*entries)  # type: ignore[no-untyped-call]  # untyped in jax


def _value_specs(
    value: Any,
    key: str,
    aspec: ArraySpec | None,
    rules: Rules,
    mesh: Mesh,
    found: set[str],
    problems: list[str],
    unknown_axes: dict[tuple[str, str], list[str]],
) -> Any:
    """The `PartitionSpec` of each array in one param or buffer (a pytree)."""

    def leaf(x: Any) -> PartitionSpec:
        shape = tuple(getattr(x, "shape", ()))
        names = _dim_names(aspec, len(shape))
        return _leaf_spec(key, shape, names, rules, mesh, found, problems, unknown_axes)

    return jax.tree.map(leaf, value)


def _node_overrides(
    tree: StructureTree, overrides: Overrides | None, problems: list[str]
) -> tuple[dict[tuple[str, ...], dict[str, Axis]], list[tuple[str, set[tuple[str, ...]]]]]:
    """`path -> rules` from the overrides, and for each override rule name the paths
    it applies to (to report names that match no dimension there)."""
    from ..surgery import paths as select_paths

    pairs = list(overrides.items()) if isinstance(overrides, Mapping) else list(overrides or ())
    by_path: dict[tuple[str, ...], dict[str, Axis]] = {}
    names: list[tuple[str, set[tuple[str, ...]]]] = []
    for selector, local in pairs:
        matched = select_paths(tree, selector)
        if not matched:
            problems.append(f"override {selector!r}: matches no node of the tree")
            continue
        for path in matched:
            by_path.setdefault(path, {}).update(local)
        names.extend((name, set(matched)) for name in local)
    return by_path, names


def partition_specs(
    tree: StructureTree,
    mesh: Mesh,
    rules: Rules,
    *,
    overrides: Overrides | None = None,
    check_unused: bool = True,
) -> dict[str, Any]:
    """A `PartitionSpec` for every param and buffer of `tree`, keyed like the state of
    `hax.bind_module` (`"0/params/weight"`; a pytree-valued param gets a pytree).

    Each array dimension named in its layer's shape spec (`Linear.weight` is
    `"out_features in_features"`, `MultiheadAttention.in_proj_weight` is
    `"3*embed_dim embed_dim"`) is sharded over the mesh axis that `rules` maps its
    name to, or that `overrides` map it to for that node; other dimensions are
    replicated. Every problem is collected first and raised as one `ShardingError`:
    a dimension that does not divide evenly, an unknown mesh axis, one axis used
    twice in an array, an override that matches no node, and (with `check_unused`)
    a rule whose name matches no dimension.
    """
    problems: list[str] = []
    unknown_axes: dict[tuple[str, str], list[str]] = {}
    local_rules, override_names = _node_overrides(tree, overrides, problems)
    used: set[str] = set()
    used_at: set[tuple[str, tuple[str, ...]]] = set()
    out: dict[str, Any] = {}
    for path, node in named_nodes(tree):
        spec = spec_of(node["apply"])
        here: Rules = {**rules, **local_rules[path]} if path in local_rules else rules
        found: set[str] = set()
        for address, value in node_entries(path, node):
            declared = getattr(spec, address.kind, {}) if spec is not None else {}
            key = address.entry
            out[key] = _value_specs(
                value, key, declared.get(address.name), here, mesh, found, problems, unknown_axes
            )
        used |= found
        used_at |= {(name, path) for name in found}
    for (name, axis), where in unknown_axes.items():
        problems.append(
            f"dimension {name!r} is mapped to mesh axis {axis!r}, which the mesh does not have "
            f"(its axes: {list(mesh.shape)}); arrays with that dimension: {', '.join(where)}"
        )
    if check_unused:
        for name in rules:
            if name not in used:
                problems.append(
                    f"rule {name!r}: no array in the tree has a dimension named {name!r}; "
                    "remove it or check the layers' shape specs for the names they use"
                )
        for name, matched in override_names:
            if not any((name, p) in used_at for p in matched):
                problems.append(
                    f"override rule {name!r}: no array of the nodes it selects "
                    f"({', '.join(map(describe_path, sorted(matched)))}) has a "
                    f"dimension named {name!r}"
                )
    if problems:
        raise ShardingError(problems)
    return out


def shardings(
    tree: StructureTree,
    mesh: Mesh,
    rules: Rules,
    *,
    overrides: Overrides | None = None,
    check_unused: bool = True,
) -> dict[str, Any]:
    """`partition_specs` as `NamedSharding`s on `mesh`: pass them to `place`, to
    `jax.device_put(state, ...)` or as `jax.jit`'s in/out shardings."""
    specs = partition_specs(tree, mesh, rules, overrides=overrides, check_unused=check_unused)
    return named(mesh, specs)


def named(mesh: Mesh, specs: dict[str, Any]) -> dict[str, Any]:
    """`PartitionSpec`s (as `partition_specs` returns them) as `NamedSharding`s."""
    out: dict[str, Any] = jax.tree.map(
        lambda p: NamedSharding(mesh, p), specs, is_leaf=lambda x: isinstance(x, PartitionSpec)
    )
    return out
