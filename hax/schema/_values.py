"""The checks behind the schema's validators: array pytrees and applies (the rule for
aux values lives with its type, `hax._types.is_aux_value`).

They are plain Python so that both the pydantic schema and the exact pre-check call
the same rule. They walk nested values with an explicit stack (any depth; cycles are
reported, not recursed into), judge values by exact type and identity rather than by
a user object's `__eq__`, `__hash__` or `__bool__`, and turn an exception raised
while reading one into a problem, so no value can crash validation.
"""

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import jax
import numpy as np

from .._leaves import keys_str as key_path_str
from .._static import ARRAY_TYPES
from ._errors import a, describe

PYTREE_DEPTH_LIMIT = 256
"""How deeply a param or buffer pytree may nest. JAX flattens pytrees recursively, so a
much deeper one fails inside JAX (around Python's recursion limit, 1,000)."""

NOT_ARRAY = "a JAX or NumPy array (or a pytree of them)"

ARRAY_CLASSES: set[type] = {np.ndarray}
"""Classes whose every instance is an array; grows with those met (e.g. jax's ArrayImpl)."""
_LEAVE = object()  # a stack entry that marks the end of a container's children


def is_array(value: Any) -> bool:
    """Whether `value` is a JAX or NumPy array (or NumPy scalar), by its class when known."""
    kind = type(value)
    if kind in ARRAY_CLASSES:
        return True
    if isinstance(value, ARRAY_TYPES):
        # Tracers are jax.Arrays only by instance check: remember real subclasses only.
        if issubclass(kind, ARRAY_TYPES):
            ARRAY_CLASSES.add(kind)
        return True
    return False


if TYPE_CHECKING:
    Link: TypeAlias = tuple["Link", str] | None
    """A path as a chain of `(parent, name)` links, shared by all paths below it;
    `None` is the top. Turned into a string only when a problem is reported."""
else:  # beartype cannot follow a recursive alias: at runtime the parent is not checked
    Link = tuple[object, str] | None


def link_str(link: Link, sep: str = "/") -> str:
    """`link` as `"a/b/c"` (`""` for the top)."""
    parts = []
    while link is not None:
        link, name = link
        parts.append(name)
    return sep.join(reversed(parts))


def _first(item: tuple[Any, Any]) -> Any:
    return item[0]


def _one_level(value: Any) -> list[tuple[str, Any]] | None:
    """The children of a pytree container with their key names, in JAX's order; `None`
    for a leaf. Builtin containers are read directly; others are flattened one level."""
    kind = type(value)
    if kind is dict:
        return [(str(k), v) for k, v in sorted(value.items(), key=_first)]  # JAX's order
    if kind is list or kind is tuple:
        return [(str(i), v) for i, v in enumerate(value)]
    top = True

    def is_leaf(_: Any) -> bool:  # only `value` itself is opened
        nonlocal top
        opened, top = top, False
        return not opened

    leaves, _ = jax.tree_util.tree_flatten_with_path(value, is_leaf=is_leaf)
    if len(leaves) == 1 and not leaves[0][0]:
        return None
    return [(key_path_str(path), leaf) for path, leaf in leaves]


def array_tree_problem(value: Any) -> tuple[str, str, str] | None:
    """Why `value` cannot be a param or buffer entry, as `(error type, expected, found)`;
    `None` when it is an array or a pytree whose leaves are all arrays (or empty).

    Walks the pytree with a stack: cycles and pytrees nested deeper than
    `PYTREE_DEPTH_LIMIT` are reported, where JAX would recurse until it fails.
    """
    if is_array(value):
        return None
    name = a(type(value).__name__)
    bad: list[str] = []
    active: set[int] = set()  # containers on the current path, to find cycles
    done: set[int] = set()  # containers already walked (a shared one is walked once)
    stack: list[tuple[Any, Any, int]] = [(value, None, 0)]
    while stack:
        item, link, depth = stack.pop()
        if item is _LEAVE:
            active.discard(link)
            continue
        if is_array(item):
            continue
        try:
            children = None if item is None else _one_level(item)
        except Exception as exc:
            where = f" at {link_str(link)}" if link is not None else ""
            found = f"{a(type(item).__name__)}{where} whose flattening raised {type(exc).__name__}"
            return "hax_bad_pytree", "a pytree that JAX can flatten", found
        if children is None:
            if link is None:  # not a pytree container at all
                return "hax_not_array", NOT_ARRAY, describe(value)
            bad.append(f"{link_str(link)} ({type(item).__name__})")
            continue
        key = id(item)
        if key in active:  # never the top: it is not active before its first visit
            found = f"{name} that contains itself at {link_str(link)}"
            return "hax_pytree_cycle", "a pytree without cycles (JAX would recurse forever)", found
        if key in done:
            continue
        if depth >= PYTREE_DEPTH_LIMIT:
            found = f"{name} nested more than {PYTREE_DEPTH_LIMIT} levels deep"
            expected = (
                f"a pytree at most {PYTREE_DEPTH_LIMIT} levels deep "
                "(JAX flattens pytrees recursively)"
            )
            return "hax_pytree_depth", expected, found
        active.add(key)
        done.add(key)
        stack.append((_LEAVE, key, depth))
        stack.extend((child, (link, k), depth + 1) for k, child in reversed(children))
    if bad:
        return "hax_not_array", NOT_ARRAY, f"{name} with non-array leaves {', '.join(bad)}"
    return None


APPLY_CHECKED: dict[int, tuple[Any, tuple[str, str] | None]] = {}
"""`apply_problem`'s cache: id(fn) -> (fn, problem)."""
_APPLY_CACHE_SIZE = 4096


def apply_problem(fn: Callable[..., Any]) -> tuple[str, str] | None:
    """Why the callable `fn` cannot be called as `apply(tree, global_config, *args)`, as
    `(expected, found)`, or None. Cached per function object by identity (not by
    hash, which a callable object may not have or may raise)."""
    hit = APPLY_CHECKED.get(id(fn))
    if hit is not None and hit[0] is fn:
        return hit[1]
    problem = _signature_problem(fn)
    if len(APPLY_CHECKED) >= _APPLY_CACHE_SIZE:
        APPLY_CHECKED.clear()
    APPLY_CHECKED[id(fn)] = (fn, problem)  # holds `fn`, so its id is not reused
    return problem


def _signature_problem(fn: Callable[..., Any]) -> tuple[str, str] | None:
    expected = "a function that accepts (tree, global_config, *args)"
    try:
        inspect.signature(fn).bind_partial(None, None)
    except TypeError:
        return expected, "a function with another signature"
    except ValueError:  # no signature available (some builtins): trust it
        return None
    except Exception as exc:  # a user `__signature__` or `__wrapped__` that raises
        return expected, f"{describe(fn)} whose signature raised {type(exc).__name__}"
    return None
