"""Activation layers: `ReLU`, `GELU`, `SiLU`, `Tanh`, `Sigmoid`, `Softmax`, `LogSoftmax`.

Each is a node with no params or buffers whose `aux` holds its constructor's
arguments; its apply calls the function of the same name in `hax.nn.functional`.
"""

from typing import Any

from jaxtyping import Array, Float

from .._types import ApplyFn, GlobalConfig, Module, StructureTree
from .._validate import validate
from ..schema import layer_spec, register_spec
from . import _functional as F
from ._functional import _check_approximate, _softmax_dim


def _module(apply: ApplyFn, aux: dict[str, Any]) -> Module:
    tree: StructureTree = {
        "params": {},
        "buffers": {},
        "aux": aux,
        "apply": apply,
        "submodules": {},
    }
    return validate(tree), {}


# ---------------------------------------------------------------- ReLU


def relu_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[Array, "*shape"]
) -> tuple[StructureTree, Float[Array, "*shape"]]:
    """`max(x, 0)` elementwise."""
    return tree, F.relu(x)


def ReLU(inplace: bool = False) -> Module:
    """`max(x, 0)`, as `torch.nn.ReLU`. `inplace` is kept in aux and has no effect
    (JAX arrays are immutable)."""
    return _module(relu_apply, {"inplace": bool(inplace)})


register_spec(relu_apply, layer_spec("ReLU", aux={"inplace": bool}))


# ---------------------------------------------------------------- GELU


def gelu_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[Array, "*shape"]
) -> tuple[StructureTree, Float[Array, "*shape"]]:
    """GELU elementwise, exact or tanh-approximated per `aux["approximate"]`."""
    return tree, F.gelu(x, approximate=tree["aux"]["approximate"])


def GELU(approximate: str = "none") -> Module:
    """GELU, as `torch.nn.GELU`: `approximate="none"` (exact, with erf) or `"tanh"`."""
    _check_approximate(approximate, "GELU")
    return _module(gelu_apply, {"approximate": approximate})


register_spec(gelu_apply, layer_spec("GELU", aux={"approximate": str}))


# ---------------------------------------------------------------- SiLU


def silu_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[Array, "*shape"]
) -> tuple[StructureTree, Float[Array, "*shape"]]:
    """`x * sigmoid(x)` elementwise."""
    return tree, F.silu(x)


def SiLU(inplace: bool = False) -> Module:
    """`x * sigmoid(x)`, as `torch.nn.SiLU`; `inplace` is kept in aux and has no effect."""
    return _module(silu_apply, {"inplace": bool(inplace)})


register_spec(silu_apply, layer_spec("SiLU", aux={"inplace": bool}))


# ---------------------------------------------------------------- Tanh, Sigmoid


def tanh_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[Array, "*shape"]
) -> tuple[StructureTree, Float[Array, "*shape"]]:
    """`tanh(x)` elementwise."""
    return tree, F.tanh(x)


def Tanh() -> Module:
    """`tanh(x)`, as `torch.nn.Tanh`."""
    return _module(tanh_apply, {})


register_spec(tanh_apply, layer_spec("Tanh"))


def sigmoid_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[Array, "*shape"]
) -> tuple[StructureTree, Float[Array, "*shape"]]:
    """`1 / (1 + exp(-x))` elementwise."""
    return tree, F.sigmoid(x)


def Sigmoid() -> Module:
    """`1 / (1 + exp(-x))`, as `torch.nn.Sigmoid`."""
    return _module(sigmoid_apply, {})


register_spec(sigmoid_apply, layer_spec("Sigmoid"))


# ---------------------------------------------------------------- Softmax, LogSoftmax


def softmax_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[Array, "*shape"]
) -> tuple[StructureTree, Float[Array, "*shape"]]:
    """Softmax over axis `aux["dim"]`."""
    return tree, F.softmax(x, tree["aux"]["dim"])


def Softmax(dim: int | None = None) -> Module:
    """Softmax over axis `dim`, as `torch.nn.Softmax`.

    `dim` is required: PyTorch's deprecated implicit choice for `dim=None` (dim 0 for
    0-, 1- and 3-d inputs, else 1) is not reproduced; `None` raises `ValueError`.
    """
    return _module(softmax_apply, {"dim": _softmax_dim(dim, "Softmax")})


register_spec(softmax_apply, layer_spec("Softmax", aux={"dim": int}))


def log_softmax_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[Array, "*shape"]
) -> tuple[StructureTree, Float[Array, "*shape"]]:
    """`log(softmax(x))` over axis `aux["dim"]`, computed stably."""
    return tree, F.log_softmax(x, tree["aux"]["dim"])


def LogSoftmax(dim: int | None = None) -> Module:
    """`log(softmax(x))` over axis `dim`, as `torch.nn.LogSoftmax`; `dim` is required
    (see `Softmax`)."""
    return _module(log_softmax_apply, {"dim": _softmax_dim(dim, "LogSoftmax")})


register_spec(log_softmax_apply, layer_spec("LogSoftmax", aux={"dim": int}))
