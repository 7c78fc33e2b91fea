"""`from_torch`: fill a HAX tree with the tensors of a PyTorch `state_dict`.

PyTorch is imported only when a function here is called, so `import hax.interop`
works without it.
"""

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np

from .._leaves import LeafAddress, entry_leaves, node_entries
from .._torch_attrs import BIT_VIEWS, NON_PERSISTENT
from .._tree import get_subtree, named_nodes, structure_tree_map
from .._types import StructureTree
from ..checkpoint._format import read_safetensors
from ..schema._errors import a
from ..surgery._tie import tied_entries

_FIX = (
    "To fix: build `like` with the same layers and constructor arguments as the torch "
    "model (hax.interop.convert does this from the torch module), rename or drop torch "
    "keys so that 'a.b.weight' names the HAX leaf 'a/b/params/weight' (or "
    "'a/b/buffers/weight'), or pass strict=False to skip keys missing on either side "
    "(shape and dtype mismatches always raise; hax.surgery transfers weights by shape)."
)


def import_torch(who: str) -> Any:
    """The `torch` module, or an `ImportError` that says how to install it."""
    try:
        import torch
    except ImportError as err:
        raise ImportError(
            f"{who} needs PyTorch, which is not installed: pip install torch"
        ) from err
    return torch


def tensor_to_numpy(torch: Any, value: Any) -> np.ndarray:
    """A NumPy copy of a tensor (never a view of torch's memory, which torch may later
    change in place); bfloat16 and float8 tensors keep their exact bits (`ml_dtypes`)."""
    name = str(value.dtype).removeprefix("torch.")
    if name in BIT_VIEWS:
        bits, dtype = BIT_VIEWS[name]
        return np.array(value.view(getattr(torch, bits)).numpy(force=True)).view(dtype)
    # force=True: detached, on the CPU, conjugation and negation resolved; may be a view.
    return np.array(value.numpy(force=True))


@dataclass(frozen=True)
class Mismatch:
    """One difference between a torch `state_dict` and a HAX tree.

    `hax_path` is the HAX leaf (`"layer1/0/conv1/params/weight"`), `None` when no HAX
    leaf matches `torch_key`; a shape is `None` on the side that lacks the entry.
    `problem` says what is wrong in a few words.
    """

    hax_path: str | None
    torch_key: str
    hax_shape: tuple[int, ...] | None
    torch_shape: tuple[int, ...] | None
    problem: str

    def __str__(self) -> str:
        if self.hax_path is None:
            node, _, name = self.torch_key.rpartition(".")
            where = node.replace(".", "/") + "/" if node else ""
            return (
                f"torch {self.torch_key!r} (shape {self.torch_shape}): {self.problem}; looked "
                f"for {where}params/{name} and {where}buffers/{name}"
            )
        shapes = f"HAX shape {self.hax_shape}"
        if self.torch_shape is not None:
            shapes += f", torch shape {self.torch_shape}"
        return f"{self.hax_path} <- torch {self.torch_key!r}: {self.problem} ({shapes})"


class StateDictMismatchError(ValueError):
    """A torch `state_dict` does not fit a HAX tree; `mismatches` lists every problem.

    `str(err)` lists one mismatch a line, with both paths and both shapes, then how
    to fix it.
    """

    def __init__(self, mismatches: list[Mismatch]) -> None:
        self.mismatches: list[Mismatch] = list(mismatches)
        n = len(self.mismatches)
        head = (
            f"{n} mismatch{'es' if n != 1 else ''} between the torch state_dict and the HAX tree:"
        )
        super().__init__("\n".join([head, *(f"  {m}" for m in self.mismatches), _FIX]))


@dataclass(frozen=True)
class _Slot:
    """A HAX leaf that a torch key can fill."""

    hax_path: str
    shape: tuple[int, ...]
    dtype: Any
    persistent: bool = True

    @property
    def is_key(self) -> bool:
        return bool(jnp.issubdtype(self.dtype, jax.dtypes.prng_key))

    @property
    def optional(self) -> bool:
        """A leaf torch's `state_dict` need not have: a PRNG key (HAX's own) or a buffer
        torch keeps out of it (non-persistent)."""
        return self.is_key or not self.persistent


def torch_named_leaves(tree: StructureTree) -> Iterator[tuple[LeafAddress, Any, bool]]:
    """`(address, leaf, persistent)` for every array leaf of `tree`; `address.dotted` is
    its torch key (`layer1/0/conv1/params/weight` is `"layer1.0.conv1.weight"`), and
    `persistent` is False for the buffers torch keeps out of its `state_dict`."""
    for path, node in named_nodes(tree):
        aux: dict[str, Any] = node["aux"]
        kept_out = aux.get(NON_PERSISTENT, ())
        for entry, value in node_entries(path, node):
            persistent = entry.kind == "params" or entry.name not in kept_out
            for address, leaf in entry_leaves(entry, value):
                yield address, leaf, persistent


def tied_keys(tree: StructureTree) -> dict[str, str]:
    """The torch keys of tied leaves (`hax.surgery.tie`): destination -> source."""
    out = {}
    for dst, src in tied_entries(tree):
        value = get_subtree(tree, src.path)[src.kind][src.name]  # type: ignore[literal-required]  # params or buffers
        for address, _ in entry_leaves(src, value):
            out[LeafAddress(dst.path, dst.kind, dst.name, address.keys).dotted] = address.dotted
    return out


def _slots(like: StructureTree) -> tuple[dict[str, _Slot], list[Mismatch]]:
    """Every array leaf of `like` by the torch key that names it; two leaves that one
    key would name (a param and a buffer of the same name) are mismatches."""
    slots: dict[str, _Slot] = {}
    clashes: list[Mismatch] = []
    for address, leaf, persistent in torch_named_leaves(like):
        key, hax_path = address.dotted, str(address)
        slot = _Slot(hax_path, tuple(leaf.shape), leaf.dtype, persistent)
        if key in slots:
            clashes.append(
                Mismatch(
                    hax_path,
                    key,
                    slot.shape,
                    None,
                    f"{slots[key].hax_path} has the same torch key; rename one of them",
                )
            )
            continue
        slots[key] = slot
    return slots, clashes


def _as_state_dict(source: Any) -> tuple[Any, Mapping[Any, Any]]:
    """`(torch or None, state_dict)`: torch is imported only for a module or a mapping
    that holds tensors; a safetensors file is read without it."""
    if isinstance(source, str | os.PathLike):
        return None, read_safetensors(source)
    if isinstance(source, Mapping) and all(
        isinstance(v, np.ndarray | np.generic) for v in source.values()
    ):
        return None, source
    torch = import_torch("hax.interop.from_torch")
    if isinstance(source, torch.nn.Module):
        state: Mapping[Any, Any] = source.state_dict()
        return torch, state
    if isinstance(source, Mapping):
        return torch, source
    raise TypeError(
        "from_torch: expected a torch.nn.Module, a state_dict (a mapping from names to "
        "tensors) or the path of a safetensors file, found "
        f"{type(source).__name__}"
    )


def _check(torch: Any, value: Any, slot: _Slot) -> tuple[np.ndarray | None, str | None]:
    """The value to load into `slot` as NumPy, or why it cannot be loaded."""
    if torch is not None and isinstance(value, torch.Tensor):
        if value.is_meta:
            return None, "a meta tensor has no data (materialise the model's weights first)"
        if value.layout != torch.strided:
            return None, f"a {value.layout} tensor; pass dense tensors (`.to_dense()`)"
        array = tensor_to_numpy(torch, value)
    elif isinstance(value, np.ndarray | np.generic):
        array = np.array(value)
    else:
        return None, f"the torch value is {type(value).__name__}, not a tensor"
    if slot.is_key:
        return None, "a PRNG key buffer is HAX's own; it cannot be loaded from a tensor"
    if tuple(array.shape) != slot.shape:
        return None, "shapes differ"
    if _kind(array.dtype) > _kind(slot.dtype):
        return None, f"a {array.dtype} tensor would be truncated to the HAX leaf's {slot.dtype}"
    if jnp.issubdtype(slot.dtype, jnp.integer) and array.size and not _fits(array, slot.dtype):
        return (
            None,
            f"values from {array.min()} to {array.max()} do not fit the leaf's {slot.dtype}",
        )
    return array, None


def _fits(array: np.ndarray, dtype: Any) -> bool:
    """Whether every value of an integer or bool array is a value of integer `dtype`."""
    info = np.iinfo(dtype)
    return bool(array.min() >= info.min and array.max() <= info.max)


def _same_values(torch: Any, a: Any, b: Any) -> bool:
    def numpy(x: Any) -> np.ndarray:
        return (
            tensor_to_numpy(torch, x)
            if torch is not None and isinstance(x, torch.Tensor)
            else np.asarray(x)
        )

    x, y = numpy(a), numpy(b)
    return x.shape == y.shape and bool(np.array_equal(x, y))


def _kind(dtype: Any) -> int:
    """0 for bool, 1 for integers, 2 for reals, 3 for complex: casting down loses values."""
    kinds = (jnp.bool_, jnp.integer, jnp.floating, jnp.complexfloating)
    return next(i for i, kind in enumerate(kinds) if jnp.issubdtype(dtype, kind))


def from_torch(
    module_or_state_dict: Any, like: StructureTree, *, strict: bool = True
) -> StructureTree:
    """A copy of the HAX tree `like` holding the tensors of a PyTorch model.

    The torch key `"layer1.0.conv1.weight"` fills the leaf `weight` of the node at path
    `("layer1", "0", "conv1")`, in its `params` or its `buffers` (wherever `like` has
    it). HAX layers use PyTorch's layouts, so shapes must match exactly; nothing is
    reshaped or transposed.

    - **dtypes**: each tensor is cast to the dtype of the leaf it fills in `like` (so
      torch's int64 `num_batches_tracked` becomes JAX's default int, and a float32
      tensor fills a bfloat16 leaf by rounding). A cast to a lower kind (complex to
      real, real to integer, integer to bool) is a mismatch, since it would truncate.
    - **HAX-only leaves**: PRNG key buffers (e.g. `Dropout`'s `rng`) have no torch
      counterpart; they are kept from `like` and may be absent from the state_dict.
      Any other leaf of `like` must have a torch key.
    - **copies**: tensors are copied (`np.array(t.numpy(force=True))`), never shared, so
      later in-place changes to the torch model do not reach the HAX tree; bfloat16
      and float8 keep their exact bits. Arrays land on JAX's default device.
    - Tied weights (one tensor under two keys) become independent copies.

    **Arguments:**
    - `module_or_state_dict`: a `torch.nn.Module` (its `state_dict()` is read) or a
      mapping from torch keys to tensors (NumPy arrays are accepted too).
    - `like`: a HAX tree with the same architecture, e.g. built by the `hax.nn`
      constructors with the torch model's arguments, or by `hax.interop.convert`.
    - `strict`: with `True`, a torch key with no HAX leaf and a HAX leaf with no torch
      key are errors; with `False` they are skipped (the HAX leaf keeps its value
      from `like`), as PyTorch's `load_state_dict(strict=False)`. Shape and dtype
      mismatches raise either way.

    **Returns:** the filled tree; `like` is not modified.

    **Raises:** `StateDictMismatchError` (a `ValueError`) listing every mismatch at
    once, each with its HAX path, torch key and both shapes; `ImportError` if PyTorch
    is not installed.

    **Example:**
    ```python
    tree, config = hax.nn.Linear(4, 2, rng=0)
    tree = hax.interop.from_torch(torch.nn.Linear(4, 2), tree)
    ```
    """
    if isinstance(cast(Any, like), tuple):
        raise TypeError(
            "from_torch: `like` must be a structure tree, found a tuple; pass the tree of a "
            "module `(tree, config)`: from_torch(state_dict, module[0])"
        )
    torch, state = _as_state_dict(module_or_state_dict)
    slots, mismatches = _slots(like)
    ties = tied_keys(like)
    loaded: dict[str, jax.Array] = {}
    for key, value in state.items():
        shape = tuple(value.shape) if hasattr(value, "shape") else None
        if not isinstance(key, str):
            mismatches.append(
                Mismatch(
                    None, repr(key), None, shape, f"the key is {a(type(key).__name__)}, not a str"
                )
            )
            continue
        slot = slots.get(key)
        if slot is None and key in ties:  # one HAX leaf: torch must agree it is shared
            source = state.get(ties[key])
            if source is not None and not _same_values(torch, value, source):
                mismatches.append(
                    Mismatch(
                        None,
                        key,
                        None,
                        shape,
                        f"HAX ties it to {ties[key]!r}, but the two tensors differ in torch",
                    )
                )
            continue
        if slot is None:
            if strict:
                mismatches.append(Mismatch(None, key, None, shape, "no HAX leaf has this name"))
            continue
        array, problem = _check(torch, value, slot)
        if array is None:
            mismatches.append(Mismatch(slot.hax_path, key, slot.shape, shape, str(problem)))
            continue
        loaded[key] = jnp.asarray(array.astype(slot.dtype, copy=False))
    if strict:
        mismatches.extend(
            Mismatch(slot.hax_path, key, slot.shape, None, "missing from the torch state_dict")
            for key, slot in slots.items()
            if key not in state and not slot.optional
        )
    if mismatches:
        raise StateDictMismatchError(mismatches)

    def fill_kind(node: dict[str, Any], path: tuple[str, ...], kind: str) -> dict[str, Any]:
        # Entry by entry, so that the order of `like`'s dict is kept.
        out = {}
        for entry, value in node_entries(path, node, (kind,)):
            named = entry_leaves(entry, value)
            new = [loaded.get(address.dotted, leaf) for address, leaf in named]
            out[entry.name] = jax.tree_util.tree_unflatten(jax.tree.structure(value), new)
        return out

    def fill(node: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
        return {
            **node,
            "params": fill_kind(node, path, "params"),
            "buffers": fill_kind(node, path, "buffers"),
        }

    filled: StructureTree = structure_tree_map(fill, like)
    return filled
