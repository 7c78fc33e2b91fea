"""The types of HAX's data model: structure trees, global configs, apply functions.

Each type states the rule HAX checks at runtime, in a form both a static checker
(mypy, pyright) and a runtime checker (beartype, in debug mode) can read.
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, TypeAlias, runtime_checkable

import jax
import numpy as np
import numpy.typing as npt
from beartype.vale import Is
from typing_extensions import TypedDict

PyTree: TypeAlias = Any
"""A JAX pytree (nested dicts, lists and tuples) whose leaves are arrays."""

AuxValue: TypeAlias = bool | int | float | str | tuple["AuxValue", ...] | None
"""A static, hashable, JSON-like value stored in a node's `aux`. At runtime (beartype)
the hint is `is_aux_value`, the rule `hax.validate` applies: exact types, any depth."""

_NoneType = type(None)


def _is_aux_scalar(kind: type) -> bool:
    # `is`, not `in`: a metaclass's `__eq__`/`__hash__` never runs.
    return kind is bool or kind is int or kind is float or kind is str or kind is _NoneType


def is_aux_value(value: Any) -> bool:
    """Whether `value` is an `AuxValue`: a bool, int, float, str, None or a (nested)
    tuple of them, by exact type: no 0-d arrays or NumPy scalars (they hash poorly).
    Any depth. The one rule for aux values: the schema, the pre-check and the runtime
    form of `AuxValue` all call it."""
    kind = type(value)
    if _is_aux_scalar(kind):
        return True
    if kind is not tuple:
        return False
    stack, seen = [value], {id(value)}
    while stack:
        for item in stack.pop():
            kind = type(item)
            if kind is tuple:
                if id(item) not in seen:
                    seen.add(id(item))
                    stack.append(item)
            elif not _is_aux_scalar(kind):
                return False
    return True


GlobalConfig: TypeAlias = dict[str, Any]
"""A JSON object shared by a whole model, e.g. `{"train_mode": True}`.

Values are typed `Any` so that `config["train_mode"]` is convenient to use; the
JSON rule (bool/int/float/str/None/list/dict values) is checked at runtime.
"""

Path: TypeAlias = str | tuple[str, ...]
"""A node path: a tuple of submodule names, or its string form `"a/b/c"`."""

if TYPE_CHECKING:  # numpy's scalar types are generic only to type checkers
    ArrayTree: TypeAlias = (
        jax.Array
        | npt.NDArray[Any]
        | np.generic[Any]
        | Mapping[str, "ArrayTree"]
        | list["ArrayTree"]
        | tuple["ArrayTree", ...]
    )
    """A param or buffer entry as given: an array, or a pytree (dicts, lists, tuples)
    of arrays. At runtime (beartype) the hint is `hax.schema`'s rule for entries."""

InputArray: TypeAlias = jax.Array | npt.NDArray[Any]
"""An array argument of an apply: a JAX or a NumPy array (the layers convert it)."""

Kind: TypeAlias = Literal["params", "buffers", "aux", "apply"]
"""A node kind that `split_tree` and `filter_keys` select (`submodules` is always kept)."""

StateKind: TypeAlias = Literal["params", "buffers"]
"""A kind that holds arrays: what `bind_module` keeps as state, `named_leaves` lists."""


@runtime_checkable
class ApplyFn(Protocol):
    """`apply(tree, global_config, *args, **kwargs) -> (new_tree, output)`.

    Runtime-checkable, so that a hint with it can be checked (by beartype, in debug
    mode): at runtime it admits any callable; `hax.validate` checks the signature.
    """

    def __call__(
        self,
        tree: "StructureTree",
        global_config: GlobalConfig,
        /,
        *args: Any,
        **kwargs: Any,
    ) -> tuple["StructureTree", Any]: ...


class StructureTree(TypedDict):
    """A model as plain data. At runtime it is an ordinary `dict`.

    - `params`: trainable weights, name -> array.
    - `buffers`: non-trained state (running statistics, RNG keys, counters).
    - `aux`: static, hashable, JSON-like configuration of this node.
    - `apply`: the function that computes with this node.
    - `submodules`: child trees by name.

    Entries are typed as JAX arrays, which is what a built tree holds; `validate` also
    accepts a pytree of arrays as one entry (`StateOrganizer.register_param`), which
    reads through a `cast`. At runtime (beartype) the type checks one node: a dict
    whose keys are node kinds, with dicts and a callable apply as their values (the
    parts that `split_tree` makes pass as well).
    """

    params: dict[str, jax.Array]
    buffers: dict[str, jax.Array]
    aux: dict[str, AuxValue]
    apply: ApplyFn
    submodules: dict[str, "StructureTree"]


KINDS: tuple[str, ...] = ("params", "buffers", "aux", "apply", "submodules")
"""The five keys of every node, in canonical order."""

STATE_KINDS: tuple[StateKind, StateKind] = ("params", "buffers")
"""The kinds that hold arrays: what `bind_module` keeps as state."""

KIND_SET = frozenset(KINDS)
"""The five kinds as a set, for membership tests."""


def is_node(x: object) -> bool:
    """Whether `x` looks like one node of a structure tree (or a part of one): a dict
    whose keys are node kinds, each holding a dict, and `apply` a callable. Constant
    time: children are not visited (they are checked where they are used)."""
    if not isinstance(x, dict) or not x.keys() <= KIND_SET:
        return False
    return all(callable(v) if k == "apply" else isinstance(v, dict) for k, v in x.items())


def _is_array_tree(value: object) -> bool:
    from .schema._values import array_tree_problem  # as above

    return array_tree_problem(value) is None


if not TYPE_CHECKING:
    # The runtime forms of the hints, which static checkers do not see: beartype reads a
    # TypedDict as any Mapping and cannot follow the recursive alias, so each is checked
    # by the rule HAX applies.
    StructureTree = Annotated[StructureTree, Is[is_node]]
    AuxValue = Annotated[object, Is[is_aux_value]]
    ArrayTree = Annotated[object, Is[_is_array_tree]]

Module: TypeAlias = tuple[StructureTree, GlobalConfig]
"""What every `hax.nn` constructor returns: a tree and the config it expects."""
