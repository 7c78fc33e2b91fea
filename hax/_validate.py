"""`hax.validate`: check a whole tree (and config) once, when it is built."""

from collections.abc import Mapping
from typing import Any, TypeVar

import pydantic

from .schema._check import check_node_spec, type_label, type_matches
from .schema._errors import Problem, ValidationError, describe
from .schema._node import CONFIG_ADAPTER, NODE_ADAPTER
from .schema._spec import spec_of

T = TypeVar("T")

_NODE_EXPECTED = {
    "dict_type": "a dict",
    "extra_forbidden": "no such key (a node has params, buffers, aux, apply, submodules)",
    "missing": "this key (every node has params, buffers, aux, apply, submodules)",
    "string_type": "a str",
    "string_too_short": "a non-empty name",
    "string_pattern_mismatch": "a name without '/'",
}


def _key_part(name: str) -> str:
    """A name as it appears in a problem's key: quoted when it could be misread."""
    return name if name and not set(name) & set("/. ") else repr(name)


def _child_name(name: Any) -> str:
    return name if isinstance(name, str) and name and "/" not in name else repr(name)


def _node_problems(
    err: pydantic.ValidationError, node: Mapping[str, Any], path: str
) -> list[Problem]:
    """Turn pydantic's errors for one node into `Problem`s, never printing array contents."""
    problems: dict[str, Problem] = {}
    for e in err.errors(include_url=False, include_context=True, include_input=True):
        loc = [str(x) for x in e["loc"]]
        is_key = loc[-1] == "[key]"
        key = ".".join(_key_part(x) for x in loc if x != "[key]")
        ctx = e.get("ctx") or {}
        if e["type"].startswith("hax_"):
            expected, found = e["msg"], str(ctx.get("found", ""))
        else:
            expected = _NODE_EXPECTED.get(e["type"], e["msg"])
            found = "nothing" if e["type"] == "missing" else describe(e.get("input"))
            if is_key:
                found = f"the name {loc[-2]!r}" if e["type"] != "string_type" else found
        problems.setdefault(key, Problem(path, key, found, expected))
    return list(problems.values())


def validate(tree: T, global_config: Mapping[str, Any] | None = None) -> T:
    """Check a structure tree (and optionally its global config) and return it unchanged.

    Checks the structural rules of `hax/schema` at every node (the five keys, array
    leaves, JSON-like hashable `aux`, a callable `apply`, submodule names, no node
    shared twice) and, for layers that declare a spec, the shapes and dtypes of their
    params and buffers and the global-config keys they read.

    Reads only shapes and dtypes: no copies, no device transfers, no tracing; its
    cost grows with the number of nodes and leaves, not with the number of params.
    The tree is walked iteratively, so any depth works.

    **Returns:** `tree` itself (the same object) when valid.

    **Raises:** `hax.ValidationError` listing every problem, each with its path.
    """
    problems: list[Problem] = []
    seen: dict[int, str] = {}
    readers: dict[str, tuple[Any, str, str]] = {}  # config key -> (type, path, layer kind)
    stack: list[tuple[str, Any]] = [("", tree)]
    while stack:
        path, node = stack.pop()
        if not isinstance(node, dict):
            problems.append(Problem(path, "<node>", describe(node), "a structure tree (a dict)"))
            continue
        if id(node) in seen:
            problems.append(
                Problem(
                    path,
                    "<node>",
                    f"the same node object as at {seen[id(node)] or '<root>'}",
                    "a distinct node",
                    "a node can appear only once in a tree (updates would split the copies); "
                    "build two layers, or share weights by reading one layer's params",
                )
            )
            continue
        seen[id(node)] = path
        try:
            NODE_ADAPTER.validate_python(node)
        except pydantic.ValidationError as err:
            problems.extend(_node_problems(err, node, path))
        spec = spec_of(node.get("apply"))
        if spec is not None:
            check_node_spec(node, spec, path, problems)
            for key, typ in spec.config.items():
                readers.setdefault(key, (typ, path, spec.kind))
        children = node.get("submodules")
        if isinstance(children, dict):
            prefix = f"{path}/" if path else ""
            # A child that is not a dict is reported by the parent's schema; one under an
            # invalid name is still checked, under the name's repr.
            stack.extend(
                (f"{prefix}{_child_name(name)}", child)
                for name, child in reversed(children.items())
                if isinstance(child, dict)
            )
    if global_config is not None:
        problems.extend(_config_problems(global_config, readers))
    if problems:
        raise ValidationError(problems)
    return tree


def _value_path(root: Any, loc: tuple[Any, ...]) -> list[str]:
    """The parts of a pydantic error location that name keys or indices in `root`
    (dropping the union-member tags pydantic adds in between)."""
    parts, value = [], root
    for part in loc:
        if isinstance(value, dict) and part in value:
            parts.append(_key_part(str(part)))
            value = value[part]
        elif isinstance(value, list | tuple) and isinstance(part, int) and part < len(value):
            parts.append(str(part))
            value = value[part]
        elif part == "[key]":
            break
    return parts


def _config_problems(config: Any, readers: Mapping[str, tuple[Any, str, str]]) -> list[Problem]:
    problems = []
    try:
        CONFIG_ADAPTER.validate_python(config)
    except pydantic.ValidationError as err:
        for e in err.errors(include_url=False, include_input=True):
            key = ".".join(["global_config", *_value_path(config, e["loc"])])
            found = describe(e.get("input"))
            problems.append(
                Problem(
                    "",
                    key,
                    found,
                    "a JSON object (str keys; bool/int/float/str/None/list/dict values)",
                )
            )
    if isinstance(config, Mapping):
        for key, (typ, path, kind) in readers.items():
            where = f"read by the {kind} at {path or '<root>'}"
            if key not in config:
                problems.append(
                    Problem("", f"global_config.{key}", "nothing", f"{type_label(typ)} ({where})")
                )
            elif not type_matches(config[key], typ):
                problems.append(
                    Problem(
                        "",
                        f"global_config.{key}",
                        describe(config[key]),
                        f"{type_label(typ)} ({where})",
                    )
                )
    return problems
