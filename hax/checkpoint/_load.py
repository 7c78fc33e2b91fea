"""`load` and `read_info`: read checkpoints written by `save`."""

import os
import warnings
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal, TypeVar, overload

import jax
import numpy as np

from .._module import bind_module
from .._path import path_str
from .._report import (
    TransferReport,
    format_report,
    leaf_spec,
    match_leaves,
    replace_state_leaves,
    state_leaves,
)
from .._tree import named_nodes
from .._types import GlobalConfig, Module, StructureTree
from ..surgery._freeze import FROZEN
from ..surgery._selection import Selection
from ._format import (
    FORMAT_VERSION,
    Contents,
    LeafInfo,
    NodeInfo,
    as_state,
    build_structure,
    fail,
    read_contents,
    read_tensor,
    x64_problem,
)


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit `like`: leaves missing, unused, or with another shape or
    dtype. `report` is the `TransferReport` (file = src, like = dst) listing all of them."""

    def __init__(self, message: str, report: TransferReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint holds, read from its header without reading any array.

    - `format_version`: the file format's version.
    - `config`: the saved global config, or `None` if none was saved.
    - `nodes`: node path (`""` for the root) -> `NodeInfo(aux, apply)`, or `None` for a
      checkpoint saved from a bound state. `apply` is the import path
      `"module:qualname"` of the node's apply, for information: it is never imported.
    - `leaves`: leaf name -> `LeafInfo(shape, dtype, impl)`, in state order.
    """

    format_version: int
    config: GlobalConfig | None
    nodes: dict[str, NodeInfo] | None
    leaves: dict[str, LeafInfo]


def read_info(path: str | os.PathLike[str]) -> CheckpointInfo:
    """The config, aux values, apply import paths, and leaf shapes and dtypes of a
    checkpoint, read and validated from its header alone (no array is read)."""
    with open(path, "rb") as f:
        contents = read_contents(f, os.fspath(path))
    return CheckpointInfo(FORMAT_VERSION, contents.config, contents.nodes, contents.leaves)


Like = TypeVar("Like", StructureTree, dict[str, Any])
"""What `load` fills and returns: a structure tree, or a bound state."""


@overload
def load(
    path: str | os.PathLike[str], like: None = None, strict: bool = True
) -> tuple[dict[str, Any], GlobalConfig]: ...


@overload
def load(
    path: str | os.PathLike[str], like: Module, strict: Literal[True] = True
) -> tuple[StructureTree, GlobalConfig]: ...


@overload
def load(
    path: str | os.PathLike[str], like: Like, strict: Literal[True] = True
) -> tuple[Like, GlobalConfig]: ...


@overload
def load(
    path: str | os.PathLike[str], like: Module, strict: Literal[False]
) -> tuple[StructureTree, GlobalConfig, TransferReport]: ...


@overload
def load(
    path: str | os.PathLike[str], like: Like, strict: Literal[False]
) -> tuple[Like, GlobalConfig, TransferReport]: ...


@overload
def load(
    path: str | os.PathLike[str], like: Module, strict: bool
) -> tuple[StructureTree, GlobalConfig] | tuple[StructureTree, GlobalConfig, TransferReport]: ...


@overload
def load(
    path: str | os.PathLike[str], like: Like, strict: bool
) -> tuple[Like, GlobalConfig] | tuple[Like, GlobalConfig, TransferReport]: ...


def load(
    path: str | os.PathLike[str],
    like: StructureTree | Module | dict[str, Any] | None = None,
    strict: bool = True,
) -> (
    tuple[StructureTree | dict[str, Any], GlobalConfig]
    | tuple[StructureTree | dict[str, Any], GlobalConfig, TransferReport]
):
    """Load a checkpoint written by `hax.checkpoint.save`.

    Loading reads data only: it never unpickles, imports or runs anything named in
    the file. The structure of a model (its apply functions) therefore comes from
    `like`, the model you built with the same architecture.

    **Arguments:**
    - `path`: the file.
    - `like`: what to load into: a structure tree, a module `(tree, config)`, or a
      bound state (the flat dict of `hax.bind_module`). Its leaves may be arrays or
      `jax.ShapeDtypeStruct`s; each loaded array is placed with the `sharding` of the
      leaf it replaces, when that leaf has one. Its aux and apply values are kept,
      the frozen flags (`aux["frozen"]`, see `hax.surgery.freeze`) included: nodes
      that were frozen when saved but are not in `like` come back trainable, with a
      `UserWarning` naming them (`hax.surgery.freeze` them again, or freeze `like`
      first; `read_info(path).nodes` has the saved aux).
      Without `like`, `load` returns the bound state.
    - `strict`: with `like`, every leaf name, shape and dtype must match: otherwise a
      `CheckpointMismatchError` lists every missing, unused and mismatched leaf at
      once. With `strict=False` the matching leaves are loaded, the rest of `like` is
      kept, and a `TransferReport` says which is which (as `hax.surgery.transfer`,
      with the file as the source and `like` as the destination).

    **Returns:** `(loaded, config)`, or `(loaded, config, report)` with `strict=False`.
    `loaded` has the kind of `like`: a tree for a tree
    or a module, a bound state for a bound state or for `like=None` (e.g.
    `{"0/params/weight": ...}`; `hax.unbind_module(state, apply)` turns it into a tree).
    `config` is the saved global config; if none was saved, `like`'s config for a
    module, else `{}`.

    Raises `CheckpointFormatError` (a `ValueError`) for a file that is truncated, not
    safetensors, not a HAX checkpoint, of a newer format, or corrupt.

    **Example:**
    ```python
    hax.checkpoint.save("model.safetensors", (tree, config))
    tree, config = hax.checkpoint.load("model.safetensors", like=MyModel(rng=0))
    ```
    """
    if like is None:
        with open(path, "rb") as f:
            contents = read_contents(f, os.fspath(path))
            state = {
                key: build_structure(s, lambda leaf: _read(f, contents, leaf, None))
                for key, s in contents.state.items()
            }
        return state, contents.config or {}
    if strict:
        loaded, config, _ = _load_into(path, like, strict)
        return loaded, config
    return _load_into(path, like, strict)


def _load_into(
    path: str | os.PathLike[str], like: StructureTree | Module | dict[str, Any], strict: bool
) -> tuple[StructureTree | dict[str, Any], GlobalConfig, TransferReport]:
    name = os.fspath(path)
    with open(path, "rb") as f:
        contents = read_contents(f, name)
        like_state, like_tree, like_config = as_state(like, "load: like")
        named = state_leaves(like_state, "load: like")
        report = match_leaves(
            ((n, n, (i.shape, i.dtype)) for n, i in contents.leaves.items()),
            {n: leaf_spec(x, f"load: like: {n}") for n, x in named},
        )
        if strict and (report.missing or report.unused or report.mismatched):
            raise CheckpointMismatchError(_mismatch_message(name, report), report)
        targets = dict(named)
        new = {
            e.path: _read(f, contents, e.path, getattr(targets[e.path], "sharding", None))
            for e in report.copied
        }
    config = contents.config
    if config is None:
        config = like_config if like_config is not None else {}
    new_state = replace_state_leaves(like_state, new)
    if like_tree is None:
        return new_state, config, report
    _warn_if_unfrozen(name, contents, like_tree)
    _, bound = bind_module(like_tree, {})
    return bound.tree(new_state), config, report


def _warn_if_unfrozen(path: str, contents: Contents, like: StructureTree) -> None:
    """Warn when the file's nodes were frozen (`aux["frozen"]`) and the same nodes of
    `like` are not: load keeps `like`'s aux, so they come back trainable."""
    if contents.nodes is None:
        return
    thawed = [
        p
        for p, node in named_nodes(like)
        if node["aux"].get(FROZEN) is not True
        and (info := contents.nodes.get(path_str(p))) is not None
        and info.aux.get(FROZEN) is True
    ]
    if thawed:
        names = [path_str(p) for p in Selection(thawed, "thawed").outermost()]
        warnings.warn(
            f"{path}: the checkpoint has frozen nodes {names} that `like` "
            "does not freeze; load keeps `like`'s aux, so they are trainable now. Freeze them "
            f"again with hax.surgery.freeze(tree, {names}), or freeze `like` before loading.",
            UserWarning,
            stacklevel=4,
        )


def _read(f: BinaryIO, contents: Contents, name: str, sharding: Any) -> Any:
    info = contents.leaves[name]
    if info.impl is None and (problem := x64_problem(name, info.dtype)):
        fail(contents.path, problem)
    array = read_tensor(f, contents, name)
    value: Any = array
    if info.impl is not None:
        try:
            value = jax.random.wrap_key_data(jax.numpy.asarray(array), impl=info.impl)
        except (ValueError, TypeError, KeyError) as e:
            fail(contents.path, f"{name}: cannot rebuild a PRNG key with impl {info.impl!r}: {e}")
        if str(value.dtype) != info.dtype or value.shape != info.shape:
            fail(contents.path, f"{name}: the key data does not rebuild a {info.dtype} key")
    if sharding is None:
        return jax.numpy.asarray(value) if isinstance(value, np.ndarray) else value
    if getattr(sharding, "is_fully_addressable", True):
        return jax.device_put(value, sharding)
    # A sharding that spans processes: each process places its own shards.
    if info.impl is None:
        return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])
    data = jax.make_array_from_callback(
        array.shape, _data_sharding(sharding), lambda index: array[index]
    )
    return jax.random.wrap_key_data(data, impl=info.impl)


def _data_sharding(sharding: Any) -> Any:
    """The sharding of a key array's data: the same, with the key dims replicated."""
    if not isinstance(sharding, jax.sharding.NamedSharding):
        raise TypeError(
            "load: a PRNG key sharded across processes needs a NamedSharding in `like`, "
            f"found {type(sharding).__name__}"
        )
    return jax.sharding.NamedSharding(sharding.mesh, sharding.spec)


def _mismatch_message(path: str, report: TransferReport) -> str:
    problems = len(report.missing) + len(report.unused) + len(report.mismatched)
    table = format_report(report, "file", "like", ("missing", "unused", "mismatched"))
    return (
        f"{path}: the checkpoint does not match `like` ({problems} "
        f"problem{'s' if problems != 1 else ''}; missing: in like "
        f"but not in the file, unused: in the file but not in like):\n{table}\n"
        "Build `like` with the architecture that was saved (hax.checkpoint.read_info shows "
        "it), or load what matches with strict=False (which also returns a report)."
    )
