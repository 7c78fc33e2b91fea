"""Pure functions with `torch.nn.functional`'s names, arguments and defaults.

Activations (`relu`, `gelu`, `silu`, `tanh`, `sigmoid`, `softmax`, `log_softmax`),
`linear`, `bilinear` and the losses `cross_entropy`, `nll_loss`, `mse_loss`. The
layers of `hax.nn` apply these, so a layer and its function always agree.

Differences from PyTorch, all forced by JAX or chosen for safety:
- `inplace=` is accepted where PyTorch has it and has no effect (JAX arrays are
  immutable); the result is the same.
- `softmax`/`log_softmax` need `dim`: PyTorch's deprecated implicit choice (dim 0
  for 0-, 1- and 3-d inputs, else dim 1) is not reproduced.
- The losses drop PyTorch's deprecated `size_average`/`reduce`; every argument after
  `target` (after `weight` for `cross_entropy`/`nll_loss`) is keyword-only, so a
  positional call written for PyTorch's order fails loudly instead of binding wrongly.
- A class index outside `[0, C)` that is not `ignore_index` gives a NaN loss (PyTorch
  raises; a jitted function cannot).
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike, DTypeLike

_REDUCTIONS = ("none", "mean", "sum")


# ---------------------------------------------------------------- activations


def relu(input: ArrayLike, inplace: bool = False) -> jax.Array:
    """`max(input, 0)`, as `torch.nn.functional.relu`; the gradient at 0 is 0 like PyTorch's.

    `inplace` is accepted for PyTorch compatibility and ignored.
    """
    return jax.nn.relu(input)


def _check_approximate(approximate: str, who: str) -> None:
    if approximate not in ("none", "tanh"):
        raise ValueError(f"{who}: approximate must be 'none' or 'tanh', found {approximate!r}")


def gelu(input: ArrayLike, approximate: str = "none") -> jax.Array:
    """GELU, as `torch.nn.functional.gelu`.

    `approximate="none"` is exact, `x * (1 + erf(x / sqrt(2))) / 2`;
    `approximate="tanh"` is `x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))`.
    """
    _check_approximate(approximate, "gelu")
    return jax.nn.gelu(input, approximate=approximate == "tanh")


def silu(input: ArrayLike, inplace: bool = False) -> jax.Array:
    """`x * sigmoid(x)`, as `torch.nn.functional.silu`; `inplace` is ignored."""
    return jax.nn.silu(input)


def tanh(input: ArrayLike) -> jax.Array:
    """Elementwise `tanh`, as `torch.nn.functional.tanh`."""
    return jnp.tanh(input)


def sigmoid(input: ArrayLike) -> jax.Array:
    """Elementwise `1 / (1 + exp(-x))`, as `torch.nn.functional.sigmoid`."""
    return jax.nn.sigmoid(input)


def _softmax_dim(dim: int | None, who: str) -> int:
    if dim is None:
        raise ValueError(
            f"{who}: dim is required (PyTorch's implicit choice of dim is deprecated and not "
            "reproduced); pass e.g. dim=-1 for the last axis"
        )
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"{who}: dim must be an int, found {dim!r}")
    return dim


def _cast(input: ArrayLike, dtype: DTypeLike | None) -> jax.Array:
    x = jnp.asarray(input)
    return x if dtype is None else x.astype(dtype)


def softmax(
    input: ArrayLike, dim: int | None = None, *, dtype: DTypeLike | None = None
) -> jax.Array:
    """Softmax over axis `dim`, as `torch.nn.functional.softmax`.

    `dim` is required (see the module docstring). `dtype`, if given, casts the input
    first, like PyTorch's.
    """
    return jax.nn.softmax(_cast(input, dtype), axis=_softmax_dim(dim, "softmax"))


def log_softmax(
    input: ArrayLike, dim: int | None = None, *, dtype: DTypeLike | None = None
) -> jax.Array:
    """`log(softmax(x))` over axis `dim`, computed stably, as `torch.nn.functional.log_softmax`."""
    return jax.nn.log_softmax(_cast(input, dtype), axis=_softmax_dim(dim, "log_softmax"))


# ---------------------------------------------------------------- linear maps


def linear(input: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None) -> jax.Array:
    """`input @ weight.T + bias`, as `torch.nn.functional.linear`.

    `weight` has PyTorch's layout `(out_features, in_features)`.
    """
    y = jnp.asarray(input) @ jnp.asarray(weight).T
    return y if bias is None else y + jnp.asarray(bias)


def bilinear(
    input1: ArrayLike, input2: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None
) -> jax.Array:
    """`y[..., o] = sum_ij input1[..., i] weight[o, i, j] input2[..., j] + bias[o]`,
    as `torch.nn.functional.bilinear`; `weight` is `(out, in1, in2)`."""
    y = jnp.einsum("...i,oij,...j->...o", input1, weight, input2)
    return y if bias is None else y + jnp.asarray(bias)


# ---------------------------------------------------------------- losses


def _check_reduction(reduction: str, who: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{who}: reduction must be one of {_REDUCTIONS}, found {reduction!r}")


def _reduce(loss: jax.Array, reduction: str) -> jax.Array:
    if reduction == "sum":
        return jnp.sum(loss)
    if reduction == "mean":
        return jnp.mean(loss)
    return loss


def _class_dim(x: jax.Array, who: str) -> int:
    if x.ndim == 0:
        raise ValueError(f"{who}: input must have a class dimension; found a 0-d array")
    return 0 if x.ndim == 1 else 1


def _check_weight(weight: jax.Array | None, n_classes: int, who: str) -> None:
    if weight is not None and weight.shape != (n_classes,):
        raise ValueError(
            f"{who}: weight must have shape ({n_classes},), one entry per class; "
            f"found {weight.shape}"
        )


def _nll(
    logp: jax.Array, target: jax.Array, weight: jax.Array | None, ignore_index: int, who: str
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-element `-weight[t] * logp[t]` (0 where ignored), the per-element target
    weights (0 where ignored) and the ignore mask, for class-index targets."""
    cdim = _class_dim(logp, who)
    n_classes = logp.shape[cdim]
    expected = logp.shape[:cdim] + logp.shape[cdim + 1 :]
    if target.shape != expected:
        raise ValueError(
            f"{who}: for input of shape {logp.shape} (classes on dim {cdim}) class-index "
            f"targets must have shape {expected}; found {target.shape}"
        )
    if not jnp.issubdtype(target.dtype, jnp.integer):
        raise TypeError(
            f"{who}: class-index targets must be integers, found dtype {target.dtype} "
            "(probability targets must have the input's shape)"
        )
    _check_weight(weight, n_classes, who)
    ignored = target == ignore_index
    valid = (target >= 0) & (target < n_classes)
    safe = jnp.where(valid, target, 0)  # an ignored class in range is read, then weighted 0
    picked = jnp.take_along_axis(logp, jnp.expand_dims(safe, cdim), axis=cdim)
    picked = jnp.squeeze(picked, cdim)
    # Target weights: 0 where ignored; NaN for an out-of-range class that is not
    # ignored, which poisons the loss instead of silently wrapping around.
    w = jnp.ones((), logp.dtype) if weight is None else weight[safe]
    w = jnp.where(ignored, 0.0, jnp.where(valid, w, jnp.nan))
    return -(w * picked), w, ignored


def nll_loss(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> jax.Array:
    """Negative log-likelihood of class indices, as `torch.nn.functional.nll_loss`.

    `input` holds log-probabilities of shape `(N, C)`, `(C,)` or `(N, C, d1, ...)`;
    `target` holds class indices of shape `(N,)`, `()` or `(N, d1, ...)`. The loss of
    element `n` is `-weight[t_n] * input[n, t_n]`, or 0 where `t_n == ignore_index`.
    `"mean"` divides the sum by the summed weights of the non-ignored targets (NaN
    when all are ignored), like PyTorch.
    """
    _check_reduction(reduction, "nll_loss")
    w = None if weight is None else jnp.asarray(weight)
    loss, tw, _ = _nll(jnp.asarray(input), jnp.asarray(target), w, ignore_index, "nll_loss")
    if reduction == "mean":
        return jnp.sum(loss) / jnp.sum(tw)
    return _reduce(loss, reduction)


def cross_entropy(
    input: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> jax.Array:
    """Cross entropy between logits and targets, as `torch.nn.functional.cross_entropy`.

    `input` holds unnormalised logits of shape `(N, C)`, `(C,)` or `(N, C, d1, ...)`
    (classes on dim 1, or dim 0 when unbatched). `target` is either

    - class indices (integers) of the input's shape without the class dim:
      `nll_loss(log_softmax(input, class_dim), ...)`, mixed with a uniform target by
      `label_smoothing`; `"mean"` divides by the summed weights of the non-ignored
      targets, for both the NLL and the smoothing terms, like PyTorch; or
    - class probabilities (floats) of the input's shape: `-sum_c weight[c] p_c
      log_softmax(input)_c`, with `p` smoothed to `p (1 - ε) + ε / C`; `"mean"` divides
      by the number of elements `N * d1 * ...`; `ignore_index` does not apply.
    """
    who = "cross_entropy"
    _check_reduction(reduction, who)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{who}: label_smoothing must be in [0, 1], found {label_smoothing}")
    x, t = jnp.asarray(input), jnp.asarray(target)
    cdim = _class_dim(x, who)
    n_classes = x.shape[cdim]
    w = None if weight is None else jnp.asarray(weight)
    _check_weight(w, n_classes, who)
    logp = jax.nn.log_softmax(x, axis=cdim)
    w_b = None if w is None else w.reshape((n_classes,) + (1,) * (x.ndim - cdim - 1))

    if t.shape == x.shape:  # class probabilities
        if not jnp.issubdtype(t.dtype, jnp.floating):
            raise TypeError(f"{who}: probability targets must be floats, found dtype {t.dtype}")
        if label_smoothing > 0.0:
            t = t * (1.0 - label_smoothing) + label_smoothing / n_classes
        prod = logp * t if w_b is None else logp * t * w_b
        per_sample = -jnp.sum(prod, axis=cdim)
        if reduction == "mean":
            # the number of samples N * d1 * ...; 0/0 gives NaN for empty inputs, like PyTorch
            return jnp.sum(per_sample) / (x.size // max(n_classes, 1))
        return _reduce(per_sample, reduction)

    nll, tw, ignored = _nll(logp, t, w, ignore_index, who)
    if label_smoothing == 0.0:
        if reduction == "mean":
            return jnp.sum(nll) / jnp.sum(tw)
        return _reduce(nll, reduction)
    smooth = -jnp.sum(logp if w_b is None else logp * w_b, axis=cdim)
    smooth = jnp.where(ignored, jnp.zeros((), smooth.dtype), smooth)
    if reduction == "mean":
        denom = jnp.sum(tw)
        nll_r, smooth_r = jnp.sum(nll) / denom, jnp.sum(smooth) / denom
    else:
        nll_r, smooth_r = _reduce(nll, reduction), _reduce(smooth, reduction)
    return (1.0 - label_smoothing) * nll_r + smooth_r * (label_smoothing / n_classes)


def mse_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    reduction: str = "mean",
    weight: ArrayLike | None = None,
) -> jax.Array:
    """Squared error `(input - target)^2`, as `torch.nn.functional.mse_loss`.

    Shapes broadcast like PyTorch's. With `weight` (the input's shape) each squared
    error is scaled and `"mean"` divides by `weight.sum()`, as PyTorch does.
    """
    _check_reduction(reduction, "mse_loss")
    x, t = jnp.asarray(input), jnp.asarray(target)
    sq = jnp.square(x - t)
    if weight is None:
        return _reduce(sq, reduction)
    w = jnp.asarray(weight)
    if w.shape != x.shape:
        raise ValueError(f"mse_loss: weight must have the input's shape {x.shape}, found {w.shape}")
    sq = sq * w
    if reduction == "mean":
        return jnp.sum(sq) / jnp.sum(w)
    return _reduce(sq, reduction)
