"""Reading a torch module's attributes without importing torch.

The converter that each `hax.nn` layer declares reads its torch counterpart's
constructor arguments with these; `hax.interop` maps dtypes with them too. torch is
never imported here: a torch module in hand means torch is loaded.
"""

import itertools
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

# Torch dtypes that NumPy lacks (`ml_dtypes` has them, by the same names), copied bit
# for bit through an integer of the same width.
BIT_VIEWS = {
    "bfloat16": ("int16", ml_dtypes.bfloat16),
    "float8_e4m3fn": ("int8", ml_dtypes.float8_e4m3fn),
    "float8_e5m2": ("int8", ml_dtypes.float8_e5m2),
}


def numpy_dtype(torch_dtype: Any) -> Any:
    """The JAX dtype holding a torch dtype's values (float64 and int64 become 32-bit
    unless `jax_enable_x64` is on)."""
    name = str(torch_dtype).removeprefix("torch.")
    dtype = BIT_VIEWS[name][1] if name in BIT_VIEWS else name
    try:
        return jax.dtypes.canonicalize_dtype(np.dtype(dtype))
    except TypeError:
        raise TypeError(f"torch dtype {torch_dtype} has no JAX counterpart") from None


def dtype_of(module: Any) -> Any:
    """The dtype of a torch module's first floating-point tensor (float32 if it has
    none): the `dtype=` to build its HAX counterpart with."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        if tensor.is_floating_point():
            return numpy_dtype(tensor.dtype)
    return jnp.float32


def has(tensor: Any) -> bool:
    """Whether an optional tensor attribute (`module.bias`) is there: torch sets it to
    `None` when the module was built without it."""
    return tensor is not None


NON_PERSISTENT = "non_persistent"
"""The `aux` key listing a converted node's buffers that torch keeps out of its
`state_dict` (`register_buffer(..., persistent=False)`): `to_torch` leaves them out and
`from_torch` does not require them."""
