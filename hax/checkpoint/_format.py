"""The checkpoint file format: a safetensors file whose `__metadata__` holds HAX's
structure as JSON.

Layout (standard safetensors):
- 8 bytes: the header length `N`, a little-endian u64;
- `N` bytes: a JSON object `{tensor name: {"dtype", "shape", "data_offsets"}, ...,
  "__metadata__": {str: str}}`;
- the tensors' bytes, back to back, covering the rest of the file exactly.

Tensors are named by leaf (`"0/params/weight"`, `"2/params/w/0"`). `__metadata__`:
- `"format"`: `"hax.checkpoint"`; `"format_version"`: `"1"`;
- `"config"`: the global config, or `null` when none was saved;
- `"nodes"`: `{node path: {"aux": {...}, "apply": "module:qualname" | null}}`, or
  `null` for a checkpoint saved from a bound state;
- `"state"`: `{state key: structure}` for every params/buffers entry, in order; a
  structure is `null`, a list, `{"tuple": [...]}`, `{"dict": {...}}` or
  `{"leaf": tensor name}`;
- `"leaves"`: `{tensor name: {"dtype": JAX dtype name}}`, plus `"impl"` (the PRNG
  implementation) and `"shape"` for typed PRNG keys, which are stored as their
  `jax.random.key_data`.

Values in `config` and `aux` are JSON, with tuples as `{"tuple": [...]}` and dicts as
`{"dict": {...}}`, so that tuples stay tuples and `1`, `1.0` and `True` stay apart.

Reading validates the whole header before any tensor is read: lengths and offsets
are checked against the file size (no allocation trusts a length from the file), and
the metadata is parsed as data only. Nothing from the file is imported or executed.
"""

import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, NoReturn

import jax
import numpy as np
import numpy.typing as npt

from .._leaves import LeafAddress
from .._module import as_module, tree_state
from .._types import GlobalConfig, StructureTree

FORMAT = "hax.checkpoint"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit
MAX_DIMS = 64  # NumPy's limit on an array's number of axes
MAX_DIM = 2**62  # larger sizes overflow NumPy's index type
MAX_NESTING = 100  # metadata deeper than this is refused before it is walked

# JAX dtype name -> safetensors dtype code, for every dtype both support.
DTYPE_CODES = {
    "bool": "BOOL",
    "int8": "I8",
    "uint8": "U8",
    "int16": "I16",
    "uint16": "U16",
    "int32": "I32",
    "uint32": "U32",
    "int64": "I64",
    "uint64": "U64",
    "float16": "F16",
    "bfloat16": "BF16",
    "float32": "F32",
    "float64": "F64",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
    "complex64": "C64",
}
CODE_DTYPES = {code: np.dtype(jax.numpy.dtype(name)) for name, code in DTYPE_CODES.items()}


class CheckpointFormatError(ValueError):
    """The file is not a valid HAX checkpoint: truncated, not safetensors, a corrupt
    or hostile header, bad metadata, or a newer format version."""


def x64_problem(name: str, dtype: str) -> str | None:
    """Why JAX cannot hold leaf `name` of `dtype` in this process (64-bit types off)."""
    if jax.dtypes.canonicalize_dtype(dtype) == np.dtype(dtype):
        return None
    return (
        f"{name} holds {dtype}, which JAX keeps only with 64-bit types on; "
        "enable them with jax.config.update('jax_enable_x64', True)"
    )


def fail(path: str, problem: str) -> NoReturn:
    raise CheckpointFormatError(f"{path}: {problem}")


# ---------------------------------------------------------------- inputs


def as_state(
    obj: Any, who: str
) -> tuple[dict[str, Any], StructureTree | None, GlobalConfig | None]:
    """`(state, tree or None, config or None)` from a tree, a module `(tree, config)` or
    a bound state (the flat dict of `hax.bind_module`)."""
    module = as_module(obj, partial=True)
    if module is not None:
        tree, config = module
        return tree_state(tree), tree, config if isinstance(obj, tuple) else None
    if isinstance(obj, dict):
        for key in obj:
            check_state_key(key, who)
        return dict(obj), None, None
    raise TypeError(
        f"{who}: expected a structure tree, a module `(tree, config)` or a bound state "
        f"(the dict of hax.bind_module), found {type(obj).__name__}"
    )


def check_state_key(key: Any, who: str) -> LeafAddress:
    """A bound state's key is an entry address: `[node/...]params|buffers/name`."""
    try:
        return LeafAddress.parse_entry(key)
    except ValueError:
        raise ValueError(
            f"{who}: state key {key!r} is not a leaf name such as '0/params/weight'; pass "
            "a structure tree, a module `(tree, config)`, or the state of hax.bind_module"
        ) from None


# ---------------------------------------------------------------- JSON values


def encode_value(value: Any, where: str) -> Any:
    """A JSON-like value (aux, config) as JSON that keeps tuples and int/float/bool apart."""
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if kind is tuple:
        return {"tuple": [encode_value(v, f"{where}[{i}]") for i, v in enumerate(value)]}
    if kind is list:
        return [encode_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if kind is dict:
        for k in value:
            if type(k) is not str:
                raise TypeError(f"{where}: dict keys must be str, found {k!r}")
        return {"dict": {k: encode_value(v, f"{where}[{k!r}]") for k, v in value.items()}}
    raise TypeError(
        f"{where}: a {kind.__name__} cannot be saved; aux and config values must be "
        "JSON-like (bool, int, float, str, None, and tuples, lists and str-keyed dicts of them)"
    )


def decode_value(obj: Any, path: str, where: str) -> Any:
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if type(obj) is list:
        return [decode_value(v, path, where) for v in obj]
    if type(obj) is dict and len(obj) == 1:
        if type(obj.get("tuple")) is list:
            return tuple(decode_value(v, path, where) for v in obj["tuple"])
        if type(obj.get("dict")) is dict:
            return {k: decode_value(v, path, where) for k, v in obj["dict"].items()}
    fail(path, f"metadata {where}: not an encoded value: {_short(obj)}")


# ---------------------------------------------------------------- pytree structures


def encode_structure(value: Any, address: LeafAddress, leaves: list[tuple[str, Any]]) -> Any:
    """The JSON structure of a params/buffers entry; appends `(leaf name, leaf)`."""
    kind = type(value)
    if value is None:
        return None
    if kind is dict:
        for k in value:
            if type(k) is not str:
                raise TypeError(f"save: {address}: dict keys must be str to be saved, found {k!r}")
        return {
            "dict": {k: encode_structure(v, address.child(k), leaves) for k, v in value.items()}
        }
    if kind is list or kind is tuple:
        items = [encode_structure(v, address.child(i), leaves) for i, v in enumerate(value)]
        return items if kind is list else {"tuple": items}
    leaves.append((str(address), value))
    return {"leaf": str(address)}


def structure_leaves(obj: Any, path: str, where: str) -> Iterator[str]:
    """The tensor names of a structure, in order; a malformed structure fails."""
    if obj is None:
        return
    if type(obj) is list:
        for v in obj:
            yield from structure_leaves(v, path, where)
        return
    if type(obj) is dict and len(obj) == 1:
        if type(obj.get("leaf")) is str:
            yield obj["leaf"]
            return
        if type(obj.get("tuple")) is list:
            for v in obj["tuple"]:
                yield from structure_leaves(v, path, where)
            return
        if type(obj.get("dict")) is dict:
            for v in obj["dict"].values():
                yield from structure_leaves(v, path, where)
            return
    fail(path, f"metadata state {where!r}: not a pytree structure: {_short(obj)}")


def build_structure(obj: Any, leaf: Callable[[str], Any]) -> Any:
    """The pytree of a validated structure, with `leaf(name)` at each leaf."""
    if obj is None:
        return None
    if type(obj) is list:
        return [build_structure(v, leaf) for v in obj]
    if "leaf" in obj:
        return leaf(obj["leaf"])
    if "tuple" in obj:
        return tuple(build_structure(v, leaf) for v in obj["tuple"])
    return {k: build_structure(v, leaf) for k, v in obj["dict"].items()}


def _short(obj: Any) -> str:
    text = json.dumps(obj)
    return text if len(text) <= 80 else text[:77] + "..."


# ---------------------------------------------------------------- reading the header


@dataclass(frozen=True)
class Tensor:
    """Where a tensor's bytes are: `[begin, end)` from the start of the file."""

    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class LeafInfo:
    """A saved leaf: its shape and JAX dtype name (`"bfloat16"`, `"key<fry>"`), and for a
    typed PRNG key the implementation (`"threefry2x32"`), else `None`."""

    shape: tuple[int, ...]
    dtype: str
    impl: str | None = None


@dataclass(frozen=True)
class NodeInfo:
    """A saved node: its `aux` and the import path of its apply (`"module:qualname"`),
    which is informational: loading never imports it."""

    aux: dict[str, Any]
    apply: str | None


@dataclass(frozen=True)
class Contents:
    """A checkpoint's header, validated: everything but the tensors' bytes."""

    path: str
    tensors: dict[str, Tensor]
    config: GlobalConfig | None
    nodes: dict[str, NodeInfo] | None
    state: dict[str, Any]  # state key -> JSON structure
    leaves: dict[str, LeafInfo]


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _parse_json(text: str | bytes, path: str, what: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, depth
        fail(path, f"{what} is not valid JSON ({type(e).__name__}: {str(e)[:200]})")


def read_contents(f: BinaryIO, path: str) -> Contents:
    """Read and validate the header and metadata of an open checkpoint."""
    raw, size = _read_header(f, path)
    return parse_header(raw, size, path)


def _read_header(f: BinaryIO, path: str) -> tuple[bytes, int]:
    """The raw JSON header of an open safetensors file, and the file's size."""
    size = os.fstat(f.fileno()).st_size
    if size < 8:
        fail(
            path, f"the file has {size} bytes, fewer than a safetensors header; {_NOT_SAFETENSORS}"
        )
    n = int.from_bytes(f.read(8), "little")
    if n > size - 8:
        fail(path, f"the header claims {n} bytes but the file has {size} bytes; {_NOT_SAFETENSORS}")
    if n > MAX_HEADER_BYTES:
        fail(path, f"the header claims {n} bytes, more than the limit {MAX_HEADER_BYTES}")
    raw = f.read(n)
    if len(raw) != n:
        fail(path, f"the header is cut short; {_NOT_SAFETENSORS}")
    return raw, size


_NOT_SAFETENSORS = "it is truncated or not a safetensors file"


def parse_header(raw: bytes, size: int, path: str) -> Contents:
    """Validate a header (the JSON after the 8 length bytes) of a file of `size` bytes.

    `save` runs this on the header it is about to write, so that it never writes a
    file this refuses."""
    metadata, tensors = _tensor_table(raw, size, path)
    if type(metadata) is not dict or metadata.get("format") != FORMAT:
        fail(
            path,
            "the file is a safetensors file but not a HAX checkpoint (its __metadata__ has no "
            f"format {FORMAT!r}); read it with safetensors.safe_open",
        )
    return _contents(metadata, tensors, path)


def _tensor_table(raw: bytes, size: int, path: str) -> tuple[Any, dict[str, Tensor]]:
    """`(__metadata__ or None, tensors)` of any safetensors header, validated."""
    if not raw.startswith(b"{"):
        fail(path, f"the header does not start with a JSON object; {_NOT_SAFETENSORS}")
    header = _parse_json(raw, path, "the safetensors header")
    if type(header) is not dict:
        fail(path, f"the safetensors header is not a JSON object; {_NOT_SAFETENSORS}")
    metadata = header.pop("__metadata__", None)
    return metadata, _tensors(header, 8 + len(raw), size, path)


def read_safetensors(path: str | os.PathLike[str]) -> dict[str, npt.NDArray[Any]]:
    """Every tensor of a safetensors file by name, as NumPy arrays (bfloat16 too): e.g.
    the `model.safetensors` that Hugging Face's `save_pretrained` writes. A directory
    is read through its `model.safetensors`, or through the shards its
    `model.safetensors.index.json` names. Malformed files raise
    `CheckpointFormatError`; nothing in them is executed."""
    path = os.fspath(path)
    if os.path.isdir(path):
        index = os.path.join(path, "model.safetensors.index.json")
        if not os.path.exists(index):
            return read_safetensors(os.path.join(path, "model.safetensors"))
        with open(index, "rb") as f:
            weight_map = _parse_json(f.read(), index, "the index").get("weight_map")
        if type(weight_map) is not dict:
            fail(index, "the index has no weight_map object")
        out: dict[str, npt.NDArray[Any]] = {}
        for shard in dict.fromkeys(weight_map.values()):
            if type(shard) is not str or os.path.basename(shard) != shard:
                fail(index, f"shard {_short(shard)} is not a file name in {path}")
            out.update(read_safetensors(os.path.join(path, shard)))
        return out
    with open(path, "rb") as f:
        raw, size = _read_header(f, path)
        _, tensors = _tensor_table(raw, size, path)
        arrays = {}
        for name, t in tensors.items():
            f.seek(t.begin)
            data = f.read(t.end - t.begin)
            if len(data) != t.end - t.begin:
                fail(path, f"tensor {name!r}: the file ended early")
            arrays[name] = np.frombuffer(data, t.dtype).reshape(t.shape).copy()
        return arrays


def _tensors(header: dict[str, Any], start: int, size: int, path: str) -> dict[str, Tensor]:
    tensors: dict[str, Tensor] = {}
    for name, entry in header.items():
        where = f"tensor {name!r}"
        if type(entry) is not dict or set(entry) != {"dtype", "shape", "data_offsets"}:
            fail(
                path, f"{where}: expected keys dtype, shape and data_offsets, found {_short(entry)}"
            )
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if type(dtype) is not str or dtype not in CODE_DTYPES:
            fail(path, f"{where}: unsupported dtype {_short(dtype)}; known: {sorted(CODE_DTYPES)}")
        if type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape):
            fail(path, f"{where}: shape {_short(shape)} is not a list of non-negative ints")
        if len(shape) > MAX_DIMS:
            fail(path, f"{where}: shape has {len(shape)} axes, more than {MAX_DIMS}")
        if (
            type(offsets) is not list
            or len(offsets) != 2
            or not all(type(o) is int for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            fail(
                path,
                f"{where}: data_offsets {_short(offsets)} is not [begin, end], 0 <= begin <= end",
            )
        itemsize = CODE_DTYPES[dtype].itemsize
        if math.prod(shape) * itemsize != offsets[1] - offsets[0]:
            fail(
                path,
                f"{where}: shape {shape} of {dtype} needs {math.prod(shape) * itemsize} bytes but "
                f"data_offsets {offsets} span {offsets[1] - offsets[0]}",
            )
        if any(d >= MAX_DIM for d in shape):  # an empty tensor with a huge axis
            fail(path, f"{where}: shape {_short(shape)} has an axis of 2**62 or more")
        tensors[name] = Tensor(
            CODE_DTYPES[dtype], tuple(shape), start + offsets[0], start + offsets[1]
        )
    # Tensors must tile the data area exactly: no gap, no overlap, nothing past the end.
    position = start
    for name, t in sorted(tensors.items(), key=lambda item: (item[1].begin, item[1].end)):
        if t.begin != position:
            problem = "overlaps the previous tensor" if t.begin < position else "leaves a gap"
            fail(path, f"tensor {name!r}: data_offsets {problem}; the header is corrupt")
        position = t.end
    if position != size:
        fail(
            path,
            f"the tensors end at byte {position} but the file has {size} bytes; "
            "it is truncated or corrupt",
        )
    return tensors


def _contents(metadata: dict[str, Any], tensors: dict[str, Tensor], path: str) -> Contents:
    version = metadata.get("format_version")
    if (
        type(version) is not str
        or not (version.isascii() and version.isdigit())
        or len(version) > 9
    ):
        fail(path, f"metadata format_version {_short(version)} is not a version number")
    if int(version) != FORMAT_VERSION:
        newer = int(version) > FORMAT_VERSION
        fail(
            path,
            f"checkpoint format version {version} "
            + ("was written by a newer HAX; upgrade HAX to read it" if newer else "is unknown")
            + f" (this HAX reads version {FORMAT_VERSION})",
        )
    fields = {}
    for key in ("config", "nodes", "state", "leaves"):
        text = metadata.get(key)
        if type(text) is not str:
            fail(path, f"metadata {key!r} is missing or not a string")
        fields[key] = _parse_json(text, path, f"metadata {key!r}")
        if _nesting(fields[key]) > MAX_NESTING:
            fail(path, f"metadata {key!r} is nested more than {MAX_NESTING} levels deep")
    config = _config(fields["config"], path)
    nodes = _nodes(fields["nodes"], path)
    state, leaves = _state(fields["state"], fields["leaves"], tensors, path)
    return Contents(path, tensors, config, nodes, state, leaves)


def _nesting(obj: Any) -> int:
    """How deeply JSON lists and objects nest in `obj`, counted without recursion."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if type(item) is dict else item if type(item) is list else ()
        if children:
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _config(obj: Any, path: str) -> GlobalConfig | None:
    config = decode_value(obj, path, "config")
    if config is not None and type(config) is not dict:
        fail(path, f"metadata config is a {type(config).__name__}, not a dict")
    return config


def _nodes(obj: Any, path: str) -> dict[str, NodeInfo] | None:
    if obj is None:
        return None
    if type(obj) is not dict:
        fail(path, "metadata nodes is not an object")
    nodes = {}
    for node, info in obj.items():
        if type(info) is not dict or set(info) != {"aux", "apply"}:
            fail(path, f"metadata nodes[{node!r}]: expected keys aux and apply")
        aux = decode_value(info["aux"], path, f"nodes[{node!r}].aux")
        if type(aux) is not dict or type(info["apply"]) not in (str, type(None)):
            fail(path, f"metadata nodes[{node!r}]: aux must be a dict and apply a str or null")
        nodes[node] = NodeInfo(aux, info["apply"])
    return nodes


def _state(
    state: Any, leaves: Any, tensors: dict[str, Tensor], path: str
) -> tuple[dict[str, Any], dict[str, LeafInfo]]:
    if type(state) is not dict or type(leaves) is not dict:
        fail(path, "metadata state and leaves must be objects")
    for key in state:
        try:
            check_state_key(key, "metadata state")
        except ValueError as e:
            fail(path, str(e))
    named = [name for key, s in state.items() for name in structure_leaves(s, path, key)]
    if len(set(named)) != len(named) or set(named) != set(tensors) or set(leaves) != set(tensors):
        fail(
            path,
            "metadata state and leaves do not name each tensor of the file exactly once; "
            "the file is corrupt",
        )
    infos = {name: _leaf_info(name, leaves[name], tensors[name], path) for name in named}
    return state, infos


def _leaf_info(name: str, info: Any, tensor: Tensor, path: str) -> LeafInfo:
    where = f"metadata leaves[{name!r}]"
    if type(info) is not dict or type(info.get("dtype")) is not str:
        fail(path, f"{where}: expected an object with a dtype")
    if set(info) == {"dtype"}:
        if info["dtype"] != tensor.dtype.name:
            fail(path, f"{where}: dtype {info['dtype']!r} but the tensor holds {tensor.dtype.name}")
        return LeafInfo(tensor.shape, info["dtype"])
    impl, shape = info.get("impl"), info.get("shape")
    if (
        set(info) != {"dtype", "impl", "shape"}
        or type(impl) is not str
        or type(shape) is not list
        or tensor.dtype != np.uint32
        or tuple(shape) != tensor.shape[: len(shape)]
        or len(shape) == len(tensor.shape)
    ):
        fail(
            path,
            f"{where}: a PRNG key needs dtype, impl and shape, with key data of dtype uint32 "
            "and the key's shape followed by the key data's own axes",
        )
    return LeafInfo(tuple(shape), info["dtype"], impl)


def read_tensor(f: BinaryIO, contents: Contents, name: str) -> npt.NDArray[Any]:
    """The bytes of tensor `name` as a NumPy array (a copy, independent of the file)."""
    t = contents.tensors[name]
    f.seek(t.begin)
    data = f.read(t.end - t.begin)
    if len(data) != t.end - t.begin:
        fail(
            contents.path, f"tensor {name!r}: the file ended early (was it changed while loading?)"
        )
    array = np.frombuffer(data, t.dtype).reshape(t.shape)
    if t.dtype == np.bool_ and array.size and int(array.view(np.uint8).max()) > 1:
        fail(contents.path, f"tensor {name!r}: bool data holds bytes other than 0 and 1")
    return array
