"""Layer specs: the shapes and dtypes of a layer's params and buffers, declared with
jaxtyping annotations, plus the global-config keys the layer reads.

Annotations are parsed once, when a spec is made; checking a node against its spec
is then plain shape arithmetic (no jaxtyping `isinstance`, which costs ~5 µs each).
"""

import dataclasses
import functools
import operator
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import jax
import numpy as np

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Dim:
    """One parsed dimension of a jaxtyping shape string.

    `kind` is `"fixed"` (`size`), `"named"` (`name`), `"variadic"` (`*name` or `...`,
    `name` is `None` for `...`), `"any"` (`_`) or `"symbolic"` (`expr`, evaluated
    with the named dims bound so far). `broadcastable` (`#name`) also accepts 1.
    """

    kind: str
    name: str | None = None
    size: int | None = None
    expr: str | None = None
    broadcastable: bool = False


@dataclass(frozen=True)
class ArraySpec:
    """The declared shape and dtypes of one param or buffer.

    `flags` names the bool aux entries that say whether an optional entry is present:
    it must be present exactly when all of them are `True` (e.g. `("bias",)`).
    """

    dims: tuple[Dim, ...]
    dtypes: frozenset[str] | None
    dtype_label: str
    required: bool = True
    has_variadic: bool = False
    flags: tuple[str, ...] = ()
    # Derived, for the per-node check (not part of the spec's value):
    # - the dims' names when every dim is a plain named one (`"out in"`), else None,
    #   and a getter of their sizes from the bound names when there are several;
    _plain_names: tuple[str, ...] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _sizes_of: Callable[[Mapping[str, Any]], tuple[Any, ...]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    # - dtypes met, by id -> (the dtype, whether allowed): hashing a dtype costs more.
    _dtypes_seen: dict[int, tuple[Any, bool]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if all(d.kind == "named" and not d.broadcastable for d in self.dims):
            names = tuple(str(d.name) for d in self.dims)
            object.__setattr__(self, "_plain_names", names)
            if len(names) > 1:
                object.__setattr__(self, "_sizes_of", operator.itemgetter(*names))

    def _dtype_allowed(self, dtype: Any) -> bool:
        """`dtype_matches`, remembered per dtype object (the entry holds the dtype, so
        its id stays its own; the table is cleared if it ever grows large)."""
        hit = self._dtypes_seen.get(id(dtype))
        if hit is not None and hit[0] is dtype:
            return hit[1]
        allowed = dtype_matches(self, dtype)
        if len(self._dtypes_seen) >= 256:
            self._dtypes_seen.clear()
        self._dtypes_seen[id(dtype)] = (dtype, allowed)
        return allowed

    @property
    def is_key(self) -> bool:
        return self.dtypes is not None and "prng_key" in self.dtypes


@dataclass(frozen=True)
class LayerSpec:
    """What `hax.validate` checks for every node whose `apply` carries this spec.

    - `kind`: the layer's name for messages, e.g. `"Linear"`.
    - `params`, `buffers`: entry name -> `ArraySpec`; entries not declared are errors.
    - `aux`: required aux keys and their Python types (`int | None` allows either).
    - `config`: global-config keys the layer reads and their types.

    An optional param or buffer whose presence an aux flag decides carries the flag
    names in its `ArraySpec.flags` (see `layer_spec(present_if=...)`).
    """

    kind: str
    params: Mapping[str, ArraySpec] = field(default_factory=dict)
    buffers: Mapping[str, ArraySpec] = field(default_factory=dict)
    aux: Mapping[str, Any] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    # Derived, for the per-node check: every name the dims bind or read (named and
    # variadic dims, names in symbolic ones), i.e. the aux values that can bind a dim.
    _dim_names: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names: set[str] = set()
        for aspec in (*self.params.values(), *self.buffers.values()):
            for d in aspec.dims:
                if d.name is not None:
                    names.add(d.name)
                if d.expr is not None:
                    names.update(symbolic_names(d.expr))
        object.__setattr__(self, "_dim_names", frozenset(names))


@functools.lru_cache(maxsize=256)
def compiled_expr(expr: str) -> Any:
    """A symbolic dimension's expression compiled once (`None` if it does not compile)."""
    try:
        return compile(expr, "<dimension>", "eval")
    except SyntaxError:
        return None


def symbolic_names(expr: str) -> tuple[str, ...]:
    """The names a symbolic dimension's expression reads: `("in_channels", "groups")`."""
    code = compiled_expr(expr)
    return () if code is None else tuple(code.co_names)


def _parse_dim(dim: Any) -> Dim:
    cls = type(dim).__name__
    broadcastable = bool(getattr(dim, "broadcastable", False))
    if cls == "_FixedDim":
        return Dim("fixed", size=int(dim.size), broadcastable=broadcastable)
    if cls == "_NamedDim":
        return Dim("named", name=dim.name, broadcastable=broadcastable)
    if cls == "_NamedVariadicDim":
        return Dim("variadic", name=dim.name, broadcastable=broadcastable)
    if cls == "_SymbolicDim":
        return Dim("symbolic", expr=str(dim.elem), broadcastable=broadcastable)
    if dim is Ellipsis or cls == "_AnonymousVariadicDim":
        return Dim("variadic", broadcastable=broadcastable)
    if cls == "_AnonymousDim":
        return Dim("any", broadcastable=broadcastable)
    raise TypeError(f"unsupported jaxtyping dimension {dim!r}")


def array_spec(annotation: Any, required: bool = True) -> ArraySpec:
    """Parse a jaxtyping annotation such as `Float[Array, "out in"]` into an `ArraySpec`."""
    if typing.get_origin(annotation) in (typing.NotRequired, typing.Required):
        required = typing.get_origin(annotation) is typing.Required
        (annotation,) = typing.get_args(annotation)
    dims = getattr(annotation, "dims", None)
    if dims is None:
        raise TypeError(
            f"a layer spec entry must be a jaxtyping annotation like Float[Array, 'out in'], "
            f"found {annotation!r}"
        )
    dtypes = getattr(annotation, "dtypes", None)
    label = getattr(annotation, "__name__", str(annotation))
    parsed = tuple(_parse_dim(d) for d in dims)
    return ArraySpec(
        dims=parsed,
        dtypes=None if dtypes is None or _accepts_any_dtype(dtypes) else frozenset(dtypes),
        dtype_label=label.split("[", 1)[0],
        required=required,
        has_variadic=any(d.kind == "variadic" for d in parsed),
    )


def _accepts_any_dtype(dtypes: Any) -> bool:
    # jaxtyping's `Shaped` accepts every dtype; it is spelled as a sentinel, not a list.
    return not isinstance(dtypes, list | tuple | frozenset | set)


def _entries(declared: Any) -> dict[str, ArraySpec]:
    if declared is None:
        return {}
    if isinstance(declared, Mapping):
        return {name: array_spec(ann) for name, ann in declared.items()}
    hints = typing.get_type_hints(declared, include_extras=True)
    required = getattr(declared, "__required_keys__", frozenset(hints))
    return {name: array_spec(ann, name in required) for name, ann in hints.items()}


def layer_spec(
    kind: str,
    *,
    params: Any = None,
    buffers: Any = None,
    aux: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    present_if: Mapping[str, str | tuple[str, ...]] | None = None,
) -> LayerSpec:
    """Make a `LayerSpec` from jaxtyping annotations.

    `params` and `buffers` are TypedDict classes (`NotRequired[...]` marks an optional
    entry such as a bias) or dicts of name -> annotation. Dimension names bind from
    `aux` values of the same name and must agree across all arrays of the node.

    `present_if` maps an optional entry to the bool aux flag (or flags, all `True`)
    that says it is there, so that `validate` reports a `bias` that aux says the layer
    has not, or one missing where it says it has: `present_if={"bias": "bias"}`.

    **Example:**
    ```python
    class LinearParams(TypedDict):
        weight: Float[Array, "out_features in_features"]
        bias: NotRequired[Float[Array, "out_features"]]

    LINEAR = layer_spec("Linear", params=LinearParams,
                        aux={"in_features": int, "out_features": int, "bias": bool},
                        present_if={"bias": "bias"})
    ```
    """
    aux = dict(aux or {})
    entries = {"params": _entries(params), "buffers": _entries(buffers)}
    for name, flags in (present_if or {}).items():
        flags = (flags,) if isinstance(flags, str) else tuple(flags)
        where = [kind_ for kind_, declared in entries.items() if name in declared]
        if len(where) != 1 or entries[where[0]][name].required:
            raise TypeError(
                f"{kind}: present_if names {name!r}, which must be one optional "
                "(NotRequired) param or buffer"
            )
        for flag in flags:
            if aux.get(flag) is not bool:
                raise TypeError(f"{kind}: present_if flag {flag!r} must be declared as aux bool")
        declared = entries[where[0]]
        declared[name] = dataclasses.replace(declared[name], flags=flags)
    return LayerSpec(
        kind=kind,
        params=entries["params"],
        buffers=entries["buffers"],
        aux=aux,
        config=dict(config or {}),
    )


def _attach(apply: F, name: str, value: Any, what: str) -> F:
    """Set attribute `name` of an apply function (returned unchanged); a callable that
    takes no attributes (a builtin, a bound method) gets an error that says what to do."""
    try:
        setattr(apply, name, value)
    except AttributeError:
        raise TypeError(
            f"cannot attach {what} to {apply!r}; wrap it in a module-level def first"
        ) from None
    return apply


def register_spec(apply: F, spec: LayerSpec) -> F:
    """Attach `spec` to an apply function (returned unchanged, so usable inline)."""
    return _attach(apply, "__hax_spec__", spec, "a spec")


STANDARD_CONFIG: Mapping[str, Any] = {"train_mode": bool}
"""Global-config keys every model may carry without a node declaring them: HAX's
standard `train_mode` (a model without dropout or batch norm ignores it)."""


def reads_config(apply: F, keys: Mapping[str, Any]) -> F:
    """Declare the global-config keys an apply of yours reads, with their types
    (`{"temperature": float}`, `int | None` allowed), and return it unchanged.

    `hax.validate(tree, config)` reports a config key that no node of the tree
    declares (a typo such as `"training"` for `"train_mode"`, with the nearest known
    key), and a declared key that is missing or of another type. `hax.nn` layers
    declare theirs in their spec; `hax.organized_apply(config=...)` declares for an
    organized apply. Declaring again adds to the keys already declared.

    **Example:** `hax.reads_config(my_apply, {"temperature": float})`
    """
    if not isinstance(keys, Mapping) or not all(isinstance(k, str) for k in keys):
        raise TypeError(f"reads_config: keys must be a mapping of str to types, found {keys!r}")
    declared = {**getattr(apply, "__hax_config__", {}), **keys}
    return _attach(apply, "__hax_config__", declared, "reads_config's keys")


def config_of(apply: Any) -> dict[str, Any]:
    """The global-config keys an apply reads, with their types: its spec's and those
    declared with `reads_config`, through the applies it wraps (`__hax_wraps__`)."""
    keys: dict[str, Any] = {}
    try:
        while apply is not None:
            spec = spec_of(apply)
            if spec is not None:
                keys = {**spec.config, **keys}
            declared = getattr(apply, "__hax_config__", None)
            if isinstance(declared, dict):
                keys = {**declared, **keys}
            apply = getattr(apply, "__hax_wraps__", None)
    except Exception:  # a user object's attribute that raises: nothing more is known
        pass
    return keys


def spec_of(apply: Any) -> LayerSpec | None:
    """The spec registered for an apply function, if any (None also where reading the
    attribute raises: a user object's `__getattr__` is not the place to fail)."""
    try:
        spec = getattr(apply, "__hax_spec__", None)
        return spec if isinstance(spec, LayerSpec) else None
    except Exception:
        return None


def dtype_matches(spec: ArraySpec, dtype: Any) -> bool:
    """Whether an array of `dtype` is allowed by `spec` (cached per dtype set and dtype)."""
    return spec.dtypes is None or _dtype_ok(spec.dtypes, dtype)


@functools.lru_cache(maxsize=1024)
def _dtype_ok(dtypes: frozenset[str], dtype: Any) -> bool:
    if jax.numpy.issubdtype(dtype, jax.dtypes.prng_key):
        return "prng_key" in dtypes
    return np.dtype(dtype).name in dtypes
