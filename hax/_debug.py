"""Debug mode: check every apply at runtime (at trace time under `jit`).

`with hax.debug():` or `HAX_DEBUG=1` turns it on. Each `apply_tree` call then
validates the node's tree and config before and after, runs the apply function
under jaxtyping + beartype when it is annotated, and reports an apply that changed
`aux`, `apply`, the submodule set, or a param's or buffer's shape or dtype — each
with the node's path. Off, `apply_tree` calls `tree["apply"]` directly.
"""

import contextlib
import contextvars
import functools
import os
import threading
import typing
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import beartype
import beartype.roar
import jax
import jaxtyping

from ._static import static_key
from ._types import GlobalConfig, StructureTree
from ._validate import validate
from .schema._errors import Problem, ValidationError
from .schema._spec import spec_of

# Per thread and per async task, like `hax.rng_context`: `with hax.debug():` in one
# thread leaves the others as they were. `HAX_DEBUG=1` sets the default everywhere.
_ENABLED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "hax_debug",
    default=os.environ.get("HAX_DEBUG", "").lower() not in ("", "0", "false", "no"),
)


is_enabled: Callable[[], bool] = _ENABLED.get
"""Whether debug mode is on here: the context variable's own `get`, a C call, for the
hot paths (`apply_tree`, `hax.jit`), where a Python function would add a frame."""


class _Frames(threading.local):
    """While a node runs in debug mode: its children by id, so that a child's checks can
    name its path. Each frame holds the child objects too, so ids are not reused."""

    def __init__(self) -> None:
        self.stack: list[dict[int, tuple[Any, str]]] = []


_FRAMES = _Frames()


def debug_enabled() -> bool:
    """Whether debug mode is on (in this thread or task)."""
    return _ENABLED.get()


@contextlib.contextmanager
def debug(enabled: bool = True) -> Iterator[None]:
    """Check every apply inside the block (see the module docstring); restores on exit.

    The flag is per thread (and per asyncio task): other threads keep theirs.
    `hax.jit` keys its compiled functions on it, so code compiled with checks off is
    retraced with checks on. A function you compiled yourself with `jax.jit` keeps
    the trace it has: build it inside the block to check it.
    """
    token = _ENABLED.set(enabled)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def _has_array_annotations(fn: Callable[..., Any]) -> bool:
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:
        return False
    return any("jaxtyping" in repr(h) or "Array" in repr(h) for h in hints.values())


# By identity: two equal applies (two `Wrapped` of one function) are distinct objects,
# and each must run as itself. Weak: a closure is not kept alive by the cache.
_CHECKED: dict[int, tuple["weakref.ref[Any]", Callable[..., Any]]] = {}

TYPECHECKER = beartype.beartype(conf=beartype.BeartypeConf(is_pep484_tower=True))
"""How debug mode checks an annotated apply: beartype reading hints as type checkers
do, where `float` admits an `int` (and `complex` both), as PEP 484 says."""


def _forget(cache: dict[int, Any], key: int, _: Any) -> None:
    """Drop a dead function's entry (bound to the dict: safe while the interpreter exits)."""
    cache.pop(key, None)


def _checked(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` under jaxtyping + beartype if it carries annotations, else `fn`.

    An annotation beartype cannot check (it refuses some hints that type checkers
    accept) leaves `fn` unchecked, with a warning that names it: the tree checks
    still run. Cached per function object; callables that cannot be weakly referenced
    are wrapped anew each time.
    """
    found = _CHECKED.get(id(fn))
    if found is not None and found[0]() is fn:
        return found[1]
    checked = fn
    if _has_array_annotations(fn):
        try:
            checked = jaxtyping.jaxtyped(typechecker=TYPECHECKER)(fn)
        except beartype.roar.BeartypeDecorHintException as err:
            name = getattr(fn, "__qualname__", type(fn).__name__)
            reason = str(err).splitlines()[0]
            warnings.warn(
                f"hax debug mode: the annotations of {name} cannot be checked at runtime, "
                f"so it runs without that check ({reason})",
                UserWarning,
                stacklevel=2,
            )
    key = id(fn)
    try:
        ref = weakref.ref(fn, functools.partial(_forget, _CHECKED, key))
    except TypeError:
        return checked
    _CHECKED[key] = (ref, checked)
    return checked


def _prefixed(err: ValidationError, path: str, when: str) -> ValidationError:
    if not path:
        return ValidationError(
            [
                p if not when else Problem(p.path, p.key, p.found, p.expected, _join(p.hint, when))
                for p in err.errors
            ]
        )
    return ValidationError(
        [
            Problem(
                "/".join(x for x in (path, p.path) if x),
                p.key,
                p.found,
                p.expected,
                _join(p.hint, when),
            )
            for p in err.errors
        ]
    )


def _join(hint: str, when: str) -> str:
    return f"{hint}; {when}" if hint else when


def _shapes(value: Any) -> Any:
    """The structure, shapes and dtypes of a param or buffer (a pytree of arrays)."""
    leaves, treedef = jax.tree_util.tree_flatten(value)
    return treedef, tuple((getattr(x, "shape", None), getattr(x, "dtype", None)) for x in leaves)


def _signature(tree: StructureTree) -> tuple[Any, ...]:
    arrays = {
        f"{kind}.{name}": _shapes(v)
        for kind in ("params", "buffers")
        for name, v in tree[kind].items()
    }
    aux = {name: (static_key(value), value) for name, value in tree["aux"].items()}
    return aux, tree["apply"], tuple(tree["submodules"]), arrays


def _note_path(err: Exception, path: str, tree: StructureTree) -> None:
    """Add the path of the innermost node whose apply raised `err` to its message."""
    notes = getattr(err, "__notes__", [])
    if isinstance(err, ValidationError) or any("hax debug mode" in n for n in notes):
        return
    spec, apply = spec_of(tree["apply"]), tree["apply"]
    kind = spec.kind if spec is not None else getattr(apply, "__name__", type(apply).__name__)
    err.add_note(f"(hax debug mode) raised in the apply of the {kind} at {path or '<root>'}")


def checked_apply(
    tree: StructureTree, global_config: GlobalConfig, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[StructureTree, Any]:
    """`apply_tree` in debug mode."""
    __tracebackhide__ = True
    frames = _FRAMES.stack
    frame = frames[-1] if frames else {}
    path = frame[id(tree)][1] if id(tree) in frame else ""
    try:
        # Unknown config keys are a property of the whole model: checked at the root call.
        validate(tree, global_config, unknown_keys=not frames)
    except ValidationError as err:
        raise _prefixed(err, path, "before apply") from None
    before = _signature(tree)
    prefix = f"{path}/" if path else ""
    children = {id(c): (c, f"{prefix}{n}") for n, c in tree["submodules"].items()}
    frames.append(children)
    try:
        new_tree, out = _checked(tree["apply"])(tree, global_config, *args, **kwargs)
    except Exception as err:
        _note_path(err, path, tree)
        raise
    finally:
        frames.pop()
    if id(tree) in frame:  # a parent may call this child again with its new tree
        frame[id(new_tree)] = (new_tree, path)
    try:
        validate(new_tree, global_config, unknown_keys=False)
    except ValidationError as err:
        raise _prefixed(err, path, "after apply") from None
    problems = _changes(before, _signature(new_tree), path)
    if problems:
        raise ValidationError(problems)
    return new_tree, out


def _fmt_shapes(shapes: Any) -> str:
    treedef, leaves = shapes
    parts = [f"shape {s} dtype {d}" for s, d in leaves]
    text = parts[0] if len(parts) == 1 else "[" + "; ".join(parts) + "]"
    return text if treedef.num_leaves == 1 and treedef.num_nodes == 1 else f"{text} in {treedef}"


def _changes(before: tuple[Any, ...], after: tuple[Any, ...], path: str) -> list[Problem]:
    aux0, apply0, subs0, arrays0 = before
    aux1, apply1, subs1, arrays1 = after
    why = "apply must not change a tree's structure; use hax.surgery for that"
    problems = []
    for name in sorted(set(aux0) | set(aux1)):  # aux values are small: say what changed
        if name not in aux1 or name not in aux0 or aux0[name][0] != aux1[name][0]:
            found = repr(aux1[name][1]) if name in aux1 else "nothing"
            expected = repr(aux0[name][1]) if name in aux0 else "no new entries"
            problems.append(Problem(path, f"aux.{name}", found, f"{expected} as before apply", why))
    if apply0 is not apply1:
        problems.append(Problem(path, "apply", f"{apply1!r}", f"the same apply ({apply0!r})", why))
    if set(subs0) != set(subs1):  # the set: JAX rebuilds dicts with sorted keys
        problems.append(Problem(path, "submodules", f"{sorted(subs1)}", f"{sorted(subs0)}", why))
    for key in sorted(set(arrays0) | set(arrays1)):
        if key not in arrays1:
            problems.append(Problem(path, key, "nothing", "the entry it had before apply", why))
        elif key not in arrays0:
            problems.append(Problem(path, key, "a new entry", "no new entries", why))
        elif arrays0[key] != arrays1[key]:
            found, expected = _fmt_shapes(arrays1[key]), _fmt_shapes(arrays0[key])
            problems.append(Problem(path, key, found, f"{expected} as before apply"))
    return problems
