"""Splitting pytrees into arrays (traced) and everything else (static, hashed by value).

This runs on every `hax.jit` call, so it is written for speed: one C++ flatten,
then array/static masks looked up by the tuple of leaf types.
"""

import itertools
import operator
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

ARRAY_TYPES = (jax.Array, np.ndarray, np.generic)

# Masks by tuple of leaf types; bounded so that pathological use cannot leak memory.
MASKS: dict[tuple[type, ...], tuple[tuple[bool, ...], tuple[bool, ...]]] = {}
_MAXMASKS = 4096


def masks(types: tuple[type, ...], leaves: list[Any]) -> tuple[tuple[bool, ...], tuple[bool, ...]]:
    """`(is_array, is_static)` for leaves of these types, cached by the types."""
    found = MASKS.get(types)
    if found is None:
        # isinstance, not issubclass: tracers are jax.Arrays only by instance check.
        is_array = tuple(isinstance(x, ARRAY_TYPES) for x in leaves)
        found = is_array, tuple(map(operator.not_, is_array))
        if len(MASKS) >= _MAXMASKS:
            MASKS.clear()
        MASKS[types] = found
    return found


def partition(obj: Any) -> tuple[list[Any], Any]:
    """Split `obj` into its array leaves and a hashable key for everything else.

    The key holds the pytree structure, each leaf's type (so `1`, `1.0` and `True`
    differ) and every non-array leaf; `combine` inverts the split.
    """
    leaves, treedef = jax.tree_util.tree_flatten(obj)
    types = tuple(map(type, leaves))
    is_array, is_static = masks(types, leaves)
    return list(itertools.compress(leaves, is_array)), (
        treedef,
        types,
        tuple(itertools.compress(leaves, is_static)),
    )


def combine(arrays: Any, key: Any) -> Any:
    """Rebuild the object that `partition` split into `arrays` and `key`."""
    treedef, types, statics = key
    if not statics:
        return treedef.unflatten(arrays)
    if not arrays:
        return treedef.unflatten(statics)
    array_it, static_it = iter(arrays), iter(statics)
    return treedef.unflatten([next(array_it) if a else next(static_it) for a in MASKS[types][0]])


def rebuild_parts(key: Any) -> tuple[Any, tuple[Any, ...], Any]:
    """`(pick, statics, unflatten)` with `unflatten(pick(arrays + statics))` equal to
    `combine(arrays, key)` for a tuple of arrays; `pick` is None for fewer than 2 leaves.
    `key` comes from `partition`, just made (its masks are cached)."""
    treedef, types, statics = key
    is_array = MASKS[types][0]
    order = [0] * len(types)
    next_array, next_static = 0, sum(is_array)
    for i, a in enumerate(is_array):
        if a:
            order[i], next_array = next_array, next_array + 1
        else:
            order[i], next_static = next_static, next_static + 1
    pick = operator.itemgetter(*order) if len(order) >= 2 else None
    return pick, statics, treedef.unflatten


def rebuilder(key: Any) -> Callable[[tuple[Any, ...]], Any]:
    """A fast `combine(arrays, key)` for a fixed `key` and a tuple of arrays."""
    pick, statics, unflatten = rebuild_parts(key)
    if pick is None:
        return lambda arrays: unflatten(arrays + statics)
    return lambda arrays: unflatten(pick(arrays + statics))


def static_key(obj: Any) -> Any:
    """A hashable key for an array-free object made of dicts, lists, tuples and leaves."""
    arrays, key = partition(obj)
    if arrays:
        raise TypeError("static_key: the object contains arrays; only static values can be keys")
    return key
