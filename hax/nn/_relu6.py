"""`ReLU6`: `min(max(x, 0), 6)`, as `torch.nn.ReLU6`."""

from jaxtyping import Array, Float

from .._types import GlobalConfig, InputArray, Module, StructureTree
from .._validate import validate
from . import _functional as F
from ._layer import from_attributes, layer


def relu6_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[InputArray, "*shape"]
) -> tuple[StructureTree, Float[Array, "*shape"]]:
    """`min(max(x, 0), 6)` elementwise; the gradient is 0 at 0 and 6, like PyTorch's."""
    return tree, F.relu6(x)


def ReLU6(inplace: bool = False) -> Module:
    """`min(max(x, 0), 6)`, as `torch.nn.ReLU6`. `inplace` is kept in aux and has no
    effect (JAX arrays are immutable)."""
    return validate(_RELU6.node(inplace=bool(inplace))), {}


_RELU6 = layer(
    "ReLU6",
    relu6_apply,
    aux={"inplace": bool},
    torch="torch.nn.ReLU6",
    converter=from_attributes(ReLU6, "inplace"),
)
