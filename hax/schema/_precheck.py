"""An exact pre-check that proves a node satisfies `NodeSchema` (and the leaf-name rule)
without pydantic.

Running the pydantic adapter costs several µs a node; almost every node is built of
exact dicts, str keys, arrays and plain aux values, which this check reads in a
fraction of that. It accepts only what the schema accepts (a property test compares
the two on random nodes): anything unusual is left to the schema, which also words
the problems.
"""

from typing import Any

from .._types import is_aux_value
from ._values import (
    APPLY_CHECKED,
    ARRAY_CLASSES,
    apply_problem,
)

_MISSING = object()


def _name_ok(name: Any) -> bool:
    """A submodule name the schema accepts: a non-empty str without "/" that is valid
    Unicode (pydantic checks its pattern on UTF-8, which lone surrogates are not)."""
    if type(name) is not str or not name or "/" in name:
        return False
    if name.isascii():
        return True
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


def _arrays_ok(entries: dict[Any, Any]) -> bool:
    """Entries that are arrays under names that make valid leaf names; a pytree entry is
    left to the full check, which also reads the keys inside it."""
    for name, value in entries.items():
        if type(name) is not str or not name or "/" in name:
            return False
        if type(value) not in ARRAY_CLASSES:
            return False
    return True


def node_passes(node: Any) -> bool:
    """Whether `node` certainly satisfies `NodeSchema`, judged from exact types.

    `False` does not mean invalid, only "ask the schema". Runs for every node of
    every validation, so its loops are inline.
    """
    if type(node) is not dict or len(node) != 5:
        return False
    for key in node:
        if type(key) is not str:
            return False
    params, buffers, aux = node.get("params"), node.get("buffers"), node.get("aux")
    submodules, apply = node.get("submodules"), node.get("apply", _MISSING)
    if (
        type(params) is not dict
        or type(buffers) is not dict
        or type(aux) is not dict
        or type(submodules) is not dict
        or apply is _MISSING  # with the four above and five keys: exactly the five kinds
        or not callable(apply)
    ):
        return False
    hit = APPLY_CHECKED.get(id(apply))  # apply_problem's cache, read inline
    if (hit[1] if hit is not None and hit[0] is apply else apply_problem(apply)) is not None:
        return False
    if (params and not _arrays_ok(params)) or (buffers and not _arrays_ok(buffers)):
        return False
    for name, value in aux.items():
        kind = type(value)
        if type(name) is not str:
            return False
        if kind is bool or kind is int or kind is float or kind is str or value is None:
            continue
        if not is_aux_value(value):
            return False
    for name, child in submodules.items():
        if type(child) is not dict or name == "params" or name == "buffers":
            return False  # a child named like a kind may give leaf names its parent gives
        if not (type(name) is str and name and "/" not in name and name.isascii()):
            if not _name_ok(name):
                return False
        for key in child:
            if type(key) is not str:
                return False
    return True
