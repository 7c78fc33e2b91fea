"""`Embedding`: a lookup table of `num_embeddings` vectors, PyTorch's layout and init."""

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Integer
from typing_extensions import TypedDict

from .._rng import RngLike, resolve_rng
from .._torch_attrs import dtype_of
from .._types import GlobalConfig, InputArray, Module, StructureTree
from .._validate import validate
from . import _init
from ._layer import ConvertChild, layer


class EmbeddingParams(TypedDict):
    weight: Float[Array, "num_embeddings embedding_dim"]


def _lookup(weight: jax.Array, input: jax.Array) -> jax.Array:
    # Out-of-range and negative indices give NaN rows (PyTorch raises; jit cannot).
    rows: jax.Array = weight.at[input].get(mode="fill", wrap_negative_indices=False)
    return rows


def embedding_apply(
    tree: StructureTree, global_config: GlobalConfig, input: Integer[InputArray, "*batch"]
) -> tuple[StructureTree, Float[Array, "*batch embedding_dim"]]:
    """Rows `weight[input]`; see `Embedding` for `padding_idx`, `max_norm` and
    `scale_grad_by_freq`. With `max_norm`, the returned tree holds the renormalised
    weight, as PyTorch updates it in place."""
    aux = tree["aux"]
    weight = tree["params"]["weight"]
    input = jnp.asarray(input)
    if not jnp.issubdtype(input.dtype, jnp.integer):
        raise TypeError(f"Embedding: indices must be integers, found dtype {input.dtype}")
    rows = _lookup(weight, input)
    max_norm, padding_idx, by_freq = aux["max_norm"], aux["padding_idx"], aux["scale_grad_by_freq"]
    if max_norm is None and padding_idx is None and not by_freq:
        return tree, rows
    values = jax.lax.stop_gradient(rows)
    if max_norm is not None:
        # Renormalise the looked-up rows outside autodiff, like PyTorch's no-grad
        # in-place `embedding_renorm_`; the gradient stays that of a plain lookup.
        norms = jnp.linalg.norm(values, ord=aux["norm_type"], axis=-1, keepdims=True)
        scale = jnp.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0)
        values = values * scale.astype(values.dtype)
        renormed = (
            jax.lax.stop_gradient(weight)
            .at[input]
            .set(values, mode="drop", wrap_negative_indices=False)
        )
        tree = {**tree, "params": {**tree["params"], "weight": renormed}}
    # The output's values are `values`; the gradient of output row n reaches
    # weight[input[n]] scaled by factor[n]: 0 at padding_idx, 1/count with
    # scale_grad_by_freq (count: how often input[n] occurs in this input).
    factor = jnp.ones(input.shape, rows.dtype)
    if by_freq:
        counts = (
            jnp.zeros(weight.shape[0], jnp.int32)
            .at[input]
            .add(1, mode="drop", wrap_negative_indices=False)
        )
        factor = factor / counts.at[input].get(mode="fill", fill_value=1).astype(rows.dtype)
    if padding_idx is not None:
        factor = jnp.where(input == padding_idx, jnp.zeros((), rows.dtype), factor)
    out = values + (rows - jax.lax.stop_gradient(rows)) * factor[..., None]
    return tree, out


def Embedding(
    num_embeddings: int,
    embedding_dim: int,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
    *,
    rng: RngLike | None = None,
    dtype: Any = jnp.float32,
) -> Module:
    """A lookup table, as `torch.nn.Embedding`: integer indices `(*batch)` map to rows
    of `weight`, giving `(*batch, embedding_dim)`.

    Params: `weight` of shape `(num_embeddings, embedding_dim)` drawn from `N(0, 1)`,
    with the `padding_idx` row zeroed, like PyTorch.

    **Arguments:**
    - `padding_idx`: this row gets no gradient (its value is still looked up); a
      negative index counts from the end and is stored normalised, as in PyTorch.
    - `max_norm`: each looked-up row whose `norm_type`-norm exceeds it is rescaled to
      norm `max_norm` before the lookup; the returned tree holds the rescaled weight
      (PyTorch changes the weight in place).
    - `scale_grad_by_freq`: scale each row's gradient by the inverse of how often its
      index occurs in the input.
    - `sparse`: kept in aux for compatibility; gradients are always dense in JAX.
    - `rng`, `dtype`: as for `Linear`.

    Indices outside `[0, num_embeddings)` give NaN rows (PyTorch raises).
    """
    if padding_idx is not None:
        if not -num_embeddings <= padding_idx < num_embeddings:
            raise ValueError(
                f"Embedding: padding_idx must be within [-num_embeddings, num_embeddings) = "
                f"[{-num_embeddings}, {num_embeddings}), found {padding_idx}"
            )
        padding_idx = int(padding_idx) % num_embeddings
    if max_norm is not None:
        max_norm = float(max_norm)
    weight = _init.normal(resolve_rng(rng, "Embedding"), (num_embeddings, embedding_dim), dtype)
    if padding_idx is not None:
        weight = weight.at[padding_idx].set(0)
    tree = _EMBEDDING.node(
        {"weight": weight},
        num_embeddings=num_embeddings,
        embedding_dim=embedding_dim,
        padding_idx=padding_idx,
        max_norm=max_norm,
        norm_type=float(norm_type),
        scale_grad_by_freq=bool(scale_grad_by_freq),
        sparse=bool(sparse),
    )
    return validate(tree), {}


def _convert(m: Any, convert_child: ConvertChild) -> Module:
    return Embedding(
        m.num_embeddings, m.embedding_dim, m.padding_idx, m.max_norm, m.norm_type,
        m.scale_grad_by_freq, m.sparse, dtype=dtype_of(m),
    )  # fmt: skip


_EMBEDDING = layer(
    "Embedding",
    embedding_apply,
    params=EmbeddingParams,
    aux={
        "num_embeddings": int,
        "embedding_dim": int,
        "padding_idx": int | None,
        "max_norm": float | None,
        "norm_type": float,
        "scale_grad_by_freq": bool,
        "sparse": bool,
    },
    torch="torch.nn.Embedding",
    converter=_convert,
)
