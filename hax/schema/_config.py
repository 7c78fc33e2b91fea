"""Checking a global config: a JSON object, and the keys and types layers read from it.

Exact dicts and lists are walked with a stack (any depth, cycles reported) and exact
JSON scalars pass on sight; every other key or value is judged by the pydantic
schema (`CONFIG_KEY_ADAPTER`, `JSON_VALUE_ADAPTER`), whose verdict on each part is
the one `CONFIG_ADAPTER` gives on the whole (a property test compares them).
"""

import difflib
from collections.abc import Callable, Mapping
from typing import Any

import pydantic

from ._check import type_label, type_matches
from ._errors import Problem, describe, safe_str
from ._node import CONFIG_ADAPTER, CONFIG_KEY_ADAPTER, JSON_VALUE_ADAPTER
from ._spec import STANDARD_CONFIG
from ._values import Link, link_str

JSON_EXPECTED = "a JSON object (str keys; bool/int/float/str/None/list/dict values)"

_VALUE, _KEY, _LEAVE = 0, 1, 2  # what a stack entry holds


def key_part(name: str) -> str:
    """A name as it appears in a problem's key: quoted when it could be misread."""
    return name if name and not set(name) & set("/. ") else repr(name)


def _value_path(root: Any, loc: tuple[Any, ...]) -> list[str]:
    """The parts of a pydantic error location that name keys or indices in `root`
    (dropping the union-member tags pydantic adds in between)."""
    parts, value = [], root
    for part in loc:
        if isinstance(value, dict) and part in value:
            parts.append(key_part(str(part)))
            value = value[part]
        elif isinstance(value, list | tuple) and isinstance(part, int) and part < len(value):
            parts.append(str(part))
            value = value[part]
        elif part == "[key]":
            break
    return parts


def _schema_says(
    validate: Callable[[Any], object], value: Any, link: Link
) -> list[tuple[str, str]]:
    """`(key, found)` for each error `validate` (a schema's `validate_python`) finds in
    `value`, found at `link`."""
    try:
        validate(value)
    except pydantic.ValidationError as err:
        base = link_str(link, ".")
        out = []
        for e in err.errors(include_url=False, include_input=True):
            key = ".".join(["global_config", *filter(None, [base]), *_value_path(value, e["loc"])])
            out.append((key, describe(e.get("input"))))
        return out
    return []


def json_problems(config: Any) -> list[tuple[str, str]]:
    """`(key, found)` for every part of `config` that is not JSON, in the order the
    schema reports them; keys read `"global_config.x.a.1"`."""
    if type(config) is not dict:
        return _schema_says(CONFIG_ADAPTER.validate_python, config, None)
    out: list[tuple[str, str]] = []
    active: set[int] = set()  # containers on the current path, to find cycles
    done: set[int] = set()  # containers already walked (a shared one is walked once)
    stack: list[tuple[int, Any, Link]] = [(_VALUE, config, None)]
    while stack:
        what, value, link = stack.pop()
        if what == _LEAVE:
            active.discard(value)
            continue
        if what == _KEY:
            out.extend(_schema_says(CONFIG_KEY_ADAPTER.validate_python, value, link))
            continue
        kind = type(value)
        if kind is str or kind is int or kind is float or kind is bool or value is None:
            continue
        if kind is not dict and kind is not list:
            out.extend(_schema_says(JSON_VALUE_ADAPTER.validate_python, value, link))
            continue
        if id(value) in active:
            key = "global_config." + link_str(link, ".")
            out.append((key, f"a {kind.__name__} that contains itself"))
            continue
        if id(value) in done:
            continue
        active.add(id(value))
        done.add(id(value))
        stack.append((_LEAVE, id(value), link))
        children: list[tuple[int, Any, Link]] = []
        if kind is dict:
            for k, v in value.items():
                name = key_part(k if type(k) is str else safe_str(k))
                if type(k) is not str:  # checked before its value, as the schema reports
                    children.append((_KEY, k, (link, name)))
                children.append((_VALUE, v, (link, name)))
        else:
            children.extend((_VALUE, v, (link, str(i))) for i, v in enumerate(value))
        stack.extend(reversed(children))
    return out


def config_problems(
    config: Any, readers: Mapping[str, tuple[Any, str, str]], unknown_keys: bool = True
) -> list[Problem]:
    """Every problem of a global config: non-JSON parts, keys that layers read
    (`readers`: key -> (type, path of the first reader, its layer kind)) missing or
    of the wrong type, and (with `unknown_keys`) keys that no node reads."""
    problems = [Problem("", key, found, JSON_EXPECTED) for key, found in json_problems(config)]
    if isinstance(config, Mapping) and unknown_keys:
        known = [*readers, *(k for k in STANDARD_CONFIG if k not in readers)]
        for key in config:
            if isinstance(key, str) and key not in readers and key not in STANDARD_CONFIG:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
                hint = f"did you mean {close[0]!r}? " if close else ""
                problems.append(
                    Problem(
                        "",
                        f"global_config.{key}",
                        "a key that no node reads",
                        f"one of the keys the model reads ({', '.join(map(repr, known))})",
                        f"{hint}A key of your own needs the apply that reads it to declare it: "
                        f"hax.reads_config(my_apply, {{{key!r}: type}}) or "
                        f"@hax.organized_apply(config={{{key!r}: type}})",
                    )
                )
    if isinstance(config, Mapping):
        for key, (typ, path, kind) in readers.items():
            where = f"read by the {kind} at {path or '<root>'}"
            try:
                value = config[key] if key in config else _MISSING
            except Exception:  # a Mapping whose lookups raise: the JSON check reports it
                continue
            if value is _MISSING:
                found = "nothing"
            elif not type_matches(value, typ):
                found = describe(value)
            else:
                continue
            problems.append(
                Problem("", f"global_config.{key}", found, f"{type_label(typ)} ({where})")
            )
    return problems


_MISSING = object()
