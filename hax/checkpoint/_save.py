"""`save`: write a model's params and buffers (and its aux and config) atomically."""

import contextlib
import hashlib
import json
import os
import re
import secrets
import socket
from typing import Any

import jax
import numpy as np
import numpy.typing as npt
from jax.experimental import multihost_utils

from .._leaves import claim, pytree_key_problems
from .._path import describe_path, path_str
from .._static import ARRAY_TYPES
from .._tree import named_nodes
from .._types import GlobalConfig, Module, StructureTree
from ._format import (
    DTYPE_CODES,
    FORMAT,
    FORMAT_VERSION,
    as_state,
    check_state_key,
    encode_structure,
    encode_value,
    parse_header,
    x64_problem,
)


def save(
    path: str | os.PathLike[str],
    tree_or_state: Module | StructureTree | dict[str, Any],
    config: GlobalConfig | None = None,
) -> None:
    """Save every param and buffer to a safetensors file at `path`, with the aux values,
    the node paths, the apply functions' import paths and the global config as JSON
    metadata. No pickle: loading reads data and never runs code from the file.

    All JAX dtypes safetensors knows are stored bit-exactly (bool, int8 to int64,
    uint8 to uint64, float16, bfloat16, float32, float64, float8_e4m3fn, float8_e5m2,
    complex64); a typed PRNG key (`jax.random.key`) is stored as its key data with
    its implementation's name, and comes back as the same typed key.

    The write is atomic: the file is written to a temporary file in the same
    directory, flushed to disk and renamed over `path`, so an error or a crash part
    way leaves any previous file at `path` as it was.

    With several processes (`jax.distributed`), call `save` on every process: arrays
    sharded across processes are gathered collectively, process 0 writes the file,
    and every process returns once it is complete.

    **Arguments:**
    - `path`: the file to write (conventionally `*.safetensors`).
    - `tree_or_state`: a structure tree, a module `(tree, config)`, or a bound state
      (the flat dict of `hax.bind_module`, which has no aux or apply to save).
    - `config`: the global config to save with a tree or a state (a module brings its
      own; passing both raises `TypeError`).
    """
    state, tree, module_config = as_state(tree_or_state, "save")
    if module_config is not None and config is not None:
        raise TypeError(
            "save: the module `(tree, config)` already has a config; pass `config=` only "
            "with a bare tree or a state"
        )
    config = module_config if module_config is not None else config
    structures: dict[str, Any] = {}
    leaves: list[tuple[str, Any]] = []
    for key, value in state.items():
        address = check_state_key(key, "save")
        bad = pytree_key_problems(key, value)
        if bad:
            raise ValueError(
                f"save: {bad[0][0]}: expected {bad[0][2]}, found {bad[0][1]}; leaf names must "
                "be unique and parse back (hax.validate reports every such name)"
            )
        structures[key] = encode_structure(value, address, leaves)
    arrays: dict[str, npt.NDArray[Any]] = {}
    infos: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for name, leaf in leaves:
        claim(name, seen, "save")
        arrays[name], infos[name] = _host_array(leaf, name)
    nodes = None
    if tree is not None:
        nodes = {
            path_str(p): {
                "aux": encode_value(node["aux"], f"save: {describe_path(p)}: aux"),
                "apply": _import_path(node["apply"]),
            }
            for p, node in named_nodes(tree)
        }
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(encode_value(config, "save: config")),
        "nodes": json.dumps(nodes),
        "state": json.dumps(structures),
        "leaves": json.dumps(infos),
    }
    header, size = _header(arrays, metadata)
    parse_header(header, size, f"save: {os.fspath(path)}")  # never write what load refuses
    if jax.process_index() == 0:
        _write_atomically(os.fspath(path), header, arrays)
    if jax.process_count() > 1:  # nobody reads the file before it is complete
        multihost_utils.sync_global_devices(f"hax.checkpoint.save {os.fspath(path)}")


def _host_array(leaf: Any, name: str) -> tuple[npt.NDArray[Any], dict[str, Any]]:
    """A leaf as a contiguous NumPy array in a dtype safetensors stores, and its info."""
    if not isinstance(leaf, ARRAY_TYPES):
        raise TypeError(
            f"save: {name} is a {type(leaf).__name__}, not an array; params and buffers hold "
            "arrays in dicts (str keys), lists, tuples and None"
        )
    info: dict[str, Any] = {"dtype": str(leaf.dtype)}
    if isinstance(leaf, np.ndarray | np.generic):
        info["dtype"] = leaf.dtype.name  # without a byte order (`>f4` is stored as float32)
    if isinstance(leaf, jax.Array):
        if jax.numpy.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            info["impl"] = str(jax.random.key_impl(leaf))
            info["shape"] = list(leaf.shape)
            leaf = jax.random.key_data(leaf)
        if not leaf.is_fully_addressable:
            # Sharded across processes: every process takes part in the gather.
            leaf = multihost_utils.process_allgather(leaf, tiled=True)
    host = np.asarray(leaf, order="C")  # not ascontiguousarray: it makes 0-d arrays 1-d
    if not host.dtype.isnative or host.dtype.byteorder == ">":
        host = host.astype(host.dtype.newbyteorder("<"))  # the same values, little-endian
    if host.dtype.name not in DTYPE_CODES:
        raise TypeError(
            f"save: {name} has dtype {host.dtype.name}, which safetensors cannot store; "
            f"cast it to one of {sorted(DTYPE_CODES)}"
        )
    if "impl" not in info and (problem := x64_problem(name, host.dtype.name)):
        raise TypeError(f"save: {problem} (so load could not read it back)")
    return host, info


def _import_path(apply: Any) -> str | None:
    """`"module:qualname"` of an apply function, for information only."""
    module, qualname = getattr(apply, "__module__", None), getattr(apply, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return None
    return f"{module}:{qualname}"


def _header(arrays: dict[str, npt.NDArray[Any]], metadata: dict[str, str]) -> tuple[bytes, int]:
    """The safetensors header for `arrays` (stored back to back in this order) and
    `metadata`, padded with spaces to a multiple of 8 bytes as safetensors does, and
    the size of the whole file."""
    entries: dict[str, Any] = {}
    offset = 0
    for name, a in arrays.items():
        entries[name] = {
            "dtype": DTYPE_CODES[a.dtype.name],
            "shape": list(a.shape),
            "data_offsets": [offset, offset + a.nbytes],
        }
        offset += a.nbytes
    entries["__metadata__"] = metadata
    header = json.dumps(entries, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return header, 8 + len(header) + offset


# A temporary file is `.{name}.hax-{host}-{pid}-{random}.tmp`, next to the file it will
# replace: the host and process say whether its writer is gone (then it is removed).
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _write_atomically(path: str, header: bytes, arrays: dict[str, npt.NDArray[Any]]) -> None:
    """Write to a temporary file next to `path`, fsync it, rename it over `path`.

    Through a symlink, the file it names is replaced and the link kept. The file gets
    the mode `open()` would give a new file (0o666 less the umask). Temporary files
    that a killed save left for the same file are removed first."""
    target = os.path.realpath(path)
    directory, base = os.path.split(target)
    _remove_stale(directory, base)
    tmp = os.path.join(directory, f".{base}.hax-{_HOST}-{os.getpid()}-{secrets.token_hex(8)}.tmp")
    # O_EXCL: never clobber another file; mode 0o666 lets the umask apply as for open().
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(len(header).to_bytes(8, "little"))
            f.write(header)
            for a in arrays.values():
                f.write(a.reshape(-1).view(np.uint8).data)  # the bytes as they are, no copy
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if os.name == "posix":  # make the rename itself durable
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_stale(directory: str, base: str) -> None:
    """Remove the temporary files of saves to `base` by processes of this host that are
    no longer running (killed part way through)."""
    pattern = re.compile(rf"\.{re.escape(base)}\.hax-{_HOST}-(\d+)-[0-9a-f]{{16}}\.tmp")
    with contextlib.suppress(OSError):
        for name in os.listdir(directory):
            match = pattern.fullmatch(name)
            if match is None or int(match.group(1)) == os.getpid():
                continue
            if not _running(int(match.group(1))):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, name))


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or a pid this OS cannot name): keep it
    return True
