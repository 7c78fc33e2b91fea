"""Activation layers: `ReLU`, `GELU`, `SiLU`, `Mish`, `Hardswish`, `Hardsigmoid`,
`LeakyReLU`, `ELU`, `Softplus`, `Tanh`, `Sigmoid`, `Softmax`, `LogSoftmax`.

Each is a node with no params or buffers whose `aux` holds its constructor's
arguments; its apply calls the function of the same name in `hax.nn.functional`.
"""

from typing import Any

from jaxtyping import Array, Float

from .._types import GlobalConfig, InputArray, Module, StructureTree
from .._validate import validate
from . import _functional as F
from ._functional import _check_approximate, _softmax_dim
from ._layer import from_attributes, layer

# ---------------------------------------------------------------- ReLU


def relu_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[InputArray, "*shape"]
) -> tuple[StructureTree, Float[Array, "*shape"]]:
    """`max(x, 0)` elementwise."""
    return tree, F.relu(x)


def ReLU(inplace: bool = False) -> Module:
    """`max(x, 0)`, as `torch.nn.ReLU`. `inplace` is kept in aux and has no effect
    (JAX arrays are immutable)."""
    return validate(_RELU.node(inplace=bool(inplace))), {}


_RELU = layer(
    "ReLU",
    relu_apply,
    aux={"inplace": bool},
    torch="torch.nn.ReLU",
    converter=from_attributes(ReLU, "inplace"),
)


# ---------------------------------------------------------------- GELU


def gelu_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[InputArray, "*shape"]
) -> tuple[StructureTree, Float[Array, "*shape"]]:
    """GELU elementwise, exact or tanh-approximated per `aux["approximate"]`."""
    aux: dict[str, Any] = tree["aux"]
    return tree, F.gelu(x, approximate=aux["approximate"])


def GELU(approximate: str = "none") -> Module:
    """GELU, as `torch.nn.GELU`: `approximate="none"` (exact, with erf) or `"tanh"`."""
    _check_approximate(approximate, "GELU")
    return validate(_GELU.node(approximate=approximate)), {}


_GELU = layer(
    "GELU",
    gelu_apply,
    aux={"approximate": str},
    torch="torch.nn.GELU",
    converter=from_attributes(GELU, "approximate"),
)


# ---------------------------------------------------------------- SiLU


def silu_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[InputArray, "*shape"]
) -> tuple[StructureTree, Float[Array, "*shape"]]:
    """`x * sigmoid(x)` elementwise."""
    return tree, F.silu(x)


def SiLU(inplace: bool = False) -> Module:
    """`x * sigmoid(x)`, as `torch.nn.SiLU`; `inplace` is kept in aux and has no effect."""
    return validate(_SILU.node(inplace=bool(inplace))), {}


_SILU = layer(
    "SiLU",
    silu_apply,
    aux={"inplace": bool},
    torch="torch.nn.SiLU",
    converter=from_attributes(SiLU, "inplace"),
)


# ---------------------------------------------------------------- Mish, Hardswish, Hardsigmoid


def mish_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[InputArray, "*shape"]
) -> tuple[StructureTree, Float[Array, "*shape"]]:
    """`x * tanh(softplus(x))` elementwise."""
    return tree, F.mish(x)


def Mish(inplace: bool = False) -> Module:
    """`x * tanh(softplus(x))`, as `torch.nn.Mish`; `inplace` is kept in aux and has no effect."""
    return validate(_MISH.node(inplace=bool(inplace))), {}


_MISH = layer(
    "Mish",
    mish_apply,
    aux={"inplace": bool},
    torch="torch.nn.Mish",
    converter=from_attributes(Mish, "inplace"),
)


def hardswish_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[InputArray, "*shape"]
) -> tuple[StructureTree, Float[Array, "*shape"]]:
    """`x * relu6(x + 3) / 6` elementwise, with PyTorch's gradient at -3 and 3."""
    return tree, F.hardswish(x)


def Hardswish(inplace: bool = False) -> Module:
    """`x * relu6(x + 3) / 6`, as `torch.nn.Hardswish` (MobileNetV3); `inplace` is kept
    in aux and has no effect."""
    return validate(_HARDSWISH.node(inplace=bool(inplace))), {}


_HARDSWISH = layer(
    "Hardswish",
    hardswish_apply,
    aux={"inplace": bool},
    torch="torch.nn.Hardswish",
    converter=from_attributes(Hardswish, "inplace"),
)


def hardsigmoid_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[InputArray, "*shape"]
) -> tuple[StructureTree, Float[Array, "*shape"]]:
    """`relu6(x + 3) / 6` elementwise."""
    return tree, F.hardsigmoid(x)


def Hardsigmoid(inplace: bool = False) -> Module:
    """`relu6(x + 3) / 6`, as `torch.nn.Hardsigmoid`; `inplace` is kept in aux and has
    no effect."""
    return validate(_HARDSIGMOID.node(inplace=bool(inplace))), {}


_HARDSIGMOID = layer(
    "Hardsigmoid",
    hardsigmoid_apply,
    aux={"inplace": bool},
    torch="torch.nn.Hardsigmoid",
    converter=from_attributes(Hardsigmoid, "inplace"),
)


# ---------------------------------------------------------------- LeakyReLU, ELU, Softplus


def leaky_relu_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[InputArray, "*shape"]
) -> tuple[StructureTree, Float[Array, "*shape"]]:
    """`x` where `x > 0`, else `aux["negative_slope"] * x`."""
    aux: dict[str, Any] = tree["aux"]
    return tree, F.leaky_relu(x, aux["negative_slope"])


def LeakyReLU(negative_slope: float = 0.01, inplace: bool = False) -> Module:
    """`x` where `x > 0`, else `negative_slope * x`, as `torch.nn.LeakyReLU`; `inplace`
    is kept in aux and has no effect."""
    tree = _LEAKY_RELU.node(negative_slope=float(negative_slope), inplace=bool(inplace))
    return validate(tree), {}


_LEAKY_RELU = layer(
    "LeakyReLU",
    leaky_relu_apply,
    aux={"negative_slope": float, "inplace": bool},
    torch="torch.nn.LeakyReLU",
    converter=from_attributes(LeakyReLU, "negative_slope", "inplace"),
)


def elu_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[InputArray, "*shape"]
) -> tuple[StructureTree, Float[Array, "*shape"]]:
    """`x` where `x > 0`, else `aux["alpha"] * (exp(x) - 1)`."""
    aux: dict[str, Any] = tree["aux"]
    return tree, F.elu(x, aux["alpha"])


def ELU(alpha: float = 1.0, inplace: bool = False) -> Module:
    """`x` where `x > 0`, else `alpha * (exp(x) - 1)`, as `torch.nn.ELU`; `inplace` is
    kept in aux and has no effect."""
    return validate(_ELU.node(alpha=float(alpha), inplace=bool(inplace))), {}


_ELU = layer(
    "ELU",
    elu_apply,
    aux={"alpha": float, "inplace": bool},
    torch="torch.nn.ELU",
    converter=from_attributes(ELU, "alpha", "inplace"),
)


def softplus_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[InputArray, "*shape"]
) -> tuple[StructureTree, Float[Array, "*shape"]]:
    """`log(1 + exp(beta * x)) / beta`, or `x` where `beta * x > threshold`."""
    aux: dict[str, Any] = tree["aux"]
    return tree, F.softplus(x, aux["beta"], aux["threshold"])


def Softplus(beta: float = 1.0, threshold: float = 20.0) -> Module:
    """`log(1 + exp(beta * x)) / beta`, as `torch.nn.Softplus`; above
    `beta * x > threshold` the output is `x` itself, as PyTorch's."""
    return validate(_SOFTPLUS.node(beta=float(beta), threshold=float(threshold))), {}


_SOFTPLUS = layer(
    "Softplus",
    softplus_apply,
    aux={"beta": float, "threshold": float},
    torch="torch.nn.Softplus",
    converter=from_attributes(Softplus, "beta", "threshold"),
)


# ---------------------------------------------------------------- Tanh, Sigmoid


def tanh_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[InputArray, "*shape"]
) -> tuple[StructureTree, Float[Array, "*shape"]]:
    """`tanh(x)` elementwise."""
    return tree, F.tanh(x)


def Tanh() -> Module:
    """`tanh(x)`, as `torch.nn.Tanh`."""
    return validate(_TANH.node()), {}


_TANH = layer("Tanh", tanh_apply, torch="torch.nn.Tanh", converter=from_attributes(Tanh))


def sigmoid_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[InputArray, "*shape"]
) -> tuple[StructureTree, Float[Array, "*shape"]]:
    """`1 / (1 + exp(-x))` elementwise."""
    return tree, F.sigmoid(x)


def Sigmoid() -> Module:
    """`1 / (1 + exp(-x))`, as `torch.nn.Sigmoid`."""
    return validate(_SIGMOID.node()), {}


_SIGMOID = layer(
    "Sigmoid", sigmoid_apply, torch="torch.nn.Sigmoid", converter=from_attributes(Sigmoid)
)


# ---------------------------------------------------------------- Softmax, LogSoftmax


def softmax_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[InputArray, "*shape"]
) -> tuple[StructureTree, Float[Array, "*shape"]]:
    """Softmax over axis `aux["dim"]`."""
    aux: dict[str, Any] = tree["aux"]
    return tree, F.softmax(x, aux["dim"])


def Softmax(dim: int | None = None) -> Module:
    """Softmax over axis `dim`, as `torch.nn.Softmax`.

    `dim` is required: PyTorch's deprecated implicit choice for `dim=None` (dim 0 for
    0-, 1- and 3-d inputs, else 1) is not reproduced; `None` raises `ValueError`.
    """
    return validate(_SOFTMAX.node(dim=_softmax_dim(dim, "Softmax"))), {}


_SOFTMAX = layer(
    "Softmax",
    softmax_apply,
    aux={"dim": int},
    torch="torch.nn.Softmax",
    converter=from_attributes(Softmax, "dim"),
    float32=True,
)


def log_softmax_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[InputArray, "*shape"]
) -> tuple[StructureTree, Float[Array, "*shape"]]:
    """`log(softmax(x))` over axis `aux["dim"]`, computed stably."""
    aux: dict[str, Any] = tree["aux"]
    return tree, F.log_softmax(x, aux["dim"])


def LogSoftmax(dim: int | None = None) -> Module:
    """`log(softmax(x))` over axis `dim`, as `torch.nn.LogSoftmax`; `dim` is required
    (see `Softmax`)."""
    return validate(_LOG_SOFTMAX.node(dim=_softmax_dim(dim, "LogSoftmax"))), {}


_LOG_SOFTMAX = layer(
    "LogSoftmax",
    log_softmax_apply,
    aux={"dim": int},
    torch="torch.nn.LogSoftmax",
    converter=from_attributes(LogSoftmax, "dim"),
    float32=True,
)
