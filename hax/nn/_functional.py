"""Pure functions with `torch.nn.functional`'s names, arguments and defaults.

Activations (`relu`, `relu6`, `gelu`, `silu`, `mish`, `hardswish`, `hardsigmoid`,
`leaky_relu`, `elu`, `prelu`, `softplus`, `tanh`, `sigmoid`, `softmax`, `log_softmax`),
`linear`, `bilinear`, `dropout` (and its channel forms), `scaled_dot_product_attention`
and the losses `cross_entropy`, `nll_loss`, `mse_loss`. The layers of `hax.nn` apply
these, so a layer and its function always agree.

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
- `scaled_dot_product_attention` takes its dropout key as `dropout_rng=` and
  `dropout`/`dropout1d`/`dropout2d` as `rng=` (PyTorch draws from a global generator).
- At the kinks of the piecewise activations the gradient is PyTorch's, which is not
  always the one JAX's own functions give (`leaky_relu` at 0: `negative_slope`, where
  `jax.nn.leaky_relu` gives 1).
"""

import math

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


def relu6(input: ArrayLike, inplace: bool = False) -> jax.Array:
    """`min(max(input, 0), 6)`, as `torch.nn.functional.relu6`; the gradient is 0 at 0
    and 6, like PyTorch's. `inplace` is ignored."""
    return jax.nn.relu6(input)


def hardsigmoid(input: ArrayLike, inplace: bool = False) -> jax.Array:
    """`relu6(x + 3) / 6`, as `torch.nn.functional.hardsigmoid`; the gradient is 1/6
    strictly inside (-3, 3) and 0 elsewhere, like PyTorch's. `inplace` is ignored."""
    return jax.nn.relu6(jnp.asarray(input) + 3.0) / 6.0


def hardswish(input: ArrayLike, inplace: bool = False) -> jax.Array:
    """`x * relu6(x + 3) / 6`, as `torch.nn.functional.hardswish`: 0 up to -3, `x` from 3,
    `x * (x + 3) / 6` between, with PyTorch's gradient (0 at -3, 1 at 3). `inplace`
    is ignored."""
    x = jnp.asarray(input)
    return jnp.where(x <= -3.0, jnp.zeros((), x.dtype), jnp.where(x < 3.0, x * (x + 3.0) / 6.0, x))


def leaky_relu(input: ArrayLike, negative_slope: float = 0.01, inplace: bool = False) -> jax.Array:
    """`x` where `x > 0`, else `negative_slope * x`, as `torch.nn.functional.leaky_relu`
    (the gradient at 0 is `negative_slope`, like PyTorch's). `inplace` is ignored."""
    x = jnp.asarray(input)
    return jnp.where(x > 0, x, x * negative_slope)


def elu(input: ArrayLike, alpha: float = 1.0, inplace: bool = False) -> jax.Array:
    """`x` where `x > 0`, else `alpha * (exp(x) - 1)`, as `torch.nn.functional.elu`
    (the gradient at 0 is `alpha`, like PyTorch's). `inplace` is ignored."""
    return jax.nn.elu(input, alpha)


def mish(input: ArrayLike, inplace: bool = False) -> jax.Array:
    """`x * tanh(softplus(x))`, as `torch.nn.functional.mish`. `inplace` is ignored."""
    return jax.nn.mish(input)


def softplus(input: ArrayLike, beta: float = 1.0, threshold: float = 20.0) -> jax.Array:
    """`log(1 + exp(beta * x)) / beta`, and `x` itself where `beta * x > threshold`
    (for numerical stability), as `torch.nn.functional.softplus`."""
    x = jnp.asarray(input)
    scaled = x * beta
    # logaddexp(z, 0) = log(1 + exp(z)) without overflow, so the branch that `where`
    # discards has a finite gradient (no NaN from 0 * inf).
    return jnp.where(scaled > threshold, x, jnp.logaddexp(scaled, 0.0) / beta)


def prelu(input: ArrayLike, weight: ArrayLike) -> jax.Array:
    """`x` where `x > 0`, else `weight * x`, as `torch.nn.functional.prelu`.

    `weight` is a scalar or has one entry per channel (axis 1 of the input; an input
    of fewer than 2 dims has one channel), like PyTorch's.
    """
    x, w = jnp.asarray(input), jnp.asarray(weight)
    if w.ndim > 1:
        raise ValueError(f"prelu: weight must be a scalar or 1-d, found shape {w.shape}")
    if w.size != 1:
        channels = x.shape[1] if x.ndim > 1 else 1
        if x.ndim == 0 or channels != w.size:
            raise ValueError(
                f"prelu: weight has {w.size} entries, one per channel, but the input of shape "
                f"{x.shape} has {channels} (channels are axis 1; inputs of fewer than 2 dims "
                "have 1)"
            )
        w = w.reshape((-1,) + (1,) * (x.ndim - 2))
    else:
        w = w.reshape(())
    return jnp.where(x > 0, x, w * x)


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


# ---------------------------------------------------------------- dropout


def _dropout(
    x: jax.Array, p: float, rng: jax.Array, mask_shape: tuple[int, ...] | None = None
) -> jax.Array:
    """Zero each element with probability `p` (or each slice, with a `mask_shape` that
    broadcasts to `x`), scale the rest by `1 / (1 - p)`."""
    if p >= 1.0:
        return jnp.zeros_like(x)
    keep = jax.random.bernoulli(rng, 1.0 - p, x.shape if mask_shape is None else mask_shape)
    return jnp.where(keep, x / (1.0 - p), jnp.zeros((), x.dtype))


def _dropout_key(p: float, training: bool, rng: jax.Array | None, who: str) -> jax.Array | None:
    """The key to drop with, or None when nothing is dropped; checks `p` like PyTorch."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{who}: dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return None
    if rng is None:
        raise ValueError(
            f"{who}: training with p={p} needs a PRNG key: pass rng=jax.random.key(...), "
            "or training=False to evaluate"
        )
    return rng


def dropout(
    input: ArrayLike,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    rng: jax.Array | None = None,
) -> jax.Array:
    """Dropout, as `torch.nn.functional.dropout`: with `training`, zero each element with
    probability `p` and scale the rest by `1 / (1 - p)`; otherwise the input as is.

    `rng` is the PRNG key to draw with (PyTorch uses its global generator); it is
    needed when `training` and `p > 0`. `inplace` is ignored.
    """
    x = jnp.asarray(input)
    key = _dropout_key(p, training, rng, "dropout")
    return x if key is None else _dropout(x, p, key)


def _channel_mask(x: jax.Array, batched: bool) -> tuple[int, ...]:
    """One mask entry per channel (and sample): the spatial axes are broadcast."""
    lead = 2 if batched else 1
    return x.shape[:lead] + (1,) * (x.ndim - lead)


def dropout1d(
    input: ArrayLike,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    rng: jax.Array | None = None,
) -> jax.Array:
    """Channel dropout, as `torch.nn.functional.dropout1d`: every channel of an `(N, C, L)`
    or `(C, L)` input is zeroed as a whole with probability `p` (the others scaled by
    `1 / (1 - p)`). `rng` as for `dropout`; `inplace` is ignored."""
    x = jnp.asarray(input)
    if x.ndim not in (2, 3):
        raise ValueError(
            f"dropout1d: expected a 2D (C, L) or 3D (N, C, L) input, found shape {x.shape}"
        )
    key = _dropout_key(p, training, rng, "dropout1d")
    return x if key is None else _dropout(x, p, key, _channel_mask(x, x.ndim == 3))


def dropout2d(
    input: ArrayLike,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    rng: jax.Array | None = None,
) -> jax.Array:
    """Channel dropout, as `torch.nn.functional.dropout2d`: every channel of an
    `(N, C, H, W)` input is zeroed as a whole with probability `p` (the others scaled
    by `1 / (1 - p)`). `rng` as for `dropout`; `inplace` is ignored.

    A 3D input is read as `(N, C, L)`, as PyTorch reads it (and documents for
    `Dropout2d`), not as an unbatched `(C, H, W)`: each `(n, c)` row is dropped. Other
    ranks raise (PyTorch warns that they will).
    """
    x = jnp.asarray(input)
    if x.ndim not in (3, 4):
        raise ValueError(
            f"dropout2d: expected a 4D (N, C, H, W) input, or 3D read as (N, C, L), found "
            f"shape {x.shape}; use dropout for element-wise dropout"
        )
    key = _dropout_key(p, training, rng, "dropout2d")
    return x if key is None else _dropout(x, p, key, _channel_mask(x, batched=True))


# ---------------------------------------------------------------- attention


def attention_and_weights(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    bias: jax.Array | None,
    scale: float,
    dropout_p: float = 0.0,
    dropout_rng: jax.Array | None = None,
    zero_masked_rows: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """`softmax(query @ key^T * scale + bias) @ value` and the (dropped-out) weights.

    The logits and the softmax are computed in at least float32; the output has the
    dtype of `value`. A row whose logits are all `-inf` (every key masked) gets
    weights 0, hence output 0 and gradient 0, with `zero_masked_rows` (PyTorch's
    `scaled_dot_product_attention`), and NaN without (a plain softmax, as PyTorch's
    `MultiheadAttention` with `need_weights=True`). `dropout_p > 0` needs `dropout_rng`.
    """
    compute = jnp.promote_types(jnp.result_type(query, key), jnp.float32)
    q = query.astype(compute) * jnp.asarray(scale, compute)
    logits = q @ jnp.swapaxes(key.astype(compute), -1, -2)
    if bias is not None:
        logits = logits + bias.astype(compute)
    if zero_masked_rows:
        dead = jnp.all(logits == -jnp.inf, axis=-1, keepdims=True)
        # Softmax of a row of zeros instead, so that no NaN reaches the gradient.
        weights = jax.nn.softmax(jnp.where(dead, jnp.zeros((), compute), logits), axis=-1)
        weights = jnp.where(dead, jnp.zeros((), compute), weights)
    else:
        weights = jax.nn.softmax(logits, axis=-1)
    if dropout_p > 0.0:
        if dropout_rng is None:
            raise ValueError(
                f"attention dropout (dropout_p={dropout_p}) needs a PRNG key: pass "
                "dropout_rng=jax.random.key(...), or dropout_p=0.0 in evaluation"
            )
        weights = _dropout(weights, dropout_p, dropout_rng)
    weights = weights.astype(value.dtype)
    return weights @ value, weights


def float_mask(mask: ArrayLike, dtype: DTypeLike, name: str, masked_value: bool) -> jax.Array:
    """A bool or float attention mask as an additive float mask of `dtype`.

    A bool mask puts `-inf` where it equals `masked_value` and 0 elsewhere; a float
    mask is added as is (cast to `dtype`). Other dtypes are an error, as in PyTorch.
    """
    m = jnp.asarray(mask)
    if m.dtype == jnp.bool_:
        return jnp.where(m == masked_value, -jnp.inf, 0.0).astype(dtype)
    if not jnp.issubdtype(m.dtype, jnp.floating):
        raise TypeError(
            f"{name} must be a bool or floating-point mask, found dtype {m.dtype}; use "
            f"{name}.astype(bool) for a mask of 0s and 1s"
        )
    return m.astype(dtype)


def causal_mask(target_len: int, source_len: int) -> jax.Array:
    """`(L, S)` bool, True where query `i` may attend key `j`, i.e. `j <= i` (top-left
    aligned, as PyTorch's `is_causal`)."""
    return jnp.tril(jnp.ones((target_len, source_len), jnp.bool_))


def scaled_dot_product_attention(
    query: ArrayLike,
    key: ArrayLike,
    value: ArrayLike,
    attn_mask: ArrayLike | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
    *,
    dropout_rng: jax.Array | None = None,
) -> jax.Array:
    """Attention `softmax(query @ key^T * scale + mask) @ value`, as
    `torch.nn.functional.scaled_dot_product_attention`.

    Shapes `query (..., L, E)`, `key (..., S, E)`, `value (..., S, Ev)`, output
    `(..., L, Ev)`; leading dims broadcast.

    **Arguments:**
    - `attn_mask`: broadcastable to `(..., L, S)`. A **bool** mask marks with `True`
      the positions that **take part** (the inverse of `MultiheadAttention`'s masks);
      a float mask is added to the logits.
    - `dropout_p`: dropout on the attention weights, applied whenever it is > 0 (like
      PyTorch's: pass 0.0 in evaluation); it needs `dropout_rng`, a PRNG key, which
      PyTorch draws from its global generator.
    - `is_causal`: mask key `j > i` for query `i` (the top-left causal mask); an error
      together with `attn_mask`.
    - `scale`: defaults to `1 / sqrt(E)`.
    - `enable_gqa`: grouped-query attention: `key`/`value` have `Hkv` heads on dim -3,
      each shared by `Hq / Hkv` query heads.

    A query whose keys are all masked gets output 0 (and gradient 0), as PyTorch's.
    """
    q, k, v = jnp.asarray(query), jnp.asarray(key), jnp.asarray(value)
    who = "scaled_dot_product_attention"
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise ValueError(f"{who}: query, key and value need at least 2 dims (..., seq, features)")
    if k.shape[-1] != q.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"{who}: expected query (..., L, E), key (..., S, E), value (..., S, Ev); found "
            f"shapes {q.shape}, {k.shape}, {v.shape}"
        )
    if enable_gqa and k.ndim >= 3 and q.ndim >= 3 and k.shape[-3] != q.shape[-3]:
        hq, hk = q.shape[-3], k.shape[-3]
        if hk == 0 or hq % hk or v.shape[-3] != hk:
            raise ValueError(
                f"{who}: with enable_gqa, the query heads ({hq}) must be a multiple of the "
                f"key heads ({hk}), and value must have the key's heads ({v.shape[-3]})"
            )
        k, v = jnp.repeat(k, hq // hk, axis=-3), jnp.repeat(v, hq // hk, axis=-3)
    target_len, source_len = q.shape[-2], k.shape[-2]
    compute = jnp.promote_types(q.dtype, jnp.float32)
    bias = None
    if is_causal:
        if attn_mask is not None:
            raise ValueError(f"{who}: pass either attn_mask or is_causal=True, not both")
        bias = float_mask(causal_mask(target_len, source_len), compute, "attn_mask", False)
    elif attn_mask is not None:
        bias = float_mask(attn_mask, compute, "attn_mask", False)
    factor = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    out, _ = attention_and_weights(q, k, v, bias, factor, dropout_p, dropout_rng)
    return out
