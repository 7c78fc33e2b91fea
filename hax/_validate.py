"""`hax.validate`: check a whole tree (and config) once, when it is built."""

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import pydantic

from .schema._check import check_node_spec
from .schema._config import config_problems, key_part
from .schema._errors import Issue, Problem, ValidationError, describe, safe_str
from .schema._node import NODE_ADAPTER
from .schema._precheck import node_passes
from .schema._spec import config_of, spec_of
from .schema._values import Link, link_str

T = TypeVar("T")

_NODE_EXPECTED = {
    "dict_type": "a dict",
    "mapping_type": "a dict whose items can be read",
    "extra_forbidden": "no such key (a node has params, buffers, aux, apply, submodules)",
    "missing": "this key (every node has params, buffers, aux, apply, submodules)",
    "string_type": "a str",
    "string_too_short": "a non-empty name",
    "string_pattern_mismatch": "a name without '/'",
}


def _child_name(name: Any) -> str:
    """A child's name in paths: itself when valid, else its repr."""
    if isinstance(name, str) and str.__len__(name) and not str.__contains__(name, "/"):
        return name
    try:
        return repr(name)
    except Exception:
        return f"<{type(name).__name__}>"


def _schema_issues(node: Mapping[str, Any]) -> list[Issue]:
    """The structural schema's problems with one node, never printing array contents."""
    try:
        NODE_ADAPTER.validate_python(node)
    except pydantic.ValidationError as err:
        errors = err.errors(include_url=False, include_context=True, include_input=True)
    else:
        return []
    issues: dict[str, Issue] = {}
    for e in errors:
        loc = [safe_str(x) for x in e["loc"]]
        is_key = bool(loc) and loc[-1] == "[key]"
        key = ".".join(key_part(x) for x in loc if x != "[key]") or "<node>"
        ctx = e.get("ctx") or {}
        if e["type"].startswith("hax_"):
            expected, found = e["msg"], str(ctx.get("found", ""))
        else:
            expected = _NODE_EXPECTED.get(e["type"], e["msg"])
            found = "nothing" if e["type"] == "missing" else describe(e.get("input"))
            if is_key:
                found = f"the name {loc[-2]!r}" if e["type"] != "string_type" else found
        issues.setdefault(key, Issue(key, found, expected))
    return list(issues.values())


def _push_children(
    node: dict[str, Any], path: Link, push: Callable[[tuple[Link, Any]], None]
) -> None:
    """Queue the children that are dicts, under their names (an invalid name, which the
    schema reports, under its repr). A child that is not a dict is the schema's."""
    children = dict.get(node, "submodules")
    if isinstance(children, dict):
        for name, child in reversed(dict.items(children)):
            if isinstance(child, dict):
                push(((path, _child_name(name)), child))


def _name(apply: Any) -> str:
    name = getattr(apply, "__name__", None)
    return name if isinstance(name, str) else type(apply).__name__


def validate(
    tree: T, global_config: Mapping[str, Any] | None = None, *, unknown_keys: bool = True
) -> T:
    """Check a structure tree (and optionally its global config) and return it unchanged.

    Checks the structural rules of `hax/schema` at every node (the five keys, array
    leaves, JSON-like hashable `aux`, a callable `apply`, submodule names, no node
    shared twice) and, for layers that declare a spec, the shapes and dtypes of their
    params and buffers, the aux flags that say which optional ones are present, and
    the global-config keys they read. With `unknown_keys` (the default), a config key
    that no node declares reading is a problem too (`hax.reads_config` declares the
    keys of your own applies); `train_mode` is always allowed.

    Reads only shapes and dtypes: no copies, no device transfers, no tracing; its
    cost grows with the number of nodes and leaves, not with the number of params.
    The tree, nested param pytrees, aux tuples and the config are walked iteratively,
    so any depth works; an error raised by a user object while it is read becomes a
    problem of its node.

    **Returns:** `tree` itself (the same object) when valid.

    **Raises:** `hax.ValidationError` listing every problem, each with its path.
    """
    problems: list[Problem] = []
    seen: dict[int, Link] = {}  # id of each node -> its path, to find a node used twice
    readers: dict[str, tuple[Any, Link, str]] = {}  # config key -> (type, path, layer kind)
    stack: list[tuple[Link, Any]] = [(None, tree)]
    pop, push = stack.pop, stack.append
    while stack:
        path, node = pop()
        if not isinstance(node, dict):  # only the root: children are pushed when dicts
            problems.append(Problem("", "<node>", describe(node), "a structure tree (a dict)"))
            continue
        node_id = id(node)
        if node_id in seen:
            problems.append(
                Problem(
                    link_str(path),
                    "<node>",
                    f"the same node object as at {link_str(seen[node_id]) or '<root>'}",
                    "a distinct node",
                    "a node can appear only once in a tree (updates would split the copies); "
                    "build two layers, or share weights by reading one layer's params",
                )
            )
            continue
        seen[node_id] = path
        try:
            try:
                passes = node_passes(node)
            except Exception:  # a user object that raises when read: the schema words it
                passes = False
            if passes:  # the common case: exact types, valid names, dict children
                issues = []
                for name, child in reversed(node["submodules"].items()):
                    push(((path, name), child))
            else:
                issues = _schema_issues(node)
                _push_children(node, path, push)
            apply = dict.get(node, "apply")
            spec = spec_of(apply)
            if spec is not None:
                issues += check_node_spec(node, spec, {i.key for i in issues} if issues else ())
            for key, typ in config_of(apply).items():
                if key not in readers:
                    readers[key] = (typ, path, spec.kind if spec is not None else _name(apply))
        except Exception as exc:  # a user object that raises when read
            message = f"{type(exc).__name__} raised while reading it: {safe_str(exc)[:200]}"
            issues = [Issue("<node>", message, "a node whose values can be read")]
        if issues:
            where = link_str(path)
            problems.extend(Problem(where, *issue) for issue in issues)
    if global_config is not None:
        named = {key: (typ, link_str(path), kind) for key, (typ, path, kind) in readers.items()}
        try:
            problems.extend(config_problems(global_config, named, unknown_keys))
        except Exception as exc:  # a user object in the config that raises when read
            message = f"{type(exc).__name__} raised while reading it: {safe_str(exc)[:200]}"
            problems.append(Problem("", "global_config", message, "a readable JSON object"))
    if problems:
        raise ValidationError(problems)
    return tree
