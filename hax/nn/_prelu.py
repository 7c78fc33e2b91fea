"""`PReLU`: a leaky ReLU whose negative slope is learned, as `torch.nn.PReLU`."""

from typing import Any

import jax.numpy as jnp
from jaxtyping import Array, Float
from typing_extensions import TypedDict

from .._torch_attrs import dtype_of
from .._types import GlobalConfig, InputArray, Module, StructureTree
from .._validate import validate
from . import _functional as F, _init
from ._layer import ConvertChild, layer


class PReLUParams(TypedDict):
    weight: Float[Array, " num_parameters"]  # leading space: not a name for linters


def prelu_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[InputArray, "*shape"]
) -> tuple[StructureTree, Float[Array, "*shape"]]:
    """`x` where `x > 0`, else `weight * x`, one slope per channel (axis 1) or one for all."""
    return tree, F.prelu(x, tree["params"]["weight"])


def PReLU(num_parameters: int = 1, init: float = 0.25, *, dtype: Any = jnp.float32) -> Module:
    """`x` where `x > 0`, else `weight * x`, as `torch.nn.PReLU`.

    Param `weight` of shape `(num_parameters,)`, filled with `init` like PyTorch's:
    one slope shared by every channel (`num_parameters=1`), or one per channel of the
    input's axis 1 (`num_parameters=C`). `dtype` is the param's dtype.
    """
    if (
        isinstance(num_parameters, bool)
        or not isinstance(num_parameters, int)
        or num_parameters < 1
    ):
        raise ValueError(f"PReLU: num_parameters must be a positive int, found {num_parameters!r}")
    weight = _init.full((num_parameters,), init, dtype)
    tree = _PRELU.node({"weight": weight}, num_parameters=num_parameters, init=float(init))
    return validate(tree), {}


def _convert(m: Any, convert_child: ConvertChild) -> Module:
    return PReLU(m.num_parameters, m.init, dtype=dtype_of(m))


_PRELU = layer(
    "PReLU",
    prelu_apply,
    params=PReLUParams,
    aux={"num_parameters": int, "init": float},
    torch="torch.nn.PReLU",
    converter=_convert,
)
