"""`hax.jit`: `jax.jit` for functions whose arguments and results hold structure trees.

How a call runs:

1. The arguments are split into array leaves (traced) and the rest (static): the
   pytree structure and every static leaf, compared exactly (`hax._static.same`).
   That split is the key of a compiled *entry*; the entries of one function live in
   a bounded LRU cache on the function, and nothing global decides what is correct.
2. Each entry wraps one `jax.jit` of a function of two lists of arrays (donated,
   kept), which rebuilds the arguments from the entry's static part. jax's C++
   dispatch then does the rest: shapes, dtypes, shardings and its own retracing.
3. Once an entry is used twice, it gets a matcher that checks the arguments against
   the entry and collects their arrays, and a builder for the results: `hax._fastpath`
   (C) following a program written for the structure where HAX was built with a C
   compiler, else straight-line Python code (`hax._pytree_code`). The most recent
   entries' matchers run first at every call; a miss falls back to step 1.
4. That fast path runs with the garbage collector paused (and restored as found). A
   returned tree is several small dicts per node; building it would otherwise trigger
   young-generation collections that find nothing to free (the result is acyclic) but
   promote the new tree, and so make full collections of the whole heap frequent: at
   2,048 leaves that tripled the cost of a call. The collector's switch is the
   process's: other threads' collections wait for the call too, and a thread that
   turns the collector off during it sees it turned back on at its end.
"""

import collections
import functools
import gc
import inspect
import itertools
import warnings
from collections.abc import Callable, Iterable
from typing import Any, Generic, ParamSpec, TypeVar, overload

import jax

from . import _pytree_code
from ._debug import is_enabled as debug_on
from ._static import Split, combine, is_array, split_leaves

P = ParamSpec("P")
R = TypeVar("R")

MAX_ENTRIES = 64
"""Compiled entries kept per function (least recently used dropped first)."""

_RECENT = 4  # entries whose matchers a call tries (alternating train/eval stays fast)

_flatten = jax.tree_util.default_registry.flatten
_ONE_SHARDING = (jax.sharding.Sharding, jax.sharding.PartitionSpec)
_SHARDINGS = (
    "hax.jit: {name} must be one Sharding (or PartitionSpec), applied to every array, "
    "found a {found}. hax.jit passes jax.jit the arrays of the arguments and results as "
    "flat lists, so a pytree of shardings cannot line up with them. To shard leaf by leaf, "
    "bind the module and use jax.jit directly:\n"
    "    state, apply = hax.bind_module(tree, config)\n"
    "    step = jax.jit(apply, in_shardings=(state_shardings, None))"
)


_JAX_NESTING = 800  # about as deep as jax's pytree functions go (dicts in dicts)
_TOO_DEEP = (
    "hax.jit({name}): the arguments nest {depth} containers deep (a chain of nodes adds two "
    "per level), more than JAX's pytree functions, and so jax.jit, can flatten. Bind the "
    "model instead: `state, apply = hax.bind_module(tree, config)` gives a flat state of any "
    "depth, and `jax.jit(apply)` compiles it."
)


def _too_deep(obj: Any) -> int:
    """How deeply dicts, lists and tuples nest in `obj` when that reaches `_JAX_NESTING`,
    else 0. Counted level by level, without recursion, before jax's flatten sees `obj`:
    jax fails on deeper nesting in a way that leaves the interpreter's recursion count
    broken."""
    level, depth = [obj], 0
    while level:
        depth += 1
        below = []
        for item in level:
            children = item.values() if isinstance(item, dict) else item
            below += [c for c in children if isinstance(c, dict | list | tuple)]
        level = below
        if depth >= _JAX_NESTING and level:
            while level:  # how deep it goes, for the message
                depth += 1
                level = [
                    c
                    for item in level
                    for c in (item.values() if isinstance(item, dict) else item)
                    if isinstance(c, dict | list | tuple)
                ]
            return depth
    return 0


def _unhashable_message(fn: Callable[..., Any], leaves: Iterable[Any]) -> str:
    """Which static value of a call is unhashable, for the error `hax.jit` raises."""
    name = getattr(fn, "__name__", repr(fn))
    bad = []
    for value in leaves:
        value = value.value if isinstance(value, _pytree_code.Whole) else value
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


def _same_code(a: Any, b: Any) -> bool:
    code = getattr(a, "__code__", None)
    return code is not None and code is getattr(b, "__code__", None)


def _as_tuple(x: int | str | Iterable[Any] | None) -> tuple[Any, ...]:
    if x is None:
        return ()
    if isinstance(x, int | str):
        return (x,)
    return tuple(x)


def _finish_static(out: tuple[tuple[Any, ...], _Static]) -> Any:
    """The result of an entry compiled `safe`: its arrays and its static part."""
    return combine(out[0], out[1].value)


class _Entry:
    """One compiled specialisation of a `JitFunction`, for the arguments' `split`.

    `compiled(donated, kept)` returns the result's arrays; `build` (or `finish`, before
    the builder exists or when the result's static part varies between traces)
    turns them into the result. `match` is the generated matcher, once made."""

    __slots__ = (
        "build",
        "compiled",
        "debug",
        "donated",
        "finish",
        "hits",
        "match",
        "out",
        "split",
        "varies",
    )

    def __init__(self, split: Split, donated: tuple[bool, ...], debug: bool) -> None:
        self.split = split
        self.donated = donated
        self.debug = debug
        self.hits = 0
        self.compiled: Any = None
        self.match: Callable[..., Any] | None = None
        self.build: Callable[[Any], Any] | None = None
        self.finish: Callable[[Any], Any] = _finish_static
        self.out: Split | None = None  # the static part of the results, once traced
        self.varies = False  # whether that part differed between two traces


class _Recipe:
    """The canonical form of calls with one layout, as `inspect.Signature.bind` orders
    them: where each canonical argument comes from, and which are static or donated."""

    __slots__ = ("args", "donated", "kwargs", "static")

    def __init__(
        self, bound: inspect.BoundArguments, static: frozenset[str], donated: frozenset[str]
    ) -> None:
        # `bound` was made with positions and keyword names as the argument values.
        self.args: tuple[int | str, ...] = tuple(bound.args)
        self.kwargs: tuple[tuple[str, int | str], ...] = tuple(sorted(bound.kwargs.items()))
        params = bound.signature.parameters
        owner: dict[int | str, str] = {}
        for name, value in bound.arguments.items():
            kind = params[name].kind
            if kind is inspect.Parameter.VAR_POSITIONAL or kind is inspect.Parameter.VAR_KEYWORD:
                owner.update(dict.fromkeys(value, name))
            else:
                owner[value] = name
        slots = [*range(len(self.args)), *(k for k, _ in self.kwargs)]
        sources = [*self.args, *(v for _, v in self.kwargs)]
        self.static = frozenset(
            s for s, v in zip(slots, sources, strict=True) if owner[v] in static
        )
        self.donated = frozenset(
            s for s, v in zip(slots, sources, strict=True) if owner[v] in donated
        )

    def apply(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The canonical `(args, kwargs)` of a call, static arguments wrapped as `Whole`."""

        def take(source: int | str, slot: int | str) -> Any:
            value = args[source] if type(source) is int else kwargs[source]  # type: ignore[index]  # an int indexes args, a str kwargs
            return _pytree_code.Whole(value) if slot in self.static else value

        return (
            tuple(take(source, i) for i, source in enumerate(self.args)),
            {name: take(source, name) for name, source in self.kwargs},
        )


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
        self._static_argnames = frozenset(static_argnames)
        self._donated: frozenset[str] = frozenset()
        self._signature: inspect.Signature | None = None
        if static_argnames or donate_argnums or donate_argnames:
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
        self._jit_kwargs = jit_kwargs
        # By call layout: how to turn a call into the canonical one (by-name options only).
        self._recipes: dict[tuple[int, tuple[str, ...]], _Recipe | None] = {}
        self._entries: collections.OrderedDict[tuple[Split, bool], _Entry] = (
            collections.OrderedDict()
        )
        # The entries whose generated matchers each call tries before the generic path.
        self._recent: list[_Entry] = []

    # -- the generic path ------------------------------------------------------------

    def _recipe(self, nargs: int, names: tuple[str, ...]) -> "_Recipe | None":
        """How calls with this layout (number of positional arguments, keyword names in
        call order) map onto the canonical call; None for a call the function refuses."""
        layout = (nargs, names)
        recipe = self._recipes.get(layout)
        if recipe is None and layout not in self._recipes:
            assert self._signature is not None
            try:
                bound = self._signature.bind(*range(nargs), **{n: n for n in names})
            except TypeError:  # let the function raise its own error when called
                return None
            recipe = _Recipe(bound, self._static_argnames, self._donated)
            if len(self._recipes) < 256:
                self._recipes[layout] = recipe
        return recipe

    def _canonical(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any], "_Recipe | None"]:
        """The call as `signature.bind` would order it (so that positional and keyword
        calls share entries), with static arguments wrapped as `Whole` leaves."""
        if self._signature is None:
            return args, kwargs, None
        recipe = self._recipe(len(args), tuple(kwargs))
        if recipe is None:
            return args, kwargs, None
        return (*recipe.apply(args, kwargs), recipe)

    def _split(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any, Any]:
        """`(key, donated mask, (donated arrays, kept arrays))` for a canonical call."""
        args, kwargs, recipe = self._canonical(args, kwargs)
        depth = _too_deep((args, kwargs))
        if depth:
            raise ValueError(_TOO_DEEP.format(name=self.__wrapped__.__name__, depth=depth))
        leaves, treedef = _flatten((args, kwargs), None)
        try:
            arrays, split = split_leaves(leaves, treedef)
        except TypeError as err:  # an unhashable static value: say which
            statics = itertools.filterfalse(is_array, leaves)
            raise TypeError(_unhashable_message(self.__wrapped__, statics)) from err
        donated = self._donated_mask(treedef, recipe.donated if recipe else frozenset())
        groups: tuple[list[Any], list[Any]] = ([], [])
        for leaf, is_donated in zip(
            arrays, itertools.compress(donated, split.is_array), strict=True
        ):
            groups[0 if is_donated else 1].append(leaf)
        return (split, debug_on()), donated, groups

    @staticmethod
    def _donated_mask(treedef: Any, donated_args: frozenset[Any]) -> tuple[bool, ...]:
        """For each leaf of `(args, kwargs)`, whether it belongs to a donated argument."""
        if not donated_args:
            return (False,) * int(treedef.num_leaves)
        args_td, kwargs_td = treedef.children()
        slots = [*range(len(args_td.children())), *kwargs_td.node_data()[1]]
        children = [*args_td.children(), *kwargs_td.children()]
        return tuple(
            flag
            for slot, child in zip(slots, children, strict=True)
            for flag in itertools.repeat(slot in donated_args, child.num_leaves)
        )

    def _entry(self, key: Any, donated: tuple[bool, ...]) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            split, debug = key
            if debug:
                self._warn_if_recreated(split)
            entry = _Entry(split, donated, debug)
            self._compile(entry, safe=False)
            self._entries[key] = entry
            if len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        return entry

    def _warn_if_recreated(self, split: Split) -> None:
        """Debug mode: warn when a retrace is caused only by functions re-created with
        the same code (an apply closure built anew at every construction)."""
        for other, debug in self._entries:
            if not debug or other.treedef != split.treedef or other.is_array != split.is_array:
                continue
            pairs = zip(other.statics.values, split.statics.values, strict=True)
            changed = [(a, b) for a, b in pairs if a is not b]
            if changed and all(_same_code(a, b) for a, b in changed):
                name = getattr(changed[0][1], "__qualname__", repr(changed[0][1]))
                warnings.warn(
                    f"hax.jit is recompiling {self.__wrapped__.__name__} because the function "
                    f"{name} is a new object with the same code as before: it is re-created "
                    "(e.g. a closure built in a constructor), and apply functions are static, "
                    "compared by identity. Define apply functions at module level.",
                    stacklevel=5,
                )
                return

    def _compile(self, entry: _Entry, safe: bool) -> None:
        """(Re)build `entry.compiled`. Normally it returns only arrays and the static part
        of its results is kept on the entry. If jax retraces it for new shapes and the
        static part of the results changes, it is rebuilt `safe`: returning that part
        with every result."""
        split, donated, fn = entry.split, entry.donated, self.__wrapped__

        def traced(donated_arrays: list[Any], kept_arrays: list[Any]) -> Any:
            streams = (iter(kept_arrays), iter(donated_arrays))
            statics = iter(split.statics.values)
            leaves = [
                next(streams[d]) if a else next(statics)
                for a, d in zip(split.is_array, donated, strict=True)
            ]
            args, kwargs = split.treedef.unflatten(leaves)
            args = [a.value if isinstance(a, _pytree_code.Whole) else a for a in args]
            kwargs = {
                k: v.value if isinstance(v, _pytree_code.Whole) else v for k, v in kwargs.items()
            }
            out_leaves, out_treedef = _flatten(fn(*args, **kwargs), None)
            out_arrays, out = split_leaves(out_leaves, out_treedef)
            if safe:
                return tuple(out_arrays), _Static(out)
            if entry.out is None or entry.out == out:
                entry.out = out
                entry.finish = functools.partial(combine, split=out)
            else:  # a retrace for new shapes changed the static part of the result
                rebuild = functools.partial(combine, split=out)

                def finish_then_go_safe(result: Any) -> Any:
                    self._compile(entry, safe=True)
                    return rebuild(result)

                entry.finish, entry.build, entry.varies = finish_then_go_safe, None, True
            return tuple(out_arrays)

        entry.finish, entry.build, entry.out = _finish_static, None, None
        donate = (0,) if any(donated) else ()
        entry.compiled = jax.jit(traced, donate_argnums=donate, **self._jit_kwargs)

    def _generate(self, entry: _Entry) -> None:
        """Write the entry's matcher and builder (on its second use: code for
        structures used once would cost more than it saves)."""
        if entry.split.treedef.num_leaves <= _pytree_code.MAX_LEAVES:
            entry.match = _pytree_code.matcher(entry.split, entry.donated)
        out = entry.out
        if (
            out is not None
            and not entry.varies
            and out.treedef.num_leaves <= _pytree_code.MAX_LEAVES
        ):
            entry.build = _pytree_code.builder(out)

    def _call_generic(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        key, donated, groups = self._split(args, kwargs)
        entry = self._entry(key, donated)
        out = entry.compiled(*groups)
        entry.hits += 1
        if entry.hits == 2:
            self._generate(entry)
        if entry.match is not None:  # tried first from now on, most recent first
            self._recent = [entry, *(e for e in self._recent if e is not entry)][:_RECENT]
        build = entry.build
        return build(out) if build is not None else entry.finish(out)

    # -- the hot path --------------------------------------------------------------

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        call_args: tuple[Any, ...] = args
        call_kwargs: dict[str, Any] = kwargs
        if self._signature is not None:  # by-name options: match the canonical call
            recipe = self._recipe(len(args), tuple(kwargs))
            if recipe is None:
                return self._call_generic(args, kwargs)  # type: ignore[no-any-return]  # R is the wrapped fn's result
            call_args, call_kwargs = recipe.apply(args, kwargs)
        debug = debug_on()
        collecting = gc.isenabled()
        if collecting:
            gc.disable()
        try:
            for entry in self._recent:
                if entry.debug is debug:
                    groups = entry.match(call_args, call_kwargs)  # type: ignore[misc]  # entries here have one
                    if groups is not None:
                        out = entry.compiled(*groups)
                        build = entry.build  # read after the call: a retrace may have reset it
                        return build(out) if build is not None else entry.finish(out)  # type: ignore[no-any-return]  # as above
        finally:
            if collecting:
                gc.enable()
        return self._call_generic(args, kwargs)  # type: ignore[no-any-return]  # as above

    def lower(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Lower for the given arguments, as `jax.jit(...).lower` (e.g. for cost analysis)."""
        key, donated, groups = self._split(args, kwargs)
        return self._entry(key, donated).compiled.lower(*groups)


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
    functions, configs, Python scalars — is static and compared **by value and type**:
    calling again with a rebuilt tree of the same structure, shapes, dtypes and `aux`
    reuses the compiled function; changing an `aux` value or a config value recompiles.
    Pass a hyperparameter as a JAX array (`jnp.asarray(0.1)`) to trace it instead.
    Each function keeps its last `MAX_ENTRIES` (64) compiled variants.

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
