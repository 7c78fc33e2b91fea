"""Pydantic schemas for the structural rules of one node and of a global config.

A node is validated on its own (children are checked to be dicts here, and are
validated in turn by `hax.validate`'s iterative walk), so trees of any depth
validate without recursion limits.
"""

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any

import jax
from pydantic import (
    AfterValidator,
    ConfigDict,
    JsonValue,
    PlainValidator,
    Strict,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    TypeAdapter,
    with_config,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypeAliasType, TypedDict

from .._leaves import keys_str
from .._static import ARRAY_TYPES
from ._errors import a, describe


def _is_none(x: Any) -> bool:
    return x is None


def _check_array_tree(value: Any) -> Any:
    """Every leaf of a param/buffer pytree must be a JAX or NumPy array."""
    if isinstance(value, ARRAY_TYPES):
        return value
    leaves = jax.tree_util.tree_leaves_with_path(value, is_leaf=_is_none)
    if len(leaves) == 1 and leaves[0][1] is value:  # not a pytree container
        found = describe(value)
    else:
        bad = [
            f"{keys_str(path)} ({type(leaf).__name__})"
            for path, leaf in leaves
            if not isinstance(leaf, ARRAY_TYPES)
        ]
        if not bad:
            return value
        found = f"{a(type(value).__name__)} with non-array leaves {', '.join(bad)}"
    raise PydanticCustomError(
        "hax_not_array", "a JAX or NumPy array (or a pytree of them)", {"found": found}
    )


@functools.lru_cache(maxsize=4096)
def _apply_problem(fn: Callable[..., Any]) -> str | None:
    """Why `fn` cannot be called as `apply(tree, config, ...)`, or None. Cached per function."""
    try:
        inspect.signature(fn).bind_partial(None, None)
    except TypeError:
        return "a function that accepts (tree, global_config, *args)"
    except ValueError:  # no signature available (some builtins): trust it
        return None
    return None


def _check_apply(value: Any) -> Any:
    if not callable(value):
        raise PydanticCustomError(
            "hax_not_callable",
            "a callable apply(tree, global_config, *args)",
            {"found": describe(value)},
        )
    try:
        problem = _apply_problem(value)
    except TypeError:  # unhashable callable: check without the cache
        problem = _apply_problem.__wrapped__(value)
    if problem:
        raise PydanticCustomError(
            "hax_bad_apply", problem, {"found": "a function with another signature"}
        )
    return value


_AUX_TYPES = (bool, int, float, str, type(None))


def _is_aux_value(value: Any) -> bool:
    kind = type(value)  # exact types: no 0-d arrays or NumPy scalars (they hash poorly)
    return kind in _AUX_TYPES or (kind is tuple and all(_is_aux_value(v) for v in value))


def _check_aux_value(value: Any) -> Any:
    if not _is_aux_value(value):
        raise PydanticCustomError(
            "hax_bad_aux",
            "a hashable JSON-like value (bool, int, float, str, None, or a tuple of them)",
            {"found": describe(value)},
        )
    return value


ArrayTree = Annotated[Any, AfterValidator(_check_array_tree)]
AuxValue = TypeAliasType(
    "AuxValue",
    "StrictBool | StrictInt | StrictFloat | StrictStr"
    " | Annotated[tuple[AuxValue, ...], Strict()] | None",
)
NodeName = Annotated[StrictStr, StringConstraints(min_length=1, pattern=r"^[^/]+$")]


@with_config(ConfigDict(extra="forbid", strict=True))
class NodeSchema(TypedDict):
    """The structural rules of one node of a structure tree."""

    params: dict[StrictStr, ArrayTree]
    buffers: dict[StrictStr, ArrayTree]
    aux: dict[StrictStr, Annotated[Any, PlainValidator(_check_aux_value)]]
    apply: Annotated[Any, PlainValidator(_check_apply)]
    submodules: dict[NodeName, dict[str, Any]]


NODE_ADAPTER: TypeAdapter[NodeSchema] = TypeAdapter(NodeSchema)
"""Validates one node (children only as dicts)."""

CONFIG_ADAPTER: TypeAdapter[dict[str, JsonValue]] = TypeAdapter(
    dict[StrictStr, JsonValue], config=ConfigDict(strict=True)
)
"""Validates a global config: a JSON object."""
