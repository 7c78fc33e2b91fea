"""`to_torch`: the PyTorch `state_dict` of a HAX tree, the inverse of `from_torch`."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._torch_attrs import BIT_VIEWS
from .._types import StructureTree
from ._from_torch import import_torch, torch_named_leaves


def _tensor(torch: Any, value: jax.Array) -> Any:
    """A torch copy of an array (never a view of JAX's memory); bfloat16 and float8
    keep their exact bits."""
    array = np.array(value)  # a copy: a sharded array is gathered
    name = array.dtype.name
    if name in BIT_VIEWS:
        bits = BIT_VIEWS[name][0]
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
    for key, hax_path, leaf in torch_named_leaves(tree):
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            continue
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
