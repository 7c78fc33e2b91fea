"""`Identity`, `Flatten` and `Bilinear`, as in PyTorch."""

import math
from typing import Any, NotRequired

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float
from typing_extensions import TypedDict

from .._rng import resolve_rng
from .._types import GlobalConfig, Module, StructureTree
from .._validate import validate
from ..schema import layer_spec, register_spec
from . import _functional as F, _init

# ---------------------------------------------------------------- Identity


def identity_apply(
    tree: StructureTree, global_config: GlobalConfig, input: Any
) -> tuple[StructureTree, Any]:
    """Return the input unchanged."""
    return tree, input


def Identity(*args: Any, **kwargs: Any) -> Module:
    """A placeholder that returns its input, as `torch.nn.Identity`.

    Like PyTorch's, it accepts and ignores any arguments (so it can stand in for a
    layer with the same constructor call); nothing is stored in `aux`.
    """
    tree: StructureTree = {
        "params": {},
        "buffers": {},
        "aux": {},
        "apply": identity_apply,
        "submodules": {},
    }
    return validate(tree), {}


register_spec(identity_apply, layer_spec("Identity"))


# ---------------------------------------------------------------- Flatten


def flatten_apply(
    tree: StructureTree, global_config: GlobalConfig, input: jax.Array
) -> tuple[StructureTree, jax.Array]:
    """Merge axes `start_dim..end_dim` (inclusive) of the input into one, like `torch.flatten`."""
    aux = tree["aux"]
    x = jnp.asarray(input)
    ndim = max(x.ndim, 1)  # a 0-d input behaves as 1-d, as in PyTorch
    start, end = aux["start_dim"], aux["end_dim"]
    for name, d in (("start_dim", start), ("end_dim", end)):
        if not -ndim <= d < ndim:
            raise ValueError(
                f"Flatten: {name}={d} is out of range for an input with {x.ndim} dimension(s)"
            )
    start, end = start % ndim, end % ndim
    if start > end:
        raise ValueError(
            f"Flatten: start_dim={aux['start_dim']} comes after end_dim={aux['end_dim']} "
            f"for an input with {x.ndim} dimension(s)"
        )
    if x.ndim == 0:
        return tree, x.reshape(1)
    shape = (*x.shape[:start], math.prod(x.shape[start : end + 1]), *x.shape[end + 1 :])
    return tree, x.reshape(shape)


def Flatten(start_dim: int = 1, end_dim: int = -1) -> Module:
    """Flatten axes `start_dim..end_dim` into one, as `torch.nn.Flatten`.

    The defaults keep the batch axis: `(N, C, H, W) -> (N, C*H*W)`.
    """
    tree: StructureTree = {
        "params": {},
        "buffers": {},
        "aux": {"start_dim": int(start_dim), "end_dim": int(end_dim)},
        "apply": flatten_apply,
        "submodules": {},
    }
    return validate(tree), {}


register_spec(flatten_apply, layer_spec("Flatten", aux={"start_dim": int, "end_dim": int}))


# ---------------------------------------------------------------- Bilinear


class BilinearParams(TypedDict):
    weight: Float[Array, "out_features in1_features in2_features"]
    bias: NotRequired[Float[Array, " out_features"]]  # leading space: not a name for linters


def bilinear_apply(
    tree: StructureTree,
    global_config: GlobalConfig,
    x1: Float[Array, "*batch in1_features"],
    x2: Float[Array, "*batch in2_features"],
) -> tuple[StructureTree, Float[Array, "*batch out_features"]]:
    """`y[..., o] = sum_ij x1[..., i] weight[o, i, j] x2[..., j] + bias[o]`."""
    params = tree["params"]
    _, in1, in2 = params["weight"].shape
    if jnp.shape(x1)[-1:] != (in1,) or jnp.shape(x2)[-1:] != (in2,):
        raise ValueError(
            f"Bilinear: expected inputs of shapes (..., in1_features={in1}) and "
            f"(..., in2_features={in2}), found {tuple(jnp.shape(x1))} and {tuple(jnp.shape(x2))}"
        )
    return tree, F.bilinear(x1, x2, params["weight"], params.get("bias"))


def Bilinear(
    in1_features: int,
    in2_features: int,
    out_features: int,
    bias: bool = True,
    *,
    rng: jax.Array | int | None = None,
    dtype: Any = jnp.float32,
) -> Module:
    """A bilinear map of two inputs, as `torch.nn.Bilinear`.

    Params: `weight` of shape `(out_features, in1_features, in2_features)` and `bias`
    of shape `(out_features,)`, both drawn from `U(-1/sqrt(in1_features),
    1/sqrt(in1_features))` like PyTorch's default initialisation. Apply takes two
    inputs, `x1` of shape `(*batch, in1_features)` and `x2` of shape
    `(*batch, in2_features)`.
    """
    wkey, bkey = jax.random.split(resolve_rng(rng, "Bilinear"))
    bound = 1.0 / math.sqrt(in1_features) if in1_features > 0 else 0.0
    shape = (out_features, in1_features, in2_features)
    params = {"weight": _init.uniform(wkey, shape, dtype, -bound, bound)}
    if bias:
        params["bias"] = _init.uniform(bkey, (out_features,), dtype, -bound, bound)
    tree: StructureTree = {
        "params": params,
        "buffers": {},
        "aux": {
            "in1_features": in1_features,
            "in2_features": in2_features,
            "out_features": out_features,
            "bias": bias,
        },
        "apply": bilinear_apply,
        "submodules": {},
    }
    return validate(tree), {}


register_spec(
    bilinear_apply,
    layer_spec(
        "Bilinear",
        params=BilinearParams,
        aux={"in1_features": int, "in2_features": int, "out_features": int, "bias": bool},
        present_if={"bias": "bias"},
    ),
)
