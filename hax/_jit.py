"""`hax.jit`: `jax.jit` for functions whose arguments and results hold structure trees."""

import functools
import inspect
import itertools
import warnings
from collections.abc import Callable, Iterable
from typing import Any, Generic, ParamSpec, TypeVar, overload

import jax

from ._debug import STATE as DEBUG
from ._static import combine, masks, partition, rebuild_parts, rebuilder

_flatten = jax.tree_util.default_registry.flatten  # tree_flatten without its Python frame
_compress = itertools.compress

P = ParamSpec("P")
R = TypeVar("R")

_ONE_SHARDING = (jax.sharding.Sharding, jax.sharding.PartitionSpec)
_SHARDINGS = (
    "hax.jit: {name} must be one Sharding (or PartitionSpec), applied to every array, "
    "found a {found}. hax.jit passes jax.jit the arrays of the arguments and results as "
    "flat lists, so a pytree of shardings cannot line up with them. To shard leaf by leaf, "
    "bind the module and use jax.jit directly:\n"
    "    state, apply = hax.bind_module(tree, config)\n"
    "    step = jax.jit(apply, in_shardings=(state_shardings, None))"
)


@functools.cache
def _array_type() -> type:
    """The type of JAX's concrete arrays (known once a backend exists)."""
    return type(jax.numpy.zeros(()))


def _key_types(types: tuple[type, ...], leaves: list[Any], is_array: tuple[bool, ...]) -> Any:
    """Leaf types for a cache key, every array counted as a JAX array: a tree of NumPy
    arrays and the tree of JAX arrays a call returns for it share one compiled entry."""
    array = _array_type()
    if all(t is array for t, a in zip(types, is_array, strict=True) if a):
        return types
    key_types = tuple(array if a else t for t, a in zip(types, is_array, strict=True))
    masks(key_types, leaves)  # `combine` reads the masks of the key's types
    return key_types


def _unhashable_message(fn: Callable[..., Any], key: Any) -> str:
    """Which static value of a call is unhashable, for the error `hax.jit` raises."""
    name = getattr(fn, "__name__", repr(fn))
    statics = key[2] if len(key) == 3 else jax.tree_util.tree_leaves(key)
    bad = []
    for value in statics:
        value = value.value if isinstance(value, _Hashed) else value
        try:
            hash(value)
        except TypeError:
            bad.append(type(value).__name__)
    return (
        f"hax.jit({name}): every argument leaf that is not an array is static and must be "
        f"hashable, found {', '.join(sorted(set(bad))) or 'an unhashable value'}. Pass it "
        "as an array, as a tuple, or close over it instead of passing it."
    )


class _Static:
    """A pytree node with no children: carries a static value through `jax.jit`'s output."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


jax.tree_util.register_pytree_node(
    _Static, lambda s: ((), s.value), lambda value, _: _Static(value)
)


class _Kwargs:
    """Marks a flattened `(args, kwargs, _KWARGS)`, so it never matches a bare `args`."""

    def __repr__(self) -> str:
        return "<kwargs>"


_KWARGS = _Kwargs()


class _Hashed:
    """A whole argument named in `static_argnames`: static, compared by its own `==`."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _Hashed)
            and type(self.value) is type(other.value)
            and bool(self.value == other.value)
        )

    def __hash__(self) -> int:
        return hash(self.value)


def _same_code(a: Any, b: Any) -> bool:
    code = getattr(a, "__code__", None)
    return code is not None and code is getattr(b, "__code__", None)


def _as_tuple(x: int | str | Iterable[Any] | None) -> tuple[Any, ...]:
    if x is None:
        return ()
    if isinstance(x, int | str):
        return (x,)
    return tuple(x)


class _Entry:
    """One compiled specialisation of a `JitFunction`: the static key it was traced for
    (`treedef`, leaf `types`, non-array leaves `statics`), the array/static masks, and
    `finish`, which turns the compiled function's output into the result."""

    __slots__ = (
        "compiled",
        "debug",
        "finish",
        "is_array",
        "is_static",
        "key",
        "out_key",
        "out_pick",
        "out_statics",
        "out_unflatten",
        "statics",
        "treedef",
        "types",
    )

    def __init__(self, key: Any, debug: bool, masks: tuple[tuple[bool, ...], ...]) -> None:
        self.key = key
        self.debug = debug
        # By-name keys (static_argnames/donation) are pairs and skip the fast path.
        fast = len(key) == 3
        self.treedef: Any = key[0] if fast else None
        self.types: Any = key[1] if fast else None
        self.statics: Any = key[2] if fast else None
        self.is_array, self.is_static = masks
        self.compiled: Any = None
        self.out_key: Any = None
        self.finish: Callable[[Any], Any] = _finish_static
        # Set once traced (`rebuild_parts`): `out_unflatten(out_pick(out + out_statics))`
        # is `finish(out)` without a Python frame; `out_pick` is None when not usable.
        self.out_pick: Any = None
        self.out_statics: tuple[Any, ...] = ()
        self.out_unflatten: Any = None


def _finish_static(out: tuple[list[Any], _Static]) -> Any:
    return combine(out[0], out[1].value)


class JitFunction(Generic[P, R]):
    """A function compiled by `hax.jit`. Call it like the original."""

    def __init__(
        self,
        fn: Callable[P, R],
        static_argnames: tuple[str, ...],
        donate_argnums: tuple[int, ...],
        donate_argnames: tuple[str, ...],
        jit_kwargs: dict[str, Any],
    ) -> None:
        self.__wrapped__ = fn
        functools.update_wrapper(self, fn)
        self._static_argnames = static_argnames
        self._by_name = bool(static_argnames or donate_argnums or donate_argnames)
        if self._by_name:
            self._signature = inspect.signature(fn)
            params = list(self._signature.parameters)
            unknown = [n for n in (*static_argnames, *donate_argnames) if n not in params]
            if unknown:
                raise ValueError(f"hax.jit: {fn.__name__} has no parameters named {unknown}")
            try:
                names = [params[i] for i in donate_argnums]
            except IndexError:
                raise ValueError(
                    f"hax.jit: donate_argnums={donate_argnums} is out of range for "
                    f"{fn.__name__}, which has {len(params)} parameters"
                ) from None
            self._donated = frozenset((*names, *donate_argnames))
            overlap = self._donated.intersection(static_argnames)
            if overlap:
                raise ValueError(f"hax.jit: {sorted(overlap)} cannot be both static and donated")

        self._donate = (0,) if self._by_name and self._donated else ()
        self._jit_kwargs = jit_kwargs
        # One `jax.jit` per static key and debug flag (checks run at trace time), found
        # by a dict lookup: cheaper than passing the key to jax as a static argument.
        # `_last` is tried first, by comparison alone, since loops call with one key.
        self._entries: dict[tuple[bool, Any], _Entry] = {}
        self._last: _Entry | None = None

    def _entry(self, key: Any, masks: tuple[tuple[bool, ...], ...] = ((), ())) -> _Entry:
        debug = DEBUG.enabled
        try:
            entry = self._entries.get((debug, key))
        except TypeError as err:  # an unhashable static value: say which
            raise TypeError(_unhashable_message(self.__wrapped__, key)) from err
        if entry is None:
            if debug:
                self._warn_if_recreated(key, debug)
            entry = self._entries[(debug, key)] = _Entry(key, debug, masks)
            self._compile(entry, safe=False)
        self._last = entry
        return entry

    def _warn_if_recreated(self, key: Any, debug: bool) -> None:
        """Debug mode: warn when a retrace is caused only by functions re-created with
        the same code (an apply closure built anew at every construction)."""
        if len(key) != 3:
            return
        treedef, types, statics = key
        for mode, other in self._entries:
            if mode != debug or len(other) != 3 or other[1] != types or other[0] != treedef:
                continue
            changed = [(a, b) for a, b in zip(other[2], statics, strict=True) if a is not b]
            if changed and all(_same_code(a, b) for a, b in changed):
                name = getattr(changed[0][1], "__qualname__", repr(changed[0][1]))
                warnings.warn(
                    f"hax.jit is recompiling {self.__wrapped__.__name__} because the function "
                    f"{name} is a new object with the same code as before: it is re-created "
                    "(e.g. a closure built in a constructor), and apply functions are static, "
                    "compared by identity. Define apply functions at module level.",
                    stacklevel=4,
                )
                return

    def _compile(self, entry: _Entry, safe: bool) -> None:
        """(Re)build `entry.compiled`. Normally it returns only arrays and the static part
        of its results is kept on the entry. If jax retraces it for new shapes and the
        static part of the results changes, it is rebuilt `safe`: returning that part
        with every result."""
        key = entry.key

        def traced(*arrays: Any) -> Any:
            out_arrays, out_key = partition(self._run(key, arrays))
            if safe:
                return out_arrays, _Static(out_key)
            rebuild = rebuilder(out_key)
            if entry.out_key is None or entry.out_key == out_key:
                entry.out_key, entry.finish = out_key, rebuild
                entry.out_pick, entry.out_statics, entry.out_unflatten = rebuild_parts(out_key)
            else:

                def finish_then_go_safe(out: Any) -> Any:
                    self._compile(entry, safe=True)
                    return rebuild(out)

                entry.finish, entry.out_pick = finish_then_go_safe, None
            return tuple(out_arrays)

        entry.finish, entry.out_pick = _finish_static, None
        entry.compiled = jax.jit(traced, donate_argnums=self._donate, **self._jit_kwargs)

    def _run(self, key: Any, arrays: tuple[Any, ...]) -> Any:
        if not self._by_name:
            fn: Callable[..., Any] = self.__wrapped__
            args = combine(arrays, key)
            if len(args) == 3 and args[2] is _KWARGS:
                return fn(*args[0], **args[1])
            return fn(*args)
        donated = combine(arrays[0], key[0])
        kept = combine(arrays[1], key[1])
        arguments = {**donated, **kept}
        ordered = {
            name: (v.value if isinstance(v := arguments[name], _Hashed) else v)
            for name in self._signature.parameters
            if name in arguments
        }
        bound = inspect.BoundArguments(self._signature, ordered)
        return self.__wrapped__(*bound.args, **bound.kwargs)

    def _split(self, args: Any, kwargs: Any) -> tuple[Any, Any]:
        if not self._by_name:
            arrays, key = partition((args, kwargs, _KWARGS) if kwargs else args)
            return key, arrays
        return self._split_by_name(args, kwargs)

    def _split_by_name(self, args: Any, kwargs: Any) -> tuple[Any, Any]:
        bound = self._signature.bind(*args, **kwargs)
        donated = {n: v for n, v in bound.arguments.items() if n in self._donated}
        kept = {
            n: (_Hashed(v) if n in self._static_argnames else v)
            for n, v in bound.arguments.items()
            if n not in self._donated
        }
        (d_arrays, d_key), (k_arrays, k_key) = partition(donated), partition(kept)
        return (d_key, k_key), (d_arrays, k_arrays)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        # The hot path: one flatten, a comparison with the last key (a dict lookup when
        # that fails), the compiled call, one unflatten. Kept flat on purpose: every
        # attribute lookup here is paid at every call.
        out: Any
        if self._by_name:
            key, groups = self._split_by_name(args, kwargs)
            entry = self._entry(key)
            out = entry.compiled(*groups)
            return entry.finish(out)  # type: ignore[no-any-return]  # R is the wrapped fn's result
        leaves, treedef = _flatten((args, kwargs, _KWARGS) if kwargs else args, None)
        types = tuple(map(type, leaves))
        last = self._last
        # Equal leaf types put arrays exactly where they were (a Python scalar where an
        # array was is a new static value, not a traced one). A loop feeds back the tree
        # this function returned, whose static leaves are the very objects of
        # `last.statics`: the tuple comparison matches those by identity before value.
        if last is not None and last.types == types and last.debug is DEBUG.enabled:
            statics = tuple(_compress(leaves, last.is_static))
            if last.statics == statics and last.treedef == treedef:
                out = last.compiled(*_compress(leaves, last.is_array))
                if last.out_pick is not None:
                    return last.out_unflatten(last.out_pick(out + last.out_statics))  # type: ignore[no-any-return]  # R is the wrapped fn's result
                return last.finish(out)  # type: ignore[no-any-return]  # as above
            found = last.is_array, last.is_static
        else:
            found = masks(types, leaves)
            statics = tuple(_compress(leaves, found[1]))
        entry = self._entry((treedef, _key_types(types, leaves, found[0]), statics), found)
        out = entry.compiled(*_compress(leaves, found[0]))
        return entry.finish(out)  # type: ignore[no-any-return]  # as above

    def lower(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Lower for the given arguments, as `jax.jit(...).lower` (e.g. for cost analysis)."""
        key, arrays = self._split(args, kwargs)
        if self._by_name:
            return self._entry(key).compiled.lower(*arrays)
        return self._entry(key, masks(key[1], [])).compiled.lower(*arrays)


@overload
def jit(
    fn: Callable[P, R],
    *,
    static_argnames: str | Iterable[str] | None = None,
    donate_argnums: int | Iterable[int] | None = None,
    donate_argnames: str | Iterable[str] | None = None,
    **jit_kwargs: Any,
) -> JitFunction[P, R]: ...


@overload
def jit(
    fn: None = None,
    *,
    static_argnames: str | Iterable[str] | None = None,
    donate_argnums: int | Iterable[int] | None = None,
    donate_argnames: str | Iterable[str] | None = None,
    **jit_kwargs: Any,
) -> Callable[[Callable[P, R]], JitFunction[P, R]]: ...


def jit(
    fn: Callable[P, R] | None = None,
    *,
    static_argnames: str | Iterable[str] | None = None,
    donate_argnums: int | Iterable[int] | None = None,
    donate_argnames: str | Iterable[str] | None = None,
    **jit_kwargs: Any,
) -> JitFunction[P, R] | Callable[[Callable[P, R]], JitFunction[P, R]]:
    """Compile `fn` with `jax.jit`; its arguments and results may hold structure trees
    and global configs.

    Array leaves (JAX or NumPy) are traced. Everything else — `aux` values, `apply`
    functions, configs, Python scalars — is static and compared **by value**: calling
    again with a rebuilt tree of the same structure, shapes, dtypes and `aux` reuses
    the compiled function; changing an `aux` value or a config value recompiles.
    Pass a hyperparameter as a JAX array (`jnp.asarray(0.1)`) to trace it instead.

    **Arguments:**
    - `static_argnames`, `donate_argnums`, `donate_argnames`: as in `jax.jit`
      (donation applies to every array inside the named arguments).
    - `jit_kwargs`: passed to `jax.jit`. `in_shardings`/`out_shardings` must be one
      `Sharding` for every array; for shardings leaf by leaf, use `jax.jit` over the
      state of `bind_module`.

    Usable as `@hax.jit` or `@hax.jit(donate_argnums=0)`.
    """
    if "static_argnums" in jit_kwargs:
        raise TypeError(
            "hax.jit has no static_argnums: every non-array value is already static. Use "
            "static_argnames to make a whole argument static (it must then be hashable)."
        )
    for name in ("in_shardings", "out_shardings"):
        value = jit_kwargs.get(name)
        if value is not None and not isinstance(value, _ONE_SHARDING):
            raise TypeError(_SHARDINGS.format(name=name, found=type(value).__name__))
    options = (
        tuple(_as_tuple(static_argnames)),
        tuple(_as_tuple(donate_argnums)),
        tuple(_as_tuple(donate_argnames)),
        jit_kwargs,
    )
    if fn is None:
        return lambda f: JitFunction(f, *options)
    return JitFunction(fn, *options)
