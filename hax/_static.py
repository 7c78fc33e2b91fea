"""Static values: what is not an array in a pytree, compared exactly.

`hax.jit`, `BoundApply`, config merging and debug mode all need one rule for "the same
static value": equal values of exactly equal types all the way down (`1`, `1.0` and
`True` differ, and so do `(1,)` and `(True,)`), with NaN equal to itself so that a
NaN static does not make every call a new one. That rule lives here, once.
"""

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import numpy as np

ARRAY_TYPES = (jax.Array, np.ndarray, np.generic)
"""Leaf types that are traced (and that params and buffers hold)."""

_NAN = float("nan")  # the one NaN object of keys, so that keys with NaN hash alike


def is_array(x: Any) -> bool:
    """Whether a pytree leaf is an array (traced) rather than a static value."""
    # isinstance, not issubclass: tracers are jax.Arrays only by instance check.
    return isinstance(x, ARRAY_TYPES)


def same(a: Any, b: Any) -> bool:
    """Whether two static leaves are the same: equal values of exactly equal types,
    compared through tuples, with NaN equal to NaN."""
    if a is b:
        return True
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is tuple:
        return len(a) == len(b) and all(map(same, a, b))
    if kind is float:
        return a == b or (math.isnan(a) and math.isnan(b))
    return bool(a == b)


def same_all(a: Sequence[Any], b: Sequence[Any]) -> bool:
    """`same` for two sequences of static leaves, element by element."""
    return len(a) == len(b) and all(map(same, a, b))


def _canonical(x: Any) -> Any:
    """`x` with every NaN float (also inside tuples) replaced by `_NAN`."""
    if type(x) is float and math.isnan(x):
        return _NAN
    if type(x) is tuple:
        return tuple(map(_canonical, x))
    return x


class StaticKey:
    """A hashable key for a sequence of static leaves, equal under `same`.

    Built with C-speed operations (the types and values as tuples); only keys that
    hold floats or tuples take a second pass, for NaN and for the types inside tuples.
    Raises `TypeError` when a value is unhashable.
    """

    __slots__ = ("_hash", "_nested", "types", "values")

    def __init__(self, values: Iterable[Any]) -> None:
        values = tuple(values)
        types = tuple(map(type, values))
        kinds = set(types)
        self._nested = tuple in kinds
        if float in kinds or self._nested:
            values = tuple(map(_canonical, values))
        self.values = values
        self.types = types
        self._hash = hash((types, values))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StaticKey):
            return False
        if self.types != other.types or self.values != other.values:
            return False
        return not self._nested or same_all(self.values, other.values)

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"StaticKey{self.values!r}"


class Split:
    """An object split into its array leaves (`partition`) and everything else: the
    pytree structure, which leaves are arrays, and the static leaves. Hashable and
    compared exactly (`same`), so it can key a cache; `combine` inverts the split."""

    __slots__ = ("_hash", "is_array", "statics", "treedef")

    def __init__(self, treedef: Any, is_array: tuple[bool, ...], statics: StaticKey) -> None:
        self.treedef = treedef
        self.is_array = is_array
        self.statics = statics
        self._hash = hash((treedef, is_array, statics))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Split)
            and self._hash == other._hash
            and self.is_array == other.is_array
            and self.treedef == other.treedef
            and self.statics == other.statics
        )

    def __hash__(self) -> int:
        return self._hash


def split_leaves(leaves: Sequence[Any], treedef: Any) -> tuple[list[Any], Split]:
    """The array leaves of a flattened object, and the `Split` of the rest."""
    mask = tuple(map(is_array, leaves))
    statics = StaticKey(itertools.compress(leaves, [not a for a in mask]))
    return list(itertools.compress(leaves, mask)), Split(treedef, mask, statics)


def partition(obj: Any) -> tuple[list[Any], Split]:
    """Split `obj` into its array leaves and a `Split` holding everything else."""
    leaves, treedef = jax.tree_util.tree_flatten(obj)
    return split_leaves(leaves, treedef)


def combine(arrays: Iterable[Any], split: Split) -> Any:
    """Rebuild the object that `partition` split into `arrays` and `split`."""
    array_it, static_it = iter(arrays), iter(split.statics.values)
    return split.treedef.unflatten(
        [next(array_it) if a else next(static_it) for a in split.is_array]
    )


def static_key(obj: Any) -> Split:
    """A hashable, exactly compared key for an array-free object made of dicts, lists,
    tuples and static leaves (e.g. a global config or an `aux` value)."""
    arrays, split = partition(obj)
    if arrays:
        raise TypeError("static_key: the object contains arrays; only static values can be keys")
    return split
