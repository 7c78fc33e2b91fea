"""`Identity`, `Flatten`, `Unflatten` and `Bilinear`, as in PyTorch."""

import math
from collections.abc import Sequence
from typing import Any, NotRequired

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float
from typing_extensions import TypedDict

from .._rng import RngLike, resolve_rng
from .._torch_attrs import dtype_of, has
from .._types import GlobalConfig, InputArray, Module, StructureTree
from .._validate import validate
from . import _functional as F, _init
from ._layer import ConvertChild, from_attributes, layer

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
    return validate(_IDENTITY.node()), {}


_IDENTITY = layer(
    "Identity", identity_apply, torch="torch.nn.Identity", converter=from_attributes(Identity)
)


# ---------------------------------------------------------------- Flatten


def flatten_apply(
    tree: StructureTree, global_config: GlobalConfig, input: InputArray
) -> tuple[StructureTree, jax.Array]:
    """Merge axes `start_dim..end_dim` (inclusive) of the input into one, like `torch.flatten`."""
    aux: dict[str, Any] = tree["aux"]
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
    return validate(_FLATTEN.node(start_dim=int(start_dim), end_dim=int(end_dim))), {}


_FLATTEN = layer(
    "Flatten",
    flatten_apply,
    aux={"start_dim": int, "end_dim": int},
    torch="torch.nn.Flatten",
    converter=from_attributes(Flatten, "start_dim", "end_dim"),
)


# ---------------------------------------------------------------- Unflatten


def unflatten_apply(
    tree: StructureTree, global_config: GlobalConfig, input: InputArray
) -> tuple[StructureTree, jax.Array]:
    """Split axis `dim` of the input into `unflattened_size`, like `torch.unflatten`."""
    aux: dict[str, Any] = tree["aux"]
    x = jnp.asarray(input)
    dim, sizes = aux["dim"], tuple(aux["unflattened_size"])
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(
            f"Unflatten: dim={dim} is out of range for an input with {x.ndim} dimension(s)"
        )
    axis = dim % x.ndim
    size, known = x.shape[axis], math.prod(s for s in sizes if s != -1)
    inferred = -1 in sizes and known > 0 and size % known == 0
    if inferred:
        sizes = tuple(size // known if s == -1 else s for s in sizes)
    if not inferred and (-1 in sizes or known != size):
        raise ValueError(
            f"Unflatten: unflattened_size {aux['unflattened_size']} does not multiply up to "
            f"the size {size} of dim {dim} of the input, of shape {tuple(x.shape)}"
        )
    return tree, x.reshape(x.shape[:axis] + sizes + x.shape[axis + 1 :])


def Unflatten(dim: int, unflattened_size: Sequence[int]) -> Module:
    """Split axis `dim` into the axes `unflattened_size`, as `torch.nn.Unflatten`: the
    inverse of `Flatten`, e.g. `Unflatten(1, (C, H, W))` maps `(N, C*H*W)` to
    `(N, C, H, W)`. One size may be `-1`, inferred from the others. PyTorch's named
    dimensions (a `str` dim) have no JAX counterpart.
    """
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"Unflatten: dim must be an int, found {dim!r}")
    sizes = tuple(unflattened_size) if isinstance(unflattened_size, Sequence) else None
    if sizes is None or not all(isinstance(s, int) and not isinstance(s, bool) for s in sizes):
        raise TypeError(
            f"Unflatten: unflattened_size must be a tuple or list of ints, found "
            f"{unflattened_size!r}"
        )
    if sizes.count(-1) > 1 or any(s < -1 for s in sizes):
        raise ValueError(
            "Unflatten: unflattened_size must hold sizes >= 0 and at most one -1 (inferred), "
            f"found {sizes}"
        )
    return validate(_UNFLATTEN.node(dim=dim, unflattened_size=sizes)), {}


_UNFLATTEN = layer(
    "Unflatten",
    unflatten_apply,
    aux={"dim": int, "unflattened_size": tuple},
    torch="torch.nn.Unflatten",
    converter=from_attributes(Unflatten, "dim", "unflattened_size"),
)


# ---------------------------------------------------------------- Bilinear


class BilinearParams(TypedDict):
    weight: Float[Array, "out_features in1_features in2_features"]
    bias: NotRequired[Float[Array, " out_features"]]  # leading space: not a name for linters


def bilinear_apply(
    tree: StructureTree,
    global_config: GlobalConfig,
    x1: Float[InputArray, "*batch in1_features"],
    x2: Float[InputArray, "*batch in2_features"],
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
    rng: RngLike | None = None,
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
    tree = _BILINEAR.node(
        params,
        in1_features=in1_features,
        in2_features=in2_features,
        out_features=out_features,
        bias=bias,
    )
    return validate(tree), {}


def _convert_bilinear(m: Any, convert_child: ConvertChild) -> Module:
    return Bilinear(m.in1_features, m.in2_features, m.out_features, has(m.bias), dtype=dtype_of(m))


_BILINEAR = layer(
    "Bilinear",
    bilinear_apply,
    params=BilinearParams,
    aux={"in1_features": int, "in2_features": int, "out_features": int, "bias": bool},
    torch="torch.nn.Bilinear",
    converter=_convert_bilinear,
    present_if={"bias": "bias"},
)
