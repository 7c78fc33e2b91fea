"""Checking one node's arrays against its `LayerSpec`: shapes, dtypes, shared dims."""

import types
import typing
from collections.abc import Collection, Mapping
from typing import Any

from ._errors import Issue, a, describe, safe_str
from ._spec import ArraySpec, Dim, LayerSpec, compiled_expr
from ._values import ARRAY_CLASSES, is_array


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
            if d.name is None:
                parts.append("...")
            else:
                parts.append(f"*{d.name}={bound[d.name]}" if d.name in bound else f"*{d.name}")
        elif d.kind == "symbolic":
            parts.append(str(d.expr))
        else:
            parts.append("_")
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def _eval_symbolic(expr: str, bound: Mapping[str, Any]) -> int | None:
    try:
        # `expr` comes from the layer's own annotation; the names bound are ints.
        value = eval(compiled_expr(expr), {"__builtins__": {}}, dict(bound))
    except Exception:
        return None
    return value if isinstance(value, int) else None


def match_shape(spec: ArraySpec, shape: tuple[int, ...], bound: dict[str, Any]) -> bool:
    """Whether `shape` fits `spec.dims`, binding new dimension names into `bound`.

    `bound` is only updated when the whole shape matches. Runs for every array at
    every validation, so it is a plain loop.
    """
    names = spec._plain_names
    if names is not None:  # plain named dims: one comparison once all are bound
        try:
            if spec._sizes_of is not None:
                expected = spec._sizes_of(bound)
            else:
                expected = (bound[names[0]],) if names else ()
        except KeyError:
            pass
        else:
            return tuple(shape) == expected
    dims = spec.dims
    new: dict[str, Any] = {}
    if spec.has_variadic:
        vi = next(i for i, d in enumerate(dims) if d.kind == "variadic")
        n_after = len(dims) - vi - 1
        if len(shape) < len(dims) - 1:
            return False
        middle = tuple(shape[vi : len(shape) - n_after])
        name = dims[vi].name
        if name is not None:
            if bound.get(name, middle) != middle:
                return False
            new[name] = middle
        dims = dims[:vi] + dims[vi + 1 :]
        shape = tuple(shape[:vi]) + tuple(shape[len(shape) - n_after :])
    elif len(shape) != len(dims):
        return False
    for i in range(len(dims)):
        d, size = dims[i], shape[i]
        if d.broadcastable and size == 1:
            continue
        kind = d.kind
        if kind == "named":
            known = bound.get(d.name) if d.name in bound else new.get(d.name)  # type: ignore[arg-type]  # named dims have names
            if known is None:
                new[d.name] = size  # type: ignore[index]  # as above
            elif known != size:
                return False
        elif kind == "fixed":
            if size != d.size:
                return False
        elif kind == "symbolic":
            value = _eval_symbolic(d.expr or "", {**bound, **new})
            if value is not None and value != size:
                return False
    if new:
        bound.update(new)
    return True


_MISSING = object()


def _members(typ: Any) -> tuple[Any, ...]:
    """The types a spec's aux or config entry allows: `int`, or each of `int | None`."""
    if typing.get_origin(typ) in (typing.Union, types.UnionType):
        return typing.get_args(typ)
    return (typ,)


def type_matches(value: Any, typ: Any) -> bool:
    """Whether `value` is exactly of type `typ` (or of a member of a union such as
    `int | None`); an int is accepted where a float is."""
    kind = type(value)
    if kind is typ:
        return True
    allowed = _members(typ)
    return any(kind is t for t in allowed) or (kind is int and any(t is float for t in allowed))


def type_label(typ: Any) -> str:
    """`typ` for messages: `"an int"`, `"an int or None"`."""
    return " or ".join(
        "None" if t is type(None) else a(getattr(t, "__name__", str(t))) for t in _members(typ)
    )


def _is_int_tuple(value: Any) -> bool:
    return type(value) is tuple and all(type(v) is int for v in value)


def _is_dim_value(value: Any) -> bool:
    """An aux value that binds a dimension name: an int (named dim) or a tuple of ints
    (variadic dim, e.g. `*normalized_shape`)."""
    return type(value) is int or _is_int_tuple(value)


def _lent(aux: Mapping[str, Any]) -> tuple[Any, ...]:
    """The entries a tie lends this node (`aux["tied"]`, see `hax.surgery.tie`)."""
    tied = aux.get("tied", ())
    return tied if type(tied) is tuple else ()


def _flags_state(aux: Mapping[str, Any], flags: tuple[str, ...]) -> bool | None:
    """Whether the aux `flags` all say yes; None when one is not a bool (an aux problem)."""
    state = True
    for flag in flags:
        value = aux.get(flag)
        if value is False:
            state = False
        elif value is not True:
            return None
    return state


def _presence_issue(
    key: str, present: bool, aspec: ArraySpec, spec: LayerSpec, aux: Mapping[str, Any], bound: Any
) -> Issue:
    if present:  # the flags say it is not there
        said = " and ".join(f"{f}=False" for f in aspec.flags if not aux[f])
        return Issue(key, "an entry", "no entry", f"aux {said} means the {spec.kind} has no {key}")
    said = " and ".join(f"{f}=True" for f in aspec.flags)
    expected = f"an array {_fmt_expected(aspec.dims, bound)}"
    return Issue(key, "nothing", expected, f"aux {said} means the {spec.kind} has {key}")


def check_node_spec(
    node: Mapping[str, Any], spec: LayerSpec, reported: Collection[str] = ()
) -> list[Issue]:
    """Every way `node` breaks `spec` (aux, params, buffers), as issues of this node.

    Containers that are not dicts are skipped, and so is an entry that is not an array
    under a key in `reported`: the structural schema reports those.
    """
    issues: list[Issue] = []
    aux = node.get("aux")
    if type(aux) is not dict:
        aux = {}
    for name, typ in spec.aux.items():
        value = aux.get(name, _MISSING)
        if type(value) is typ:
            continue
        if value is _MISSING:
            needs = f"{type_label(typ)} (the {spec.kind} needs it)"
            issues.append(Issue(f"aux.{name}", "nothing", needs))
        elif not type_matches(value, typ):
            issues.append(Issue(f"aux.{name}", describe(value), type_label(typ)))
    # Dimension names bind first from aux values of the same name: ints for named
    # dims, tuples of ints for variadic ones (`*normalized_shape`).
    bound: dict[str, Any] = {}
    for name in spec._dim_names:
        value = aux.get(name)
        if type(value) is int or (type(value) is tuple and _is_int_tuple(value)):
            bound[name] = value
    for kind, declared in (("params", spec.params), ("buffers", spec.buffers)):
        entries = node.get(kind)
        if type(entries) is not dict or not (entries or declared):
            continue
        for name in entries:
            if name not in declared:
                issues.append(
                    Issue(
                        f"{kind}.{safe_str(name)}",
                        "an entry",
                        f"only {sorted(declared) or 'no entries'}",
                        f"the {spec.kind} spec does not declare {kind}.{safe_str(name)}",
                    )
                )
        lent = _lent(aux)
        for name, aspec in declared.items():
            value = entries.get(name, _MISSING)
            if value is _MISSING and name in lent:
                continue  # another node holds it; a tie lends it at every call
            flags = aspec.flags
            if flags:
                want = aux.get(flags[0]) if len(flags) == 1 else _flags_state(aux, flags)
                if type(want) is bool and want is (value is _MISSING):
                    key = f"{kind}.{name}"
                    issues.append(_presence_issue(key, not want, aspec, spec, aux, bound))
            if value is _MISSING:
                if aspec.required:
                    expected = f"an array {_fmt_expected(aspec.dims, bound)}"
                    issues.append(Issue(f"{kind}.{name}", "nothing", expected))
                continue
            if type(value) not in ARRAY_CLASSES and not is_array(value):
                # e.g. an empty pytree, which the schema allows
                if f"{kind}.{name}" not in reported:
                    expected = f"an array {_fmt_expected(aspec.dims, bound)}"
                    issues.append(Issue(f"{kind}.{name}", describe(value), expected))
                continue
            try:
                shape, dtype = value.shape, value.dtype
                dtype_ok = aspec.dtypes is None or aspec._dtype_allowed(dtype)
                shape_ok = match_shape(aspec, shape, bound)
            except Exception as exc:  # an array-like whose shape or dtype raises
                found = f"{describe(value)} whose shape or dtype raised {type(exc).__name__}"
                issues.append(Issue(f"{kind}.{name}", found, "a JAX or NumPy array"))
                continue
            if not dtype_ok:
                found = f"dtype {dtype}"
                issues.append(Issue(f"{kind}.{name}", found, f"{a(aspec.dtype_label)} dtype"))
            if not shape_ok:
                issues.append(_shape_problem(shape, aspec, f"{kind}.{name}", spec, bound, aux))
    return issues


def _shape_problem(
    shape: tuple[int, ...],
    aspec: ArraySpec,
    key: str,
    spec: LayerSpec,
    bound: dict[str, Any],
    aux: Mapping[str, Any],
) -> Issue:
    used = [d.name for d in dict.fromkeys(aspec.dims) if d.name is not None and d.name in bound]
    bindings = ", ".join(f"{n}={bound[n]}" for n in dict.fromkeys(used))
    if not used:
        hint = ""
    elif all(_is_dim_value(aux.get(n)) and aux[n] == bound[n] for n in used):
        hint = f"the {spec.kind} here has aux {bindings}"
    else:
        hint = f"{bindings} from this node's aux and other arrays"
    return Issue(
        key,
        f"shape {_fmt_shape(tuple(shape))}",
        f"shape {_fmt_expected(aspec.dims, bound)}",
        hint,
    )
