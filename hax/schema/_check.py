"""Checking one node's arrays against its `LayerSpec`: shapes, dtypes, shared dims."""

from collections.abc import Mapping
from typing import Any

from ._errors import Problem
from ._spec import ArraySpec, Dim, LayerSpec, dtype_matches


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _fmt_expected(dims: tuple[Dim, ...], bound: Mapping[str, Any]) -> str:
    parts = []
    for d in dims:
        if d.kind == "fixed":
            parts.append(str(d.size))
        elif d.kind == "named":
            assert d.name is not None
            parts.append(f"{d.name}={bound[d.name]}" if d.name in bound else d.name)
        elif d.kind == "variadic":
            parts.append(f"*{d.name}" if d.name else "...")
        elif d.kind == "symbolic":
            parts.append(str(d.expr))
        else:
            parts.append("_")
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def _eval_symbolic(expr: str, bound: Mapping[str, Any]) -> int | None:
    try:
        # `expr` comes from the layer's own annotation; the names bound are ints.
        value = eval(expr, {"__builtins__": {}}, dict(bound))
    except Exception:
        return None
    return value if isinstance(value, int) else None


def match_shape(spec: ArraySpec, shape: tuple[int, ...], bound: dict[str, Any]) -> bool:
    """Whether `shape` fits `spec.dims`, binding new dimension names into `bound`.

    `bound` is only updated when the whole shape matches.
    """
    dims = spec.dims
    if not spec.has_variadic:
        if len(shape) != len(dims):
            return False
        pairs: Any = zip(dims, shape, strict=True)
        new: dict[str, Any] = {}
    else:
        vi = next(i for i, d in enumerate(dims) if d.kind == "variadic")
        n_after = len(dims) - vi - 1
        if len(shape) < len(dims) - 1:
            return False
        middle = tuple(shape[vi : len(shape) - n_after])
        name = dims[vi].name
        new = {}
        if name is not None:
            if bound.get(name, middle) != middle:
                return False
            new[name] = middle
        pairs = [*zip(dims[:vi], shape[:vi], strict=True)]
        pairs += zip(dims[vi + 1 :], shape[len(shape) - n_after :], strict=True)
    for d, size in pairs:
        if d.broadcastable and size == 1:
            continue
        kind = d.kind
        if kind == "named":
            known = bound.get(d.name, new.get(d.name))
            if known is None:
                new[d.name] = size
            elif known != size:
                return False
        elif kind == "fixed":
            if size != d.size:
                return False
        elif kind == "symbolic":
            value = _eval_symbolic(d.expr or "", {**bound, **new})
            if value is not None and value != size:
                return False
    bound.update(new)
    return True


def check_node_spec(
    node: Mapping[str, Any], spec: LayerSpec, path: str, problems: list[Problem]
) -> None:
    """Append to `problems` every way `node` breaks `spec` (aux, params, buffers)."""
    aux = node.get("aux", {})
    if not isinstance(aux, Mapping):
        return
    for name, typ in spec.aux.items():
        if name not in aux:
            problems.append(
                Problem(
                    path, f"aux.{name}", "nothing", f"a {typ.__name__} (the {spec.kind} needs it)"
                )
            )
        elif not (type(aux[name]) is typ or (typ is float and type(aux[name]) is int)):
            problems.append(
                Problem(path, f"aux.{name}", f"a {type(aux[name]).__name__}", f"a {typ.__name__}")
            )
    # Dimension names bind first from aux values of the same name.
    bound: dict[str, Any] = {k: v for k, v in aux.items() if type(v) is int}
    for kind, declared in (("params", spec.params), ("buffers", spec.buffers)):
        entries = node.get(kind, {})
        if not isinstance(entries, Mapping):
            continue
        for name in entries:
            if name not in declared:
                problems.append(
                    Problem(
                        path,
                        f"{kind}.{name}",
                        "an entry",
                        f"only {sorted(declared) or 'no entries'}",
                        f"the {spec.kind} spec does not declare {kind}.{name}",
                    )
                )
        for name, aspec in declared.items():
            if name not in entries:
                if aspec.required:
                    problems.append(
                        Problem(
                            path,
                            f"{kind}.{name}",
                            "nothing",
                            f"an array {_fmt_expected(aspec.dims, bound)}",
                        )
                    )
                continue
            _check_array(entries[name], aspec, f"{kind}.{name}", spec, path, bound, aux, problems)


def _check_array(
    value: Any,
    aspec: ArraySpec,
    key: str,
    spec: LayerSpec,
    path: str,
    bound: dict[str, Any],
    aux: Mapping[str, Any],
    problems: list[Problem],
) -> None:
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is None or dtype is None:
        return  # not an array: the structural schema reports it
    if not dtype_matches(aspec, dtype):
        problems.append(Problem(path, key, f"dtype {dtype}", f"a {aspec.dtype_label} dtype"))
    if match_shape(aspec, tuple(shape), bound):
        return
    used = [d.name for d in dict.fromkeys(aspec.dims) if d.name is not None and d.name in bound]
    bindings = ", ".join(f"{n}={bound[n]}" for n in dict.fromkeys(used))
    if not used:
        hint = ""
    elif all(aux.get(n) == bound[n] for n in used):
        hint = f"the {spec.kind} here has aux {bindings}"
    else:
        hint = f"{bindings} from this node's aux and other arrays"
    problems.append(
        Problem(
            path,
            key,
            f"shape {_fmt_shape(tuple(shape))}",
            f"shape {_fmt_expected(aspec.dims, bound)}",
            hint,
        )
    )
