"""Hugging Face `transformers.activations`: the activation modules its models hold
(`config.hidden_act` picks one). Each runs elementwise, as its torch forward."""

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ..._types import GlobalConfig, InputArray, StructureTree
from ...nn.functional import gelu, mish, relu, silu
from ._elementwise import elementwise, quick_gelu
from ._registry import register_all


def accurate_gelu_apply(
    tree: StructureTree, global_config: GlobalConfig, x: InputArray
) -> tuple[StructureTree, jax.Array]:
    """`AccurateGELUActivation`: the tanh form with its `precomputed_constant`."""
    x = jnp.asarray(x)
    c: float = tree["aux"]["precomputed_constant"]  # type: ignore[assignment]  # set by the converter
    return tree, 0.5 * x * (1 + jnp.tanh(c * (x + 0.044715 * x**3)))


def clipped_gelu_apply(
    tree: StructureTree, global_config: GlobalConfig, x: InputArray
) -> tuple[StructureTree, jax.Array]:
    """`ClippedGELUActivation`: the exact GELU clipped to `[min, max]`."""
    aux: dict[str, Any] = tree["aux"]
    return tree, jnp.clip(gelu(x), aux["min"], aux["max"])


def xielu_apply(
    tree: StructureTree, global_config: GlobalConfig, x: InputArray
) -> tuple[StructureTree, jax.Array]:
    """`XIELUActivation` (its Python form), with learned `alpha_p`, `alpha_n`."""
    params, buffers = tree["params"], tree["buffers"]
    alpha_p = jax.nn.softplus(params["alpha_p"])
    beta = buffers["beta"]
    alpha_n = beta + jax.nn.softplus(params["alpha_n"])
    negative = (jnp.expm1(jnp.minimum(x, buffers["eps"])) - x) * alpha_n + beta * x
    return tree, jnp.where(x > 0, alpha_p * x * x + beta * x, negative)


def _laplace(x: jax.Array) -> jax.Array:
    """`LaplaceActivation` with its default `mu` and `sigma`."""
    return 0.5 * (1.0 + jax.scipy.special.erf((x - 0.707107) / (0.282095 * math.sqrt(2.0))))


_gelu_tanh = functools.partial(gelu, approximate="tanh")
_ELEMENTWISE: dict[str, Callable[[jax.Array], jax.Array]] = {
    "GELUActivation": gelu,
    "GELUTanh": _gelu_tanh,
    "NewGELUActivation": _gelu_tanh,
    "FastGELUActivation": _gelu_tanh,
    "QuickGELUActivation": quick_gelu,
    "SiLUActivation": silu,
    "MishActivation": mish,
    "LinearActivation": lambda x: x,
    "LaplaceActivation": _laplace,
    "ReLUSquaredActivation": lambda x: jnp.square(relu(x)),
    "SqrtSoftplusActivation": lambda x: jnp.sqrt(jax.nn.softplus(x)),
}
register_all(
    "transformers.activations.",
    {
        **{name: elementwise(fn) for name, fn in _ELEMENTWISE.items()},
        "AccurateGELUActivation": accurate_gelu_apply,
        "ClippedGELUActivation": clipped_gelu_apply,
        "XIELUActivation": xielu_apply,
    },
)
