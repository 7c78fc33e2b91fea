"""Normalisation layers: `BatchNorm1d/2d`, `InstanceNorm1d/2d`, `LayerNorm`, `GroupNorm`,
`RMSNorm`, and the function `layer_norm`.

PyTorch's names, layouts, defaults and running-statistics updates. Statistics are
computed in at least float32 and the output has the input's dtype.

`BatchNorm*(..., axis_name="batch")` synchronises its batch statistics over a named
axis (`jax.vmap(..., axis_name="batch")`, `shard_map`, `pmap`), like PyTorch's
`SyncBatchNorm`: each call normalises its own `(N, C, ...)` input with the mean and
variance of all inputs along that axis, so vmapping calls over slices of a batch
gives the same outputs and the same running statistics as one call on the whole
batch. The new buffers are then equal along the axis: with `hax.bind_module`, use
`jax.vmap(apply, in_axes=(None, 0), out_axes=(None, 0), axis_name="batch")` to get
them once, or with the default `out_axes=0` take one copy,
`jax.tree.map(lambda b: b[0], new_state)`.
"""

import math
import warnings
from collections.abc import Callable
from typing import Any, NotRequired

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Array, Float, Int
from typing_extensions import TypedDict

from .._torch_attrs import dtype_of, has
from .._types import GlobalConfig, InputArray, Module, StructureTree
from .._validate import validate
from . import _init
from ._dropout import read_train_mode
from ._layer import ConvertChild, Converter, Layer, layer

# ---------------------------------------------------------------- BatchNorm


class BatchNormParams(TypedDict):
    weight: NotRequired[Float[Array, " num_features"]]  # leading space: not a name for linters
    bias: NotRequired[Float[Array, " num_features"]]


class BatchNormBuffers(TypedDict):
    running_mean: NotRequired[Float[Array, " num_features"]]
    running_var: NotRequired[Float[Array, " num_features"]]
    num_batches_tracked: NotRequired[Int[Array, ""]]


_UNBOUND_AXIS = (
    "{kind} was built with axis_name={axis!r}, so it must run inside a transformation "
    "that names that axis, e.g. `jax.vmap(apply, in_axes=(None, 0), out_axes=(None, 0), "
    "axis_name={axis!r})`, or `shard_map`/`pmap` with it; build the layer with "
    "axis_name=None to use the statistics of each call's own batch"
)


def _compute_dtype(x: jax.Array) -> Any:
    """Statistics are computed in at least float32 (PyTorch accumulates half types in float)."""
    return jnp.promote_types(x.dtype, jnp.float32)


def _batch_stats(
    x: jax.Array, axes: tuple[int, ...], axis_name: str | None, kind: str
) -> tuple[jax.Array, jax.Array, int]:
    """Per-channel mean, biased variance and element count over `axes` (and `axis_name`).

    Two passes (mean, then mean of squared deviations), each averaged over the named
    axis with `pmean`: the same numbers as one call on the gathered batch, without the
    cancellation of `E[x^2] - E[x]^2`. Every call along the axis has the same shape,
    so the mean of the per-call means is the mean of the whole.
    """
    count = math.prod(x.shape[a] for a in axes)
    keep = tuple(1 if a in axes else s for a, s in enumerate(x.shape))
    mean = jnp.mean(x, axis=axes)
    if axis_name is not None:
        try:
            mean = jax.lax.pmean(mean, axis_name)  # type: ignore[no-untyped-call]  # untyped in jax
            count *= jax.lax.axis_size(axis_name)
        except NameError:
            raise NameError(_UNBOUND_AXIS.format(kind=kind, axis=axis_name)) from None
    var = jnp.mean(jnp.square(x - mean.reshape(keep)), axis=axes)
    if axis_name is not None:
        var = jax.lax.pmean(var, axis_name)  # type: ignore[no-untyped-call]  # untyped in jax
    return mean, var, count


def _batch_norm(
    tree: StructureTree, global_config: GlobalConfig, x: InputArray, kind: str
) -> tuple[StructureTree, jax.Array]:
    """PyTorch's `BatchNorm._BatchNorm.forward` for an `(N, C, *)` input."""
    train = read_train_mode(global_config, kind)
    aux: dict[str, Any] = tree["aux"]
    params, buffers = tree["params"], tree["buffers"]
    x = jnp.asarray(x)
    num_features = aux["num_features"]
    if x.shape[1] != num_features:
        raise ValueError(
            f"{kind}: the input has {x.shape[1]} channels (axis 1 of shape {x.shape}), but "
            f"the layer was built with num_features={num_features}"
        )
    axes = (0, *range(2, x.ndim))
    keep = (1, num_features) + (1,) * (x.ndim - 2)
    tracking = "running_mean" in buffers
    xc = x.astype(_compute_dtype(x))
    new_tree = tree
    if train or not tracking:
        # PyTorch uses batch statistics in training, and also in eval without running stats.
        mean, var, count = _batch_stats(xc, axes, aux["axis_name"], kind)
        if count == 1:
            raise ValueError(
                f"{kind}: expected more than 1 value per channel when training, got input "
                f"shape {x.shape}"
                + (f" over axis {aux['axis_name']!r}" if aux["axis_name"] else "")
            )
        if train and tracking:
            num_batches = buffers["num_batches_tracked"] + 1
            momentum = aux["momentum"]
            # momentum=None: a cumulative moving average, as PyTorch.
            factor = 1.0 / num_batches.astype(xc.dtype) if momentum is None else momentum
            running = _running_stats(buffers, mean, var, count, factor)
            new_buffers = {**buffers, **running, "num_batches_tracked": num_batches}
            new_tree = {**tree, "buffers": new_buffers}
    else:
        mean, var = buffers["running_mean"], buffers["running_var"]
    y = (xc - mean.reshape(keep)) * jax.lax.rsqrt(var.reshape(keep) + aux["eps"])
    return new_tree, _scale_shift(y, params, keep).astype(x.dtype)


def _running_stats(
    buffers: dict[str, Any], mean: jax.Array, var: jax.Array, count: int, factor: Any
) -> dict[str, jax.Array]:
    """PyTorch's update of `running_mean`/`running_var`: `(1 - factor) * running + factor *
    batch statistic`, with the unbiased variance of `count` values. Buffers carry no
    gradient (PyTorch updates them under no_grad)."""
    batch_mean = jax.lax.stop_gradient(mean)
    unbiased = jax.lax.stop_gradient(var) * (count / (count - 1))
    running_mean, running_var = buffers["running_mean"], buffers["running_var"]
    new_mean = (1 - factor) * running_mean + factor * batch_mean
    new_var = (1 - factor) * running_var + factor * unbiased
    return {
        "running_mean": new_mean.astype(running_mean.dtype),
        "running_var": new_var.astype(running_var.dtype),
    }


def _scale_shift(y: jax.Array, params: dict[str, Any], keep: tuple[int, ...]) -> jax.Array:
    """`y * weight + bias` with per-channel params reshaped to `keep`, where present."""
    if "weight" in params:
        y = y * params["weight"].reshape(keep)
    if "bias" in params:
        y = y + params["bias"].reshape(keep)
    return y


def batch_norm1d_apply(
    tree: StructureTree,
    global_config: GlobalConfig,
    x: Float[InputArray, "batch num_features *length"],
) -> tuple[StructureTree, Float[Array, "batch num_features *length"]]:
    """Normalise each channel of an `(N, C)` or `(N, C, L)` input; update running stats
    in training."""
    if x.ndim not in (2, 3):
        raise ValueError(f"BatchNorm1d: expected 2D or 3D input (got {x.ndim}D input)")
    return _batch_norm(tree, global_config, x, "BatchNorm1d")


def batch_norm2d_apply(
    tree: StructureTree,
    global_config: GlobalConfig,
    x: Float[InputArray, "batch num_features height width"],
) -> tuple[StructureTree, Float[Array, "batch num_features height width"]]:
    """Normalise each channel of an `(N, C, H, W)` input; update running stats in training."""
    if x.ndim != 4:
        raise ValueError(f"BatchNorm2d: expected 4D input (got {x.ndim}D input)")
    return _batch_norm(tree, global_config, x, "BatchNorm2d")


def _channel_state(
    num_features: int, affine: bool, bias: bool, track_running_stats: bool, dtype: Any
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """PyTorch's `_NormBase` params (`weight` ones, `bias` zeros) and buffers."""
    params = {}
    if affine:
        params["weight"] = _init.full((num_features,), 1.0, dtype)
        if bias:
            params["bias"] = _init.full((num_features,), 0.0, dtype)
    buffers = {}
    if track_running_stats:
        buffers = {
            "running_mean": _init.full((num_features,), 0.0, dtype),
            "running_var": _init.full((num_features,), 1.0, dtype),
            # PyTorch's int64; JAX's default int (int32 unless jax_enable_x64 is on).
            "num_batches_tracked": jnp.zeros((), int),
        }
    return params, buffers


def _make_channel_norm(
    record: Layer,
    num_features: int,
    eps: float,
    momentum: float | None,
    affine: bool,
    track_running_stats: bool,
    dtype: Any,
    **aux: Any,
) -> Module:
    """A batch or instance norm node: per-channel params and running statistics, the
    aux that both kinds have, and `aux` (BatchNorm's `bias`, whether its affine bias
    exists, and `axis_name`; an instance norm always has the bias when affine)."""
    bias = aux.get("bias", True)
    params, buffers = _channel_state(num_features, affine, bias, track_running_stats, dtype)
    tree = record.node(
        params,
        buffers,
        num_features=num_features,
        eps=float(eps),
        momentum=None if momentum is None else float(momentum),
        affine=affine,
        track_running_stats=track_running_stats,
        **aux,
    )
    config = {"train_mode": True}
    return validate(tree, config), config


def BatchNorm1d(
    num_features: int,
    eps: float = 1e-5,
    momentum: float | None = 0.1,
    affine: bool = True,
    track_running_stats: bool = True,
    *,
    bias: bool = True,
    axis_name: str | None = None,
    dtype: Any = jnp.float32,
) -> Module:
    """Batch normalisation over an `(N, C)` or `(N, C, L)` input, as `torch.nn.BatchNorm1d`.

    Reads `global_config["train_mode"]`. In training, each channel is normalised with
    the batch mean and biased variance, and the buffers are updated as PyTorch does:
    `running = (1 - momentum) * running + momentum * batch_stat` with the *unbiased*
    variance, and `num_batches_tracked += 1` (`momentum=None`: cumulative average,
    factor `1 / num_batches_tracked`). In eval, the running statistics are used (the
    batch statistics when `track_running_stats=False`).

    Params `weight` (ones) and `bias` (zeros; not with `bias=False`) of shape
    `(num_features,)` when `affine`; buffers `running_mean` (zeros), `running_var`
    (ones) and `num_batches_tracked` (shape `()`, JAX's default int: int32 unless x64
    is on, where PyTorch has int64) when `track_running_stats`. The returned config
    is `{"train_mode": True}`.

    **Arguments:**
    - `num_features`, `eps`, `momentum`, `affine`, `track_running_stats`, `bias`: as
      PyTorch (`bias` is keyword-only there too).
    - `axis_name`: average the batch statistics over this named axis too (see the
      module docstring); `None` uses each call's own batch.
    - `dtype`: the params' and running statistics' dtype.
    """
    return _make_channel_norm(
        _BATCH_NORM1D,
        num_features,
        eps,
        momentum,
        affine,
        track_running_stats,
        dtype,
        bias=bias,
        axis_name=axis_name,
    )


def BatchNorm2d(
    num_features: int,
    eps: float = 1e-5,
    momentum: float | None = 0.1,
    affine: bool = True,
    track_running_stats: bool = True,
    *,
    bias: bool = True,
    axis_name: str | None = None,
    dtype: Any = jnp.float32,
) -> Module:
    """Batch normalisation over an `(N, C, H, W)` input, as `torch.nn.BatchNorm2d`.

    Statistics per channel over `N, H, W`; otherwise exactly `BatchNorm1d` (train/eval
    behaviour, running-statistics updates, params, buffers, `axis_name`).
    """
    return _make_channel_norm(
        _BATCH_NORM2D,
        num_features,
        eps,
        momentum,
        affine,
        track_running_stats,
        dtype,
        bias=bias,
        axis_name=axis_name,
    )


def _batch_norm_converter(constructor: Callable[..., Module]) -> Converter:
    def convert(m: Any, convert_child: ConvertChild) -> Module:
        return constructor(
            m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats,
            bias=not m.affine or has(m.bias), dtype=dtype_of(m),
        )  # fmt: skip

    return convert


_BATCH_NORM_PRESENT_IF: dict[str, str | tuple[str, ...]] = {
    "weight": "affine",
    "bias": ("affine", "bias"),
    "running_mean": "track_running_stats",
    "running_var": "track_running_stats",
    "num_batches_tracked": "track_running_stats",
}
_BATCH_NORM_AUX = {
    "num_features": int,
    "eps": float,
    "momentum": float | None,
    "affine": bool,
    "track_running_stats": bool,
    "bias": bool,
    "axis_name": str | None,
}
_BATCH_NORM1D = layer(
    "BatchNorm1d",
    batch_norm1d_apply,
    params=BatchNormParams,
    buffers=BatchNormBuffers,
    aux=_BATCH_NORM_AUX,
    config={"train_mode": bool},
    torch="torch.nn.BatchNorm1d",
    converter=_batch_norm_converter(BatchNorm1d),
    float32=True,
    present_if=_BATCH_NORM_PRESENT_IF,
)
_BATCH_NORM2D = layer(
    "BatchNorm2d",
    batch_norm2d_apply,
    params=BatchNormParams,
    buffers=BatchNormBuffers,
    aux=_BATCH_NORM_AUX,
    config={"train_mode": bool},
    torch="torch.nn.BatchNorm2d",
    converter=_batch_norm_converter(BatchNorm2d),
    float32=True,
    present_if=_BATCH_NORM_PRESENT_IF,
)

# ---------------------------------------------------------------- InstanceNorm


def _instance_norm(
    tree: StructureTree, global_config: GlobalConfig, x: InputArray, n: int, kind: str
) -> tuple[StructureTree, jax.Array]:
    """PyTorch's `_InstanceNorm.forward` for an `(N, C, *spatial)` or `(C, *spatial)` input
    with `n` spatial axes: each sample's channel is normalised over its spatial axes."""
    if x.ndim not in (n + 1, n + 2):
        raise ValueError(
            f"{kind}: expected {n + 1}D (unbatched) or {n + 2}D input (got {x.ndim}D input)"
        )
    train = read_train_mode(global_config, kind)
    aux: dict[str, Any] = tree["aux"]
    params, buffers = tree["params"], tree["buffers"]
    x = jnp.asarray(x)
    unbatched = x.ndim == n + 1
    xb = x[None] if unbatched else x
    num_features, tracking = aux["num_features"], "running_mean" in buffers
    if xb.shape[1] != num_features:
        message = (
            f"{kind}: the input has {xb.shape[1]} channels (shape {tuple(x.shape)}), but the "
            f"layer was built with num_features={num_features}"
        )
        if params or tracking:
            raise ValueError(message)
        warnings.warn(message + "; the statistics are per channel, so it runs", stacklevel=2)
    keep = (1, num_features) + (1,) * n
    xc = xb.astype(_compute_dtype(xb))
    new_tree = tree
    if train or not tracking:  # PyTorch's use_input_stats
        count = math.prod(xb.shape[2:])
        if count == 1:
            raise ValueError(
                f"{kind}: expected more than 1 spatial element when training, got input "
                f"shape {tuple(x.shape)}"
            )
        axes = tuple(range(2, xb.ndim))
        mean = jnp.mean(xc, axis=axes, keepdims=True)
        var = jnp.mean(jnp.square(xc - mean), axis=axes, keepdims=True)
        if train and tracking:
            # PyTorch averages the per-sample statistics over the batch; momentum=None
            # is a factor of 0 here (InstanceNorm keeps no count: num_batches_tracked
            # stays 0, as in PyTorch).
            factor = 0.0 if aux["momentum"] is None else aux["momentum"]
            batch_mean, batch_var = mean.mean(0).reshape(-1), var.mean(0).reshape(-1)
            running = _running_stats(buffers, batch_mean, batch_var, count, factor)
            new_tree = {**tree, "buffers": {**buffers, **running}}
    else:
        mean = buffers["running_mean"].reshape(keep)
        var = buffers["running_var"].reshape(keep)
    y = _scale_shift((xc - mean) * jax.lax.rsqrt(var + aux["eps"]), params, keep)
    y = y.astype(x.dtype)
    return new_tree, y[0] if unbatched else y


def instance_norm1d_apply(
    tree: StructureTree,
    global_config: GlobalConfig,
    x: Float[InputArray, "*batch num_features length"],
) -> tuple[StructureTree, Float[Array, "*batch num_features length"]]:
    """Normalise each channel of each sample of `(N, C, L)` or `(C, L)` over `L`; update
    running stats in training when tracked."""
    return _instance_norm(tree, global_config, x, 1, "InstanceNorm1d")


def instance_norm2d_apply(
    tree: StructureTree,
    global_config: GlobalConfig,
    x: Float[InputArray, "*batch num_features height width"],
) -> tuple[StructureTree, Float[Array, "*batch num_features height width"]]:
    """Normalise each channel of each sample of `(N, C, H, W)` or `(C, H, W)` over `H, W`;
    update running stats in training when tracked."""
    return _instance_norm(tree, global_config, x, 2, "InstanceNorm2d")


def InstanceNorm1d(
    num_features: int,
    eps: float = 1e-5,
    momentum: float | None = 0.1,
    affine: bool = False,
    track_running_stats: bool = False,
    *,
    dtype: Any = jnp.float32,
) -> Module:
    """Instance normalisation of `(N, C, L)` or `(C, L)`, as `torch.nn.InstanceNorm1d`.

    Each sample's channel is normalised with its own mean and biased variance over
    `L` (style transfer, small batches). With `track_running_stats`, training updates
    `running_mean`/`running_var` with the batch average of those statistics (unbiased
    variance), as PyTorch does (`momentum=None` leaves them unchanged there, and
    `num_batches_tracked` stays 0), and evaluation normalises with them; otherwise
    train and eval are the same. Reads `global_config["train_mode"]`; the returned
    config is `{"train_mode": True}`.

    Params `weight` (ones) and `bias` (zeros) of shape `(num_features,)` when
    `affine`; buffers as `BatchNorm1d`'s when `track_running_stats`. `dtype` is
    their dtype.
    """
    return _make_channel_norm(
        _INSTANCE_NORM1D, num_features, eps, momentum, affine, track_running_stats, dtype
    )


def InstanceNorm2d(
    num_features: int,
    eps: float = 1e-5,
    momentum: float | None = 0.1,
    affine: bool = False,
    track_running_stats: bool = False,
    *,
    dtype: Any = jnp.float32,
) -> Module:
    """Instance normalisation of `(N, C, H, W)` or `(C, H, W)`, as `torch.nn.InstanceNorm2d`:
    statistics over `H, W`; otherwise exactly `InstanceNorm1d`."""
    return _make_channel_norm(
        _INSTANCE_NORM2D, num_features, eps, momentum, affine, track_running_stats, dtype
    )


def _instance_norm_converter(constructor: Callable[..., Module]) -> Converter:
    def convert(m: Any, convert_child: ConvertChild) -> Module:
        return constructor(
            m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats, dtype=dtype_of(m)
        )

    return convert


_INSTANCE_NORM_PRESENT_IF: dict[str, str | tuple[str, ...]] = {
    "weight": "affine",
    "bias": "affine",
    "running_mean": "track_running_stats",
    "running_var": "track_running_stats",
    "num_batches_tracked": "track_running_stats",
}
_INSTANCE_NORM_AUX = {
    "num_features": int,
    "eps": float,
    "momentum": float | None,
    "affine": bool,
    "track_running_stats": bool,
}
_INSTANCE_NORM1D = layer(
    "InstanceNorm1d",
    instance_norm1d_apply,
    params=BatchNormParams,
    buffers=BatchNormBuffers,
    aux=_INSTANCE_NORM_AUX,
    config={"train_mode": bool},
    torch="torch.nn.InstanceNorm1d",
    converter=_instance_norm_converter(InstanceNorm1d),
    float32=True,
    present_if=_INSTANCE_NORM_PRESENT_IF,
)
_INSTANCE_NORM2D = layer(
    "InstanceNorm2d",
    instance_norm2d_apply,
    params=BatchNormParams,
    buffers=BatchNormBuffers,
    aux=_INSTANCE_NORM_AUX,
    config={"train_mode": bool},
    torch="torch.nn.InstanceNorm2d",
    converter=_instance_norm_converter(InstanceNorm2d),
    float32=True,
    present_if=_INSTANCE_NORM_PRESENT_IF,
)

# ---------------------------------------------------------------- LayerNorm / RMSNorm


def _as_shape(normalized_shape: int | tuple[int, ...] | list[int], kind: str) -> tuple[int, ...]:
    if isinstance(normalized_shape, int):
        return (normalized_shape,)
    shape = tuple(normalized_shape)
    if not all(isinstance(s, int) for s in shape):
        raise TypeError(f"{kind}: normalized_shape must be an int or ints, found {shape!r}")
    return shape


def _check_trailing(x: jax.Array, shape: tuple[int, ...], kind: str) -> tuple[int, ...]:
    """The axes of `x` that `shape` covers; an error if they are not its last dims."""
    k = len(shape)
    if x.ndim < k or tuple(x.shape[x.ndim - k :]) != shape:
        raise ValueError(
            f"{kind}: expected an input whose last dims are normalized_shape={shape}, "
            f"found shape {tuple(x.shape)}"
        )
    return tuple(range(x.ndim - k, x.ndim))


def _check_param(value: jax.Array, shape: tuple[int, ...], name: str, kind: str) -> None:
    # validate cannot tie a variadic dim to a tuple in aux; a wrong shape would broadcast.
    if tuple(value.shape) != shape:
        raise ValueError(
            f"{kind}: {name} has shape {tuple(value.shape)}, expected normalized_shape={shape}"
        )


def _layer_norm(
    x: jax.Array,
    shape: tuple[int, ...],
    weight: jax.Array | None,
    bias: jax.Array | None,
    eps: float,
    kind: str,
    prefix: str,
) -> jax.Array:
    axes = _check_trailing(x, shape, kind)
    xc = x.astype(_compute_dtype(x))
    mean = jnp.mean(xc, axis=axes, keepdims=True)
    centered = xc - mean
    var = jnp.mean(jnp.square(centered), axis=axes, keepdims=True)
    y = centered * jax.lax.rsqrt(var + eps)
    if weight is not None:
        _check_param(weight, shape, prefix + "weight", kind)
        y = y * weight
    if bias is not None:
        _check_param(bias, shape, prefix + "bias", kind)
        y = y + bias
    return y.astype(x.dtype)


def layer_norm(
    input: ArrayLike,
    normalized_shape: int | tuple[int, ...] | list[int],
    weight: ArrayLike | None = None,
    bias: ArrayLike | None = None,
    eps: float = 1e-5,
) -> jax.Array:
    """Layer normalisation over the trailing `normalized_shape` dims, as
    `torch.nn.functional.layer_norm`: `(x - mean) / sqrt(var + eps) * weight + bias`,
    with the biased variance, computed in at least float32, in the input's dtype."""
    return _layer_norm(
        jnp.asarray(input),
        _as_shape(normalized_shape, "layer_norm"),
        None if weight is None else jnp.asarray(weight),
        None if bias is None else jnp.asarray(bias),
        eps,
        "layer_norm",
        "",
    )


class LayerNormParams(TypedDict):
    weight: NotRequired[Float[Array, "*normalized_shape"]]
    bias: NotRequired[Float[Array, "*normalized_shape"]]


def layer_norm_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[InputArray, "*shape"]
) -> tuple[StructureTree, Float[Array, "*shape"]]:
    """Normalise over the trailing `normalized_shape` dims (biased variance), then scale
    and shift: `layer_norm` with the node's params."""
    aux: dict[str, Any] = tree["aux"]
    params = tree["params"]
    weight, bias = params.get("weight"), params.get("bias")
    shape, eps = aux["normalized_shape"], aux["eps"]
    return tree, _layer_norm(jnp.asarray(x), shape, weight, bias, eps, "LayerNorm", "params.")


def LayerNorm(
    normalized_shape: int | tuple[int, ...] | list[int],
    eps: float = 1e-5,
    elementwise_affine: bool = True,
    bias: bool = True,
    *,
    dtype: Any = jnp.float32,
) -> Module:
    """Layer normalisation over the trailing `normalized_shape` dims, as `torch.nn.LayerNorm`.

    `y = (x - mean) / sqrt(var + eps) * weight + bias`, with the mean and biased
    variance over the last `len(normalized_shape)` dims. Params `weight` (ones) and
    `bias` (zeros) of shape `normalized_shape` when `elementwise_affine` (no `bias`
    when `bias=False`). `normalized_shape` is stored in aux as a tuple.
    """
    shape = _as_shape(normalized_shape, "LayerNorm")
    params = {}
    if elementwise_affine:
        params["weight"] = _init.full(shape, 1.0, dtype)
        if bias:
            params["bias"] = _init.full(shape, 0.0, dtype)
    tree = _LAYER_NORM.node(
        params,
        normalized_shape=shape,
        eps=float(eps),
        elementwise_affine=elementwise_affine,
        bias=bias,
    )
    return validate(tree), {}


def _convert_layer_norm(m: Any, convert_child: ConvertChild) -> Module:
    return LayerNorm(
        m.normalized_shape,
        m.eps,
        m.elementwise_affine,
        bias=not m.elementwise_affine or has(m.bias),
        dtype=dtype_of(m),
    )


_LAYER_NORM = layer(
    "LayerNorm",
    layer_norm_apply,
    params=LayerNormParams,
    aux={"normalized_shape": tuple, "eps": float, "elementwise_affine": bool, "bias": bool},
    torch="torch.nn.LayerNorm",
    converter=_convert_layer_norm,
    float32=True,
    present_if={"weight": "elementwise_affine", "bias": ("elementwise_affine", "bias")},
)


class RMSNormParams(TypedDict):
    weight: NotRequired[Float[Array, "*normalized_shape"]]


def rms_norm_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[InputArray, "*shape"]
) -> tuple[StructureTree, Float[Array, "*shape"]]:
    """`x / sqrt(mean(x^2) + eps) * weight` over the trailing `normalized_shape` dims."""
    aux: dict[str, Any] = tree["aux"]
    params = tree["params"]
    shape = aux["normalized_shape"]
    x = jnp.asarray(x)
    axes = _check_trailing(x, shape, "RMSNorm")
    eps = aux["eps"]
    xc = x.astype(_compute_dtype(x))
    if eps is None:  # PyTorch: the machine epsilon of the dtype it computes in
        eps = float(jnp.finfo(xc.dtype).eps)  # type: ignore[no-untyped-call]  # untyped in jax
    y = xc * jax.lax.rsqrt(jnp.mean(jnp.square(xc), axis=axes, keepdims=True) + eps)
    if "weight" in params:
        _check_param(params["weight"], shape, "params.weight", "RMSNorm")
        y = y * params["weight"]
    return tree, y.astype(x.dtype)


def RMSNorm(
    normalized_shape: int | tuple[int, ...] | list[int],
    eps: float | None = None,
    elementwise_affine: bool = True,
    *,
    dtype: Any = jnp.float32,
) -> Module:
    """Root-mean-square normalisation over the trailing dims, as `torch.nn.RMSNorm`.

    `y = x / sqrt(mean(x^2) + eps) * weight`; `eps=None` means the machine epsilon of
    the dtype the statistics are computed in (float32 for half-precision inputs, else
    the input's), as PyTorch. Param `weight` (ones) of shape `normalized_shape`
    when `elementwise_affine`.
    """
    shape = _as_shape(normalized_shape, "RMSNorm")
    params = {"weight": _init.full(shape, 1.0, dtype)} if elementwise_affine else {}
    tree = _RMS_NORM.node(
        params,
        normalized_shape=shape,
        eps=None if eps is None else float(eps),
        elementwise_affine=elementwise_affine,
    )
    return validate(tree), {}


def _convert_rms_norm(m: Any, convert_child: ConvertChild) -> Module:
    return RMSNorm(m.normalized_shape, m.eps, m.elementwise_affine, dtype=dtype_of(m))


_RMS_NORM = layer(
    "RMSNorm",
    rms_norm_apply,
    params=RMSNormParams,
    aux={"normalized_shape": tuple, "eps": float | None, "elementwise_affine": bool},
    torch="torch.nn.RMSNorm",
    converter=_convert_rms_norm,
    float32=True,
    present_if={"weight": "elementwise_affine"},
)

# ---------------------------------------------------------------- GroupNorm


class GroupNormParams(TypedDict):
    weight: NotRequired[Float[Array, " num_channels"]]
    bias: NotRequired[Float[Array, " num_channels"]]


def group_norm_apply(
    tree: StructureTree,
    global_config: GlobalConfig,
    x: Float[InputArray, "batch num_channels *spatial"],
) -> tuple[StructureTree, Float[Array, "batch num_channels *spatial"]]:
    """Normalise each sample over each group of `num_channels // num_groups` channels
    (and all spatial dims), then scale and shift per channel."""
    aux: dict[str, Any] = tree["aux"]
    params = tree["params"]
    groups, channels = aux["num_groups"], aux["num_channels"]
    x = jnp.asarray(x)
    if x.ndim < 2 or x.shape[1] != channels:
        raise ValueError(
            f"GroupNorm: expected an (N, num_channels={channels}, *) input, found shape "
            f"{tuple(x.shape)}"
        )
    n = x.shape[0]
    if n * (channels // groups) * math.prod(x.shape[2:]) == 1:  # PyTorch's check
        raise ValueError(
            f"GroupNorm: expected more than 1 value per channel when training, got input "
            f"shape {tuple(x.shape)}"
        )
    xc = x.astype(_compute_dtype(x)).reshape(n, groups, -1)
    mean = jnp.mean(xc, axis=-1, keepdims=True)
    centered = xc - mean
    var = jnp.mean(jnp.square(centered), axis=-1, keepdims=True)
    y = (centered * jax.lax.rsqrt(var + aux["eps"])).reshape(x.shape)
    keep = (1, channels) + (1,) * (x.ndim - 2)
    return tree, _scale_shift(y, params, keep).astype(x.dtype)


def GroupNorm(
    num_groups: int,
    num_channels: int,
    eps: float = 1e-5,
    affine: bool = True,
    *,
    bias: bool = True,
    dtype: Any = jnp.float32,
) -> Module:
    """Group normalisation of an `(N, C, *)` input, as `torch.nn.GroupNorm`.

    The channels are split into `num_groups` groups; each sample's group is normalised
    with its own mean and biased variance (no running statistics, same in train and
    eval). Params `weight` (ones) and `bias` (zeros; not with `bias=False`) of shape
    `(num_channels,)` when `affine`.
    """
    if num_groups <= 0 or num_channels % num_groups != 0:
        raise ValueError(
            f"GroupNorm: num_channels ({num_channels}) must be divisible by num_groups "
            f"({num_groups})"
        )
    params = {}
    if affine:
        params["weight"] = _init.full((num_channels,), 1.0, dtype)
        if bias:
            params["bias"] = _init.full((num_channels,), 0.0, dtype)
    tree = _GROUP_NORM.node(
        params,
        num_groups=num_groups,
        num_channels=num_channels,
        eps=float(eps),
        affine=affine,
        bias=bias,
    )
    return validate(tree), {}


def _convert_group_norm(m: Any, convert_child: ConvertChild) -> Module:
    return GroupNorm(
        m.num_groups,
        m.num_channels,
        m.eps,
        m.affine,
        bias=not m.affine or has(m.bias),
        dtype=dtype_of(m),
    )


_GROUP_NORM = layer(
    "GroupNorm",
    group_norm_apply,
    params=GroupNormParams,
    aux={"num_groups": int, "num_channels": int, "eps": float, "affine": bool, "bias": bool},
    torch="torch.nn.GroupNorm",
    converter=_convert_group_norm,
    float32=True,
    present_if={"weight": "affine", "bias": ("affine", "bias")},
)
