"""Pydantic schemas for the structural rules of one node and of a global config.

A node is validated on its own (children are checked to be dicts here, and are
validated in turn by `hax.validate`'s iterative walk), so trees of any depth
validate without recursion limits. The validators' rules live in `_values`, where
`_precheck` reads them too.
"""

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    ConfigDict,
    JsonValue,
    PlainValidator,
    StrictStr,
    StringConstraints,
    TypeAdapter,
    with_config,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict

from .._types import is_aux_value
from ._errors import describe
from ._values import apply_problem, array_tree_problem


def _check_array_tree(value: Any) -> Any:
    """Every leaf of a param/buffer pytree must be a JAX or NumPy array."""
    problem = array_tree_problem(value)
    if problem is not None:
        kind, expected, found = problem
        raise PydanticCustomError(kind, expected, {"found": found})
    return value


def _check_apply(value: Any) -> Any:
    if not callable(value):
        raise PydanticCustomError(
            "hax_not_callable",
            "a callable apply(tree, global_config, *args)",
            {"found": describe(value)},
        )
    problem = apply_problem(value)
    if problem is not None:
        expected, found = problem
        raise PydanticCustomError("hax_bad_apply", expected, {"found": found})
    return value


def _check_aux_value(value: Any) -> Any:
    if not is_aux_value(value):
        raise PydanticCustomError(
            "hax_bad_aux",
            "a hashable JSON-like value (bool, int, float, str, None, or a tuple of them)",
            {"found": describe(value)},
        )
    return value


ArrayTree = Annotated[Any, AfterValidator(_check_array_tree)]
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

JSON_VALUE_ADAPTER: TypeAdapter[JsonValue] = TypeAdapter(JsonValue, config=ConfigDict(strict=True))
"""Validates one value of a global config (what `CONFIG_ADAPTER` applies to each)."""

CONFIG_KEY_ADAPTER: TypeAdapter[str] = TypeAdapter(StrictStr)
"""Validates one key of a global config object."""
