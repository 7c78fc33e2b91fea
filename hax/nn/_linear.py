"""`Linear`: `y = x @ weight.T + bias`, PyTorch's layout and initialisation."""

import math
from typing import Any, NotRequired

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float
from typing_extensions import TypedDict

from .._rng import RngLike, resolve_rng
from .._torch_attrs import dtype_of, has
from .._types import GlobalConfig, InputArray, Module, StructureTree
from .._validate import validate
from . import _init
from ._layer import ConvertChild, layer


class LinearParams(TypedDict):
    weight: Float[Array, "out_features in_features"]
    bias: NotRequired[Float[Array, " out_features"]]  # leading space: not a name for linters


def linear_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[InputArray, "*batch in_features"]
) -> tuple[StructureTree, Float[Array, "*batch out_features"]]:
    """`x @ weight.T + bias` over the last axis of `x`."""
    x = jnp.asarray(x)
    params = tree["params"]
    if jnp.shape(x)[-1:] != params["weight"].shape[1:]:  # static: free under jit
        raise ValueError(
            f"Linear: expected an input of shape (..., in_features={params['weight'].shape[1]}), "
            f"found shape {tuple(jnp.shape(x))}"
        )
    y = x @ params["weight"].T
    if "bias" in params:
        y = y + params["bias"]
    return tree, y


def Linear(
    in_features: int,
    out_features: int,
    bias: bool = True,
    *,
    rng: RngLike | None = None,
    dtype: Any = jnp.float32,
) -> Module:
    """A fully connected layer, as `torch.nn.Linear`.

    Params: `weight` of shape `(out_features, in_features)` and `bias` of shape
    `(out_features,)`, both drawn from `U(-1/sqrt(in_features), 1/sqrt(in_features))`
    like PyTorch's default initialisation.

    **Arguments:**
    - `in_features`, `out_features`: input and output sizes.
    - `bias`: whether to add a learned bias.
    - `rng`: a PRNG key (or int seed); defaults to the next key of `hax.rng_context`.
    - `dtype`: the params' dtype.
    """
    wkey, bkey = jax.random.split(resolve_rng(rng, "Linear"))
    bound = 1.0 / math.sqrt(in_features) if in_features > 0 else 0.0
    params = {"weight": _init.uniform(wkey, (out_features, in_features), dtype, -bound, bound)}
    if bias:
        params["bias"] = _init.uniform(bkey, (out_features,), dtype, -bound, bound)
    tree = _LINEAR.node(params, in_features=in_features, out_features=out_features, bias=bias)
    return validate(tree), {}


def _convert(m: Any, convert_child: ConvertChild) -> Module:
    return Linear(m.in_features, m.out_features, has(m.bias), dtype=dtype_of(m))


_LINEAR = layer(
    "Linear",
    linear_apply,
    params=LinearParams,
    aux={"in_features": int, "out_features": int, "bias": bool},
    # MultiheadAttention's out_proj is a NonDynamicallyQuantizableLinear: a Linear's forward
    torch=("torch.nn.Linear", "torch.nn.modules.linear.NonDynamicallyQuantizableLinear"),
    converter=_convert,
    present_if={"bias": "bias"},
)
