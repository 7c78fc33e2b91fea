"""Pooling: `MaxPool1d/2d`, `AvgPool1d/2d`, `AdaptiveAvgPool1d/2d`, `AdaptiveMaxPool2d`.

PyTorch's output sizes, `ceil_mode`, divisors, adaptive windows and argmax indices,
over the last `n` axes of `(N, C, *spatial)` or unbatched `(C, *spatial)`; one
rank-generic implementation of each kind serves the 1-d and 2-d layers.
"""

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Array, Float, Int, Real

from .._types import GlobalConfig, InputArray, Module, StructureTree
from .._validate import validate
from ._conv import as_tuple
from ._layer import Layer, from_attributes, layer


def _accumulator(x: jax.Array) -> jax.Array:
    """`x` in at least float32, so that half-precision averages round once, as PyTorch's."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _check_input(x: jax.Array, n: int, who: str) -> None:
    if x.ndim not in (n + 1, n + 2):
        raise ValueError(
            f"{who}: expected a {n + 1}D (unbatched) or {n + 2}D (batched) input, "
            f"found shape {tuple(x.shape)}"
        )


def _windows(
    size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool, who: str
) -> tuple[int, int]:
    """PyTorch's `pooling_output_shape` for one axis: the number of windows, and the
    high-side padding that makes exactly that many (negative drops unused trailing input)."""
    span = dilation * (kernel - 1) + 1
    out = (size + 2 * pad - span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1  # the last window must start inside the input or the left padding
    if out <= 0:
        raise ValueError(
            f"{who}: input size {size} is too small for kernel {kernel}, padding {pad}, "
            f"dilation {dilation}: it gives {out} outputs"
        )
    return out, (out - 1) * stride + span - size - pad


def _geometry(
    aux: Any, x: jax.Array, dilation: tuple[int, ...], who: str
) -> tuple[list[int], list[tuple[int, int]]]:
    """Output sizes and (low, high) paddings for the spatial axes of `x`."""
    n = len(aux["kernel_size"])
    _check_input(x, n, who)
    outs, pads = [], []
    for size, k, s, p, d in zip(
        x.shape[-n:], aux["kernel_size"], aux["stride"], aux["padding"], dilation, strict=True
    ):
        out, high = _windows(size, k, s, p, d, aux["ceil_mode"], who)
        outs.append(out)
        pads.append((p, high))
    return outs, pads


def _reduce(
    x: Any, init: Any, op: Any, aux: Any, pads: list[tuple[int, int]], dilation: tuple[int, ...]
) -> Any:
    """`reduce_window` over the spatial axes of `x` (an array or a tuple of them); a
    negative high padding crops instead (the gradient of `reduce_window` needs pads >= 0)."""
    shape = jax.tree.leaves(x)[0].shape
    lead = len(shape) - len(pads)
    crop = (
        ...,
        *(slice(0, size + min(hi, 0)) for size, (_, hi) in zip(shape[lead:], pads, strict=True)),
    )
    return jax.lax.reduce_window(
        jax.tree.map(lambda a: a[crop], x),
        init,
        op,
        window_dimensions=(1,) * lead + tuple(aux["kernel_size"]),
        window_strides=(1,) * lead + tuple(aux["stride"]),
        padding=[(0, 0)] * lead + [(lo, max(hi, 0)) for lo, hi in pads],
        window_dilation=(1,) * lead + dilation,
    )


def _lowest(dtype: Any) -> Any:
    return -jnp.inf if jnp.issubdtype(dtype, jnp.floating) else np.iinfo(dtype).min


def _later_wins(a: tuple[Any, Any], b: tuple[Any, Any]) -> tuple[Any, Any]:
    """PyTorch's argmax per window as a total order (so any reduction order agrees):
    NaN beats numbers and the last NaN wins; otherwise the larger value, then the
    smaller index, wins."""
    (av, ai), (bv, bi) = a, b
    a_nan, b_nan = jnp.isnan(av), jnp.isnan(bv)
    take_b = jnp.where(
        a_nan | b_nan,
        b_nan & (~a_nan | (bi > ai)),
        (bv > av) | ((bv == av) & (bi < ai)),
    )
    return jnp.where(take_b, bv, av), jnp.where(take_b, bi, ai)


def _flat_index(x: jax.Array, n: int) -> jax.Array:
    """Each element's flat index into its plane of the last `n` axes, shaped like `x`."""
    spatial = x.shape[x.ndim - n :]
    return jnp.broadcast_to(jnp.arange(math.prod(spatial)).reshape(spatial), x.shape)


def _argmax_init(x: jax.Array, index: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    return np.array(_lowest(x.dtype), x.dtype), np.array(np.iinfo(index.dtype).max, index.dtype)


def _argmax_indices(x: jax.Array, aux: Any, pads: list[tuple[int, int]]) -> jax.Array:
    """Flat indices into each spatial plane of the max of every window, as PyTorch's."""
    index = _flat_index(x, len(pads))
    x = jax.lax.stop_gradient(x)
    init = _argmax_init(x, index)
    _, indices = _reduce((x, index), init, _later_wins, aux, pads, tuple(aux["dilation"]))
    result: jax.Array = indices
    return result


def _gather_max(x: jax.Array, indices: jax.Array, n: int) -> jax.Array:
    """`x` at flat spatial `indices` (the lowest value where an index is out of range,
    for a window of padding only): the gradient goes to exactly those elements."""
    picked = jnp.take_along_axis(
        x.reshape(*x.shape[: x.ndim - n], -1),
        indices.reshape(*indices.shape[: indices.ndim - n], -1),
        axis=-1,
        mode="fill",
        fill_value=_lowest(x.dtype),
    )
    return picked.reshape(indices.shape)


def _max_pool(tree: StructureTree, x: InputArray, who: str) -> Any:
    """The max of each window (padding never wins); with `return_indices`, `(out, indices)`.

    Undilated windows use XLA's max pooling. JAX has no gradient for dilated ones, so
    those gather the max at its index instead, which routes the gradient to the index
    PyTorch picks.
    """
    x = jnp.asarray(x)
    aux: dict[str, Any] = tree["aux"]
    dilation = tuple(aux["dilation"])
    _, pads = _geometry(aux, x, dilation, who)
    indices = None
    if aux["return_indices"] or any(d != 1 for d in dilation):
        indices = _argmax_indices(x, aux, pads)
    if indices is None or all(d == 1 for d in dilation):
        y = _reduce(x, np.array(_lowest(x.dtype), x.dtype), jax.lax.max, aux, pads, dilation)
    else:
        y = _gather_max(x, indices, len(dilation))
    if indices is None or not aux["return_indices"]:
        return y
    return y, indices


def max_pool1d_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Real[InputArray, "*batch length"]
) -> tuple[
    StructureTree,
    Real[Array, "*batch out_length"]
    | tuple[Real[Array, "*batch out_length"], Int[Array, "*batch out_length"]],
]:
    """The max of each window of `(N, C, L)` or `(C, L)`; with `return_indices`,
    `(out, indices)`."""
    return tree, _max_pool(tree, x, "MaxPool1d")


def max_pool2d_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Real[InputArray, "*batch height width"]
) -> tuple[
    StructureTree,
    Real[Array, "*batch out_height out_width"]
    | tuple[Real[Array, "*batch out_height out_width"], Int[Array, "*batch out_height out_width"]],
]:
    """The max of each window of `(N, C, H, W)` or `(C, H, W)`; with `return_indices`,
    `(out, indices)`."""
    return tree, _max_pool(tree, x, "MaxPool2d")


def _avg_pool(aux: Any, x: InputArray, divisor_override: int | None, who: str) -> jax.Array:
    """The sum of each zero-padded window over PyTorch's divisor."""
    x = jnp.asarray(x)
    n = len(aux["kernel_size"])
    dilation = (1,) * n
    outs, pads = _geometry(aux, x, dilation, who)
    total = _accumulator(x)
    y: jax.Array = _reduce(total, np.array(0, total.dtype), jax.lax.add, aux, pads, dilation)
    if divisor_override is not None:
        return (y / divisor_override).astype(x.dtype)
    divisor = np.ones((), np.float64)
    for size, out, k, s, p in zip(
        x.shape[-n:], outs, aux["kernel_size"], aux["stride"], aux["padding"], strict=True
    ):
        start = np.arange(out) * s - p
        if aux["count_include_pad"]:  # the window clipped to the padded input
            count = np.minimum(start + k, size + p) - start
        else:  # the window clipped to the input
            count = np.minimum(start + k, size) - np.maximum(start, 0)
        divisor = np.multiply.outer(divisor, count)
    return (y / jnp.asarray(divisor, y.dtype)).astype(x.dtype)


def avg_pool1d_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[InputArray, "*batch length"]
) -> tuple[StructureTree, Float[Array, "*batch out_length"]]:
    """The mean of each window of `(N, C, L)` or `(C, L)`, with PyTorch's divisor."""
    return tree, _avg_pool(tree["aux"], x, None, "AvgPool1d")


def avg_pool2d_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[InputArray, "*batch height width"]
) -> tuple[StructureTree, Float[Array, "*batch out_height out_width"]]:
    """The mean of each window of `(N, C, H, W)` or `(C, H, W)`, with PyTorch's divisor."""
    aux: dict[str, Any] = tree["aux"]
    return tree, _avg_pool(aux, x, aux["divisor_override"], "AvgPool2d")


# ---------------------------------------------------------------- adaptive


def _adaptive_windows(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive windows `[floor(i * size / out), ceil((i + 1) * size / out))`."""
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


def _output_sizes(
    output_size: int | Sequence[int | None] | None, n: int, who: str
) -> tuple[int | None, ...]:
    """`output_size` as a tuple of `n` positive ints or `None`s (keep the input's size)."""
    sizes = (
        (output_size,) * n
        if output_size is None or isinstance(output_size, int)
        else tuple(output_size)
    )
    if len(sizes) != n or not all(
        s is None or (isinstance(s, int) and not isinstance(s, bool) and s >= 1) for s in sizes
    ):
        raise ValueError(
            f"{who}: output_size must be a positive int, None, or a tuple of {n} of them, "
            f"found {output_size!r}"
        )
    return sizes


def _resolved(x: jax.Array, sizes: tuple[int | None, ...]) -> list[tuple[int, int]]:
    """`(input size, output size)` per spatial axis, `None` meaning the input's size."""
    spatial = x.shape[x.ndim - len(sizes) :]
    return [(size, size if out is None else out) for size, out in zip(spatial, sizes, strict=True)]


def _adaptive_avg_pool(x: InputArray, sizes: tuple[int | None, ...], who: str) -> jax.Array:
    """Means over the adaptive windows, as one averaging matrix per axis (exact float32
    products: `precision=HIGHEST`)."""
    x = jnp.asarray(x)
    n = len(sizes)
    _check_input(x, n, who)
    y = _accumulator(x)
    for axis, (size, out) in enumerate(_resolved(x, sizes)):
        matrix = np.zeros((out, size), np.float64)
        for i, (lo, hi) in enumerate(_adaptive_windows(size, out)):
            matrix[i, lo:hi] = 1.0 / (hi - lo)
        # contract the axis and put the result back in its place
        y = jnp.moveaxis(
            jnp.tensordot(
                y, jnp.asarray(matrix, y.dtype), ((y.ndim - n + axis,), (1,)), precision="highest"
            ),
            -1,
            y.ndim - n + axis,
        )
    return y.astype(x.dtype)


def adaptive_avg_pool2d(
    input: ArrayLike, output_size: int | Sequence[int | None] | None
) -> jax.Array:
    """2-d adaptive average pooling of `(N, C, H, W)` or `(C, H, W)`, as
    `torch.nn.functional.adaptive_avg_pool2d` (see `AdaptiveAvgPool2d`)."""
    who = "adaptive_avg_pool2d"
    return _adaptive_avg_pool(jnp.asarray(input), _output_sizes(output_size, 2, who), who)


def adaptive_avg_pool1d_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[InputArray, "*batch length"]
) -> tuple[StructureTree, Float[Array, "*batch out_length"]]:
    """Means over PyTorch's adaptive windows `[floor(i*in/out), ceil((i+1)*in/out))`."""
    aux: dict[str, Any] = tree["aux"]
    return tree, _adaptive_avg_pool(x, aux["output_size"], "AdaptiveAvgPool1d")


def adaptive_avg_pool2d_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[InputArray, "*batch height width"]
) -> tuple[StructureTree, Float[Array, "*batch out_height out_width"]]:
    """Means over PyTorch's adaptive windows `[floor(i*in/out), ceil((i+1)*in/out))` per axis."""
    aux: dict[str, Any] = tree["aux"]
    return tree, _adaptive_avg_pool(x, aux["output_size"], "AdaptiveAvgPool2d")


def _adaptive_argmax(x: jax.Array, sizes: tuple[int | None, ...]) -> jax.Array:
    """Flat spatial indices of the max of every adaptive window, with PyTorch's ties and NaNs.

    Each axis is gathered into `(out, longest window)`, the shorter windows repeating
    their last element (a repeat changes neither the max nor, under `_later_wins`'s
    total order, its index), then the window axes are reduced at once.
    """
    n = len(sizes)
    values, index = jax.lax.stop_gradient(x), _flat_index(x, n)
    lead = x.ndim - n
    for axis, (size, out) in enumerate(_resolved(x, sizes)):
        windows = _adaptive_windows(size, out)
        longest = max(hi - lo for lo, hi in windows)
        gather = np.array([[min(lo + k, hi - 1) for k in range(longest)] for lo, hi in windows])
        position = lead + 2 * axis  # earlier axes were split into (out, window) pairs
        values = jnp.take(values, gather, axis=position)
        index = jnp.take(index, gather, axis=position)
    window_axes = tuple(lead + 2 * axis + 1 for axis in range(n))
    _, indices = jax.lax.reduce((values, index), _argmax_init(x, index), _later_wins, window_axes)
    result: jax.Array = indices
    return result


def adaptive_max_pool2d_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Real[InputArray, "*batch height width"]
) -> tuple[
    StructureTree,
    Real[Array, "*batch out_height out_width"]
    | tuple[Real[Array, "*batch out_height out_width"], Int[Array, "*batch out_height out_width"]],
]:
    """The max of each adaptive window (PyTorch's windows, ties to the first index, the
    last NaN wins); with `return_indices`, `(out, indices)`. The max is gathered at its
    index, so the gradient goes to the element PyTorch picks."""
    aux: dict[str, Any] = tree["aux"]
    x = jnp.asarray(x)
    _check_input(x, 2, "AdaptiveMaxPool2d")
    indices = _adaptive_argmax(x, aux["output_size"])
    y = _gather_max(x, indices, 2)
    return tree, ((y, indices) if aux["return_indices"] else y)


# ---------------------------------------------------------------- constructors


def _pool_args(
    n: int,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None,
    padding: int | Sequence[int],
    dilation: int | Sequence[int],
    who: str,
) -> dict[str, tuple[int, ...]]:
    kernel = as_tuple(kernel_size, n, "kernel_size", who)
    strides = kernel if stride is None else as_tuple(stride, n, "stride", who)
    pads = as_tuple(padding, n, "padding", who)
    dilations = as_tuple(dilation, n, "dilation", who)
    for values, low, name in (
        (kernel, 1, "kernel_size"),
        (strides, 1, "stride"),
        (pads, 0, "padding"),
        (dilations, 1, "dilation"),
    ):
        if any(v < low for v in values):
            raise ValueError(f"{who}: {name} must be >= {low}, found {values}")
    if any(p > k // 2 for p, k in zip(pads, kernel, strict=True)):
        raise ValueError(
            f"{who}: padding {pads} must be at most half of kernel_size {kernel}, as in PyTorch"
        )
    return {"kernel_size": kernel, "stride": strides, "padding": pads, "dilation": dilations}


def _make_max_pool(
    record: Layer,
    n: int,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None,
    padding: int | Sequence[int],
    dilation: int | Sequence[int],
    return_indices: bool,
    ceil_mode: bool,
) -> Module:
    tree = record.node(
        **_pool_args(n, kernel_size, stride, padding, dilation, record.kind),
        return_indices=bool(return_indices),
        ceil_mode=bool(ceil_mode),
    )
    return validate(tree), {}


def MaxPool1d(
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    return_indices: bool = False,
    ceil_mode: bool = False,
) -> Module:
    """1-d max pooling of `(N, C, L)` or `(C, L)`, as `torch.nn.MaxPool1d`.

    Arguments, ints or 1-tuples (stored as 1-tuples), as for `MaxPool2d`; indices are
    positions along `L`.
    """
    return _make_max_pool(
        _MAX_POOL1D, 1, kernel_size, stride, padding, dilation, return_indices, ceil_mode
    )


def MaxPool2d(
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    return_indices: bool = False,
    ceil_mode: bool = False,
) -> Module:
    """2-d max pooling, as `torch.nn.MaxPool2d`.

    `stride` defaults to `kernel_size`; `padding` (at most half the kernel) is never
    picked; with `ceil_mode` the output size rounds up, but a window must start inside
    the input or its left padding. With `return_indices` the output is `(out, indices)`,
    the flat index of each max in its `H * W` plane (int32 unless x64 is enabled,
    where PyTorch gives int64; ties give the first index, NaNs win like PyTorch's).
    """
    return _make_max_pool(
        _MAX_POOL2D, 2, kernel_size, stride, padding, dilation, return_indices, ceil_mode
    )


def _avg_pool_aux(
    n: int,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None,
    padding: int | Sequence[int],
    ceil_mode: bool,
    count_include_pad: bool,
    who: str,
) -> dict[str, Any]:
    window: dict[str, Any] = _pool_args(n, kernel_size, stride, padding, 1, who)
    del window["dilation"]
    return {**window, "ceil_mode": bool(ceil_mode), "count_include_pad": bool(count_include_pad)}


def AvgPool1d(
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Module:
    """1-d average pooling of `(N, C, L)` or `(C, L)`, as `torch.nn.AvgPool1d`.

    Arguments, ints or 1-tuples (stored as 1-tuples), and divisors as for `AvgPool2d`
    (PyTorch's `AvgPool1d` has no `divisor_override`).
    """
    aux = _avg_pool_aux(1, kernel_size, stride, padding, ceil_mode, count_include_pad, "AvgPool1d")
    return validate(_AVG_POOL1D.node(**aux)), {}


def AvgPool2d(
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Module:
    """2-d average pooling, as `torch.nn.AvgPool2d`.

    Each window's sum is divided by `divisor_override` if given, else by its size
    counting the zero padding (`count_include_pad=True`, but not the extra cells a
    `ceil_mode` window hangs past the padding) or counting the input cells only.
    """
    aux = _avg_pool_aux(2, kernel_size, stride, padding, ceil_mode, count_include_pad, "AvgPool2d")
    if divisor_override is not None and (
        not isinstance(divisor_override, int) or divisor_override <= 0
    ):
        raise ValueError(
            "AvgPool2d: divisor_override must be a positive int or None, "
            f"found {divisor_override!r}"
        )
    return validate(_AVG_POOL2D.node(**aux, divisor_override=divisor_override)), {}


def AdaptiveAvgPool1d(output_size: int | Sequence[int | None] | None) -> Module:
    """1-d adaptive average pooling of `(N, C, L)` or `(C, L)`, as `torch.nn.AdaptiveAvgPool1d`.

    Output cell `i` averages input cells `floor(i * L / out)` to `ceil((i + 1) * L / out)
    - 1`; `output_size` is stored as a 1-tuple (`None` keeps the input's size).
    """
    sizes = _output_sizes(output_size, 1, "AdaptiveAvgPool1d")
    return validate(_ADAPTIVE_AVG_POOL1D.node(output_size=sizes)), {}


def AdaptiveAvgPool2d(output_size: int | Sequence[int | None] | None) -> Module:
    """2-d adaptive average pooling, as `torch.nn.AdaptiveAvgPool2d`.

    `output_size` is an int or an `(H, W)` tuple whose `None` entries keep the input's
    size. Output cell `i` averages input cells `floor(i * in / out)` to
    `ceil((i + 1) * in / out) - 1`, so sizes that do not divide match PyTorch.
    """
    sizes = _output_sizes(output_size, 2, "AdaptiveAvgPool2d")
    return validate(_ADAPTIVE_AVG_POOL2D.node(output_size=sizes)), {}


def AdaptiveMaxPool2d(
    output_size: int | Sequence[int | None] | None, return_indices: bool = False
) -> Module:
    """2-d adaptive max pooling of `(N, C, H, W)` or `(C, H, W)`, as
    `torch.nn.AdaptiveMaxPool2d`.

    The windows are `AdaptiveAvgPool2d`'s; `output_size` likewise. With
    `return_indices` the output is `(out, indices)`, the flat index of each max in its
    `H * W` plane (int32 unless x64 is on; ties and NaNs as `MaxPool2d`).
    """
    sizes = _output_sizes(output_size, 2, "AdaptiveMaxPool2d")
    tree = _ADAPTIVE_MAX_POOL2D.node(output_size=sizes, return_indices=bool(return_indices))
    return validate(tree), {}


_WINDOW_AUX = {"kernel_size": tuple, "stride": tuple, "padding": tuple}
_MAX_POOL_AUX = {**_WINDOW_AUX, "dilation": tuple, "return_indices": bool, "ceil_mode": bool}
_AVG_POOL_AUX = {**_WINDOW_AUX, "ceil_mode": bool, "count_include_pad": bool}
_MAX_POOL1D = layer(
    "MaxPool1d",
    max_pool1d_apply,
    aux=_MAX_POOL_AUX,
    torch="torch.nn.MaxPool1d",
    converter=from_attributes(
        MaxPool1d, "kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode"
    ),
)
_MAX_POOL2D = layer(
    "MaxPool2d",
    max_pool2d_apply,
    aux=_MAX_POOL_AUX,
    torch="torch.nn.MaxPool2d",
    converter=from_attributes(
        MaxPool2d, "kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode"
    ),
)
_AVG_POOL1D = layer(
    "AvgPool1d",
    avg_pool1d_apply,
    aux=_AVG_POOL_AUX,
    torch="torch.nn.AvgPool1d",
    converter=from_attributes(
        AvgPool1d, "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"
    ),
)
_AVG_POOL2D = layer(
    "AvgPool2d",
    avg_pool2d_apply,
    aux={**_AVG_POOL_AUX, "divisor_override": int | None},
    torch="torch.nn.AvgPool2d",
    converter=from_attributes(
        AvgPool2d,
        "kernel_size",
        "stride",
        "padding",
        "ceil_mode",
        "count_include_pad",
        "divisor_override",
    ),
)
_ADAPTIVE_AVG_POOL1D = layer(
    "AdaptiveAvgPool1d",
    adaptive_avg_pool1d_apply,
    aux={"output_size": tuple},
    torch="torch.nn.AdaptiveAvgPool1d",
    converter=from_attributes(AdaptiveAvgPool1d, "output_size"),
)
_ADAPTIVE_AVG_POOL2D = layer(
    "AdaptiveAvgPool2d",
    adaptive_avg_pool2d_apply,
    aux={"output_size": tuple},
    torch="torch.nn.AdaptiveAvgPool2d",
    converter=from_attributes(AdaptiveAvgPool2d, "output_size"),
)
_ADAPTIVE_MAX_POOL2D = layer(
    "AdaptiveMaxPool2d",
    adaptive_max_pool2d_apply,
    aux={"output_size": tuple, "return_indices": bool},
    torch="torch.nn.AdaptiveMaxPool2d",
    converter=from_attributes(AdaptiveMaxPool2d, "output_size", "return_indices"),
)
