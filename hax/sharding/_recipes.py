"""Recipes: data parallel, FSDP, Megatron-style tensor parallel, and their combination."""

from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .._module import tree_state
from .._types import StructureTree
from ._rules import Axis, Rules, partition_specs

# Megatron-style pairs: the first matmul of a block splits its outputs over the model
# axis (column parallel), the second its inputs (row parallel), so each device keeps
# its slice of the hidden activations and one all-reduce per block joins them.
# Names are PyTorch's (TransformerEncoderLayer, MultiheadAttention) and nanoGPT's.
_COLUMN_ROW = (
    ("**/self_attn", {"3*embed_dim": None}),
    ("**/self_attn/out_proj", {"in_features": None}),
    ("**/linear1", {"out_features": None}),
    ("**/linear2", {"in_features": None}),
    ("**/attn/c_attn", {"out_features": None}),
    ("**/attn/c_proj", {"in_features": None}),
    ("**/mlp/c_fc", {"out_features": None}),
    ("**/mlp/c_proj", {"in_features": None}),
)


def batch_sharding(mesh: Mesh, axis: Axis = "data") -> NamedSharding:
    """Inputs split along their first (batch) dimension over `axis`, for data
    parallelism: `jax.device_put(batch, hax.sharding.batch_sharding(mesh))`."""
    return NamedSharding(mesh, PartitionSpec(axis))  # type: ignore[no-untyped-call]  # untyped in jax


def replicated(tree: StructureTree, mesh: Mesh) -> dict[str, Any]:
    """Every param and buffer on every device: the params of data parallelism."""
    return partition_specs(tree, mesh, {})


def tensor_parallel(tree: StructureTree, axis: str = "model") -> list[tuple[str, Rules]]:
    """Megatron-style overrides for `partition_specs(..., overrides=...)`: in every
    transformer block, `linear1`/`c_fc`/`c_attn` and the packed attention input
    projection split their outputs over `axis`, `linear2`/`c_proj`/`out_proj` their
    inputs. Only the patterns that match a node of `tree` are returned."""
    from ..surgery import paths

    return [
        (glob, {name: axis for name in rules}) for glob, rules in _COLUMN_ROW if paths(tree, glob)
    ]


def fsdp(
    tree: StructureTree, mesh: Mesh, specs: dict[str, Any], axis: str = "data"
) -> dict[str, Any]:
    """Add FSDP to `specs` (from `partition_specs`): every array is also split over
    `axis` along its largest dimension that is not sharded yet and divides evenly
    (arrays with none stay as they were, e.g. scalars). XLA gathers each param where it
    is used, so each device stores 1/`mesh.shape[axis]` of the params."""
    size = mesh.shape[axis]
    state = tree_state(tree)

    def add(x: Any, spec: PartitionSpec) -> PartitionSpec:
        shape = tuple(getattr(x, "shape", ()))
        entries = list(spec) + [None] * (len(shape) - len(spec))
        free = [
            i
            for i, e in enumerate(entries)
            if e is None and shape[i] % size == 0 and shape[i] >= size
        ]
        if not free or any(axis in ((e,) if isinstance(e, str) else (e or ())) for e in entries):
            return spec
        best = max(free, key=lambda i: shape[i])
        entries[best] = axis
        while entries and entries[-1] is None:
            entries.pop()
        return PartitionSpec(*entries)  # type: ignore[no-untyped-call]  # untyped in jax

    return {
        key: jax.tree.map(add, state[key], spec, is_leaf=lambda x: isinstance(x, PartitionSpec))
        for key, spec in specs.items()
    }
