"""`to_torch`: the PyTorch `state_dict` of a HAX tree, the inverse of `from_torch`."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._tree import key_path_str, named_nodes
from .._types import STATE_KINDS, StructureTree
from ._from_torch import import_torch

# NumPy dtypes (from `ml_dtypes`) that torch reads bit for bit through an integer.
_BIT_VIEWS = {
    "bfloat16": ("int16", "bfloat16"),
    "float8_e4m3fn": ("int8", "float8_e4m3fn"),
    "float8_e5m2": ("int8", "float8_e5m2"),
}


def _tensor(torch: Any, value: jax.Array) -> Any:
    """A torch copy of an array (never a view of JAX's memory); bfloat16 and float8
    keep their exact bits."""
    array = np.array(value)  # a copy: a sharded array is gathered
    views = _BIT_VIEWS.get(array.dtype.name)
    if views is not None:
        bits, name = views
        return torch.from_numpy(array.view(bits)).view(getattr(torch, name))
    return torch.from_numpy(array)


def to_torch(tree: StructureTree) -> dict[str, Any]:
    """The PyTorch `state_dict` of a HAX tree: every param and buffer as a tensor,
    under the key `from_torch` reads it from (the leaf
    `layer1/0/conv1/params/weight` becomes `"layer1.0.conv1.weight"`).

    Load it into the matching torch model with `module.load_state_dict(...)`, which
    copies each tensor into the module's own (casting, e.g., HAX's int32
    `num_batches_tracked` to torch's int64). PRNG key buffers (e.g. `Dropout`'s `rng`)
    are HAX's own and are left out. Tensors are copies on the CPU; bfloat16 and
    float8 keep their exact bits; sharded arrays are gathered (every shard must be
    addressable from this process).

    **Raises:** `ValueError` when two leaves would get the same key (a param and a
    buffer of one node with the same name); `ImportError` without PyTorch.

    **Example:**
    ```python
    torch_model.load_state_dict(hax.interop.to_torch(tree))
    ```
    """
    torch = import_torch("hax.interop.to_torch")
    state: dict[str, Any] = {}
    owner: dict[str, str] = {}
    clashes = []
    for path, node in named_nodes(tree):
        for kind in STATE_KINDS:
            leaves = jax.tree_util.tree_flatten_with_path(node[kind])[0]  # type: ignore[literal-required]  # kind is params or buffers
            for key_path, leaf in leaves:
                if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
                    continue
                name = key_path_str(key_path)
                key = ".".join((*path, *name.split("/")))
                hax_path = "/".join((*path, kind, name))
                if key in owner:
                    clashes.append(f"  {hax_path} and {owner[key]} both become {key!r}")
                    continue
                owner[key] = hax_path
                state[key] = _tensor(torch, leaf)
    if clashes:
        raise ValueError(
            "hax.interop.to_torch: leaves with the same torch key:\n"
            + "\n".join(clashes)
            + "\nRename one of each pair (torch keys do not say whether a name is a "
            "param or a buffer)."
        )
    return state
