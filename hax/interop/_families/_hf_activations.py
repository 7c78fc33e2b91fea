"""Hugging Face `transformers.activations`: the activation modules its models hold
(`config.hidden_act` picks one). Each runs elementwise, as its torch forward."""

import math
from typing import Any

import jax
import jax.numpy as jnp

from ..._types import GlobalConfig, StructureTree
from .._library import register_apply

_PATH = "transformers.activations."


def gelu_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Any
) -> tuple[StructureTree, Any]:
    """`GELUActivation`: the exact (erf) GELU."""
    return tree, jax.nn.gelu(x, approximate=False)


def gelu_tanh_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Any
) -> tuple[StructureTree, Any]:
    """`GELUTanh`, `NewGELUActivation`, `FastGELUActivation`: the tanh approximation
    `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`."""
    return tree, 0.5 * x * (1.0 + jnp.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def quick_gelu_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Any
) -> tuple[StructureTree, Any]:
    """`QuickGELUActivation`: `x * sigmoid(1.702 x)`."""
    return tree, x * jax.nn.sigmoid(1.702 * x)


def accurate_gelu_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Any
) -> tuple[StructureTree, Any]:
    """`AccurateGELUActivation`: the tanh form with its `precomputed_constant`."""
    c = tree["aux"]["precomputed_constant"]
    return tree, 0.5 * x * (1 + jnp.tanh(c * (x + 0.044715 * x**3)))


def clipped_gelu_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Any
) -> tuple[StructureTree, Any]:
    """`ClippedGELUActivation`: the exact GELU clipped to `[min, max]`."""
    aux: dict[str, Any] = tree["aux"]
    return tree, jnp.clip(jax.nn.gelu(x, approximate=False), aux["min"], aux["max"])


def silu_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Any
) -> tuple[StructureTree, Any]:
    """`SiLUActivation`: `x * sigmoid(x)`."""
    return tree, jax.nn.silu(x)


def mish_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Any
) -> tuple[StructureTree, Any]:
    """`MishActivation`: `x * tanh(softplus(x))`."""
    return tree, x * jnp.tanh(jax.nn.softplus(x))


def linear_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Any
) -> tuple[StructureTree, Any]:
    """`LinearActivation`: the identity."""
    return tree, x


def laplace_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Any
) -> tuple[StructureTree, Any]:
    """`LaplaceActivation` with its default `mu` and `sigma`."""
    z = (x - 0.707107) / (0.282095 * math.sqrt(2.0))
    return tree, 0.5 * (1.0 + jax.scipy.special.erf(z))


def relu_squared_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Any
) -> tuple[StructureTree, Any]:
    """`ReLUSquaredActivation`: `relu(x) ** 2`."""
    return tree, jnp.square(jax.nn.relu(x))


def sqrt_softplus_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Any
) -> tuple[StructureTree, Any]:
    """`SqrtSoftplusActivation`: `sqrt(softplus(x))`."""
    return tree, jnp.sqrt(jax.nn.softplus(x))


def xielu_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Any
) -> tuple[StructureTree, Any]:
    """`XIELUActivation` (its Python form), with learned `alpha_p`, `alpha_n`."""
    params, buffers = tree["params"], tree["buffers"]
    alpha_p = jax.nn.softplus(params["alpha_p"])
    beta = buffers["beta"]
    alpha_n = beta + jax.nn.softplus(params["alpha_n"])
    negative = (jnp.expm1(jnp.minimum(x, buffers["eps"])) - x) * alpha_n + beta * x
    return tree, jnp.where(x > 0, alpha_p * x * x + beta * x, negative)


for _name, _apply in {
    "GELUActivation": gelu_apply,
    "GELUTanh": gelu_tanh_apply,
    "NewGELUActivation": gelu_tanh_apply,
    "FastGELUActivation": gelu_tanh_apply,
    "QuickGELUActivation": quick_gelu_apply,
    "AccurateGELUActivation": accurate_gelu_apply,
    "ClippedGELUActivation": clipped_gelu_apply,
    "SiLUActivation": silu_apply,
    "MishActivation": mish_apply,
    "LinearActivation": linear_apply,
    "LaplaceActivation": laplace_apply,
    "ReLUSquaredActivation": relu_squared_apply,
    "SqrtSoftplusActivation": sqrt_softplus_apply,
    "XIELUActivation": xielu_apply,
}.items():
    register_apply(_PATH + _name, _apply)
