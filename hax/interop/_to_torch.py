"""`to_torch`: the PyTorch `state_dict` of a HAX tree, the inverse of `from_torch`."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._torch_attrs import BIT_VIEWS
from .._types import StructureTree
from ._from_torch import import_torch, tied_keys, torch_named_leaves


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
    are HAX's own and are left out, and so are the buffers torch keeps out of its
    `state_dict` (listed in a converted node's `aux["non_persistent"]`). A tied param
    (`hax.surgery.tie`) appears under every torch name, as one tensor, as torch has it.
    Tensors are copies on the CPU; bfloat16 and float8 keep their exact bits; sharded
    arrays are gathered (every shard must be addressable from this process).

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
    for address, leaf, persistent in torch_named_leaves(tree):
        if not persistent or jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            continue
        key = address.dotted
        if key in owner:
            clashes.append(f"  {address} and {owner[key]} both become {key!r}")
            continue
        owner[key] = str(address)
        state[key] = _tensor(torch, leaf)
    for dst, src in tied_keys(tree).items():  # a shared Parameter, under each of its names
        state[dst] = state[src]
    if clashes:
        raise ValueError(
            "hax.interop.to_torch: leaves with the same torch key:\n"
            + "\n".join(clashes)
            + "\nRename one of each pair (torch keys do not say whether a name is a "
            "param or a buffer)."
        )
    return state
