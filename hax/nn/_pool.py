"""`MaxPool2d`, `AvgPool2d`, `AdaptiveAvgPool2d`: PyTorch's output sizes, `ceil_mode`
and divisors, over the last two axes of `(N, C, H, W)` or `(C, H, W)`."""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, Real

from .._types import GlobalConfig, Module, StructureTree
from .._validate import validate
from ._conv import as_tuple
from ._layer import ConvertChild, layer

_N = 2  # spatial rank of the layers here


def _accumulator(x: jax.Array) -> jax.Array:
    """`x` in at least float32, so that half-precision averages round once, as PyTorch's."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _check_input(x: jax.Array, who: str) -> None:
    if x.ndim not in (_N + 1, _N + 2):
        raise ValueError(
            f"{who}: expected a {_N + 1}D (unbatched) or {_N + 2}D (batched) input, "
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
    _check_input(x, who)
    outs, pads = [], []
    for size, k, s, p, d in zip(
        x.shape[-_N:], aux["kernel_size"], aux["stride"], aux["padding"], dilation, strict=True
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
    lead = len(shape) - _N
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


def _argmax_indices(x: jax.Array, aux: Any, pads: list[tuple[int, int]]) -> jax.Array:
    """Flat indices into each `H * W` plane of the max of every window, as PyTorch's."""
    height, width = x.shape[-2:]
    index = jnp.broadcast_to(jnp.arange(height * width).reshape(height, width), x.shape)
    x = jax.lax.stop_gradient(x)
    init = (
        np.array(_lowest(x.dtype), x.dtype),
        np.array(np.iinfo(index.dtype).max, index.dtype),
    )
    _, indices = _reduce((x, index), init, _later_wins, aux, pads, tuple(aux["dilation"]))
    result: jax.Array = indices
    return result


def max_pool2d_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Real[Array, "*batch height width"]
) -> tuple[
    StructureTree,
    Real[Array, "*batch out_height out_width"]
    | tuple[Real[Array, "*batch out_height out_width"], Int[Array, "*batch out_height out_width"]],
]:
    """The max of each window (padding never wins); with `return_indices`, `(out, indices)`.

    Undilated windows use XLA's max pooling. JAX has no gradient for dilated ones, so
    those gather the max at its index instead, which routes the gradient to the index
    PyTorch picks.
    """
    aux = tree["aux"]
    dilation = tuple(aux["dilation"])
    _, pads = _geometry(aux, x, dilation, "MaxPool2d")
    indices = None
    if aux["return_indices"] or any(d != 1 for d in dilation):
        indices = _argmax_indices(x, aux, pads)
    y: jax.Array
    if all(d == 1 for d in dilation):
        y = _reduce(x, np.array(_lowest(x.dtype), x.dtype), jax.lax.max, aux, pads, dilation)
    else:
        assert indices is not None
        flat = x.reshape(*x.shape[:-_N], -1)
        picked = jnp.take_along_axis(
            flat,
            indices.reshape(*indices.shape[:-_N], -1),
            axis=-1,
            mode="fill",
            fill_value=_lowest(x.dtype),  # a window of padding only
        )
        y = picked.reshape(indices.shape)
    if indices is None or not aux["return_indices"]:
        return tree, y
    return tree, (y, indices)


def avg_pool2d_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[Array, "*batch height width"]
) -> tuple[StructureTree, Float[Array, "*batch out_height out_width"]]:
    """The sum of each zero-padded window over PyTorch's divisor."""
    aux = tree["aux"]
    dilation = (1,) * _N
    outs, pads = _geometry(aux, x, dilation, "AvgPool2d")
    total = _accumulator(x)
    y = _reduce(total, np.array(0, total.dtype), jax.lax.add, aux, pads, dilation)
    if aux["divisor_override"] is not None:
        return tree, (y / aux["divisor_override"]).astype(x.dtype)
    divisor = np.ones((), np.float64)
    for size, out, k, s, p in zip(
        x.shape[-_N:], outs, aux["kernel_size"], aux["stride"], aux["padding"], strict=True
    ):
        start = np.arange(out) * s - p
        if aux["count_include_pad"]:  # the window clipped to the padded input
            count = np.minimum(start + k, size + p) - start
        else:  # the window clipped to the input
            count = np.minimum(start + k, size) - np.maximum(start, 0)
        divisor = np.multiply.outer(divisor, count)
    return tree, (y / jnp.asarray(divisor, y.dtype)).astype(x.dtype)


def adaptive_avg_pool2d_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[Array, "*batch height width"]
) -> tuple[StructureTree, Float[Array, "*batch out_height out_width"]]:
    """Means over PyTorch's adaptive windows `[floor(i*in/out), ceil((i+1)*in/out))`, as
    one averaging matrix per axis (exact float32 products: `precision=HIGHEST`)."""
    _check_input(x, "AdaptiveAvgPool2d")
    y = _accumulator(x)
    for axis, (size, out) in enumerate(zip(x.shape[-_N:], tree["aux"]["output_size"], strict=True)):
        out = size if out is None else out
        matrix = np.zeros((out, size), np.float64)
        for i in range(out):
            lo, hi = (i * size) // out, -(-((i + 1) * size) // out)
            matrix[i, lo:hi] = 1.0 / (hi - lo)
        # contract the axis and put the result back in its place
        y = jnp.moveaxis(
            jnp.tensordot(
                y, jnp.asarray(matrix, y.dtype), ((y.ndim - _N + axis,), (1,)), precision="highest"
            ),
            -1,
            y.ndim - _N + axis,
        )
    return tree, y.astype(x.dtype)


def _pool_args(
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None,
    padding: int | Sequence[int],
    dilation: int | Sequence[int],
    who: str,
) -> dict[str, tuple[int, ...]]:
    kernel = as_tuple(kernel_size, _N, "kernel_size", who)
    strides = kernel if stride is None else as_tuple(stride, _N, "stride", who)
    pads = as_tuple(padding, _N, "padding", who)
    dilations = as_tuple(dilation, _N, "dilation", who)
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
    tree = _MAX_POOL2D.node(
        **_pool_args(kernel_size, stride, padding, dilation, "MaxPool2d"),
        return_indices=bool(return_indices),
        ceil_mode=bool(ceil_mode),
    )
    return validate(tree), {}


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
    window = _pool_args(kernel_size, stride, padding, 1, "AvgPool2d")
    del window["dilation"]
    if divisor_override is not None and (
        not isinstance(divisor_override, int) or divisor_override <= 0
    ):
        raise ValueError(
            "AvgPool2d: divisor_override must be a positive int or None, "
            f"found {divisor_override!r}"
        )
    tree = _AVG_POOL2D.node(
        **window,
        ceil_mode=bool(ceil_mode),
        count_include_pad=bool(count_include_pad),
        divisor_override=divisor_override,
    )
    return validate(tree), {}


def AdaptiveAvgPool2d(output_size: int | Sequence[int | None] | None) -> Module:
    """2-d adaptive average pooling, as `torch.nn.AdaptiveAvgPool2d`.

    `output_size` is an int or an `(H, W)` tuple whose `None` entries keep the input's
    size. Output cell `i` averages input cells `floor(i * in / out)` to
    `ceil((i + 1) * in / out) - 1`, so sizes that do not divide match PyTorch.
    """
    sizes = (
        (output_size,) * _N
        if output_size is None or isinstance(output_size, int)
        else tuple(output_size)
    )
    if len(sizes) != _N or not all(
        s is None or (isinstance(s, int) and not isinstance(s, bool) and s >= 1) for s in sizes
    ):
        raise ValueError(
            f"AdaptiveAvgPool2d: output_size must be a positive int, None, or a tuple of {_N} "
            f"of them, found {output_size!r}"
        )
    return validate(_ADAPTIVE_AVG_POOL2D.node(output_size=sizes)), {}


def _convert_max_pool2d(m: Any, convert_child: ConvertChild) -> Module:
    return MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation, m.return_indices, m.ceil_mode)


def _convert_avg_pool2d(m: Any, convert_child: ConvertChild) -> Module:
    return AvgPool2d(
        m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad, m.divisor_override
    )


def _convert_adaptive_avg_pool2d(m: Any, convert_child: ConvertChild) -> Module:
    return AdaptiveAvgPool2d(m.output_size)


_WINDOW_AUX = {"kernel_size": tuple, "stride": tuple, "padding": tuple}
_MAX_POOL2D = layer(
    "MaxPool2d",
    max_pool2d_apply,
    aux={**_WINDOW_AUX, "dilation": tuple, "return_indices": bool, "ceil_mode": bool},
    torch="torch.nn.MaxPool2d",
    converter=_convert_max_pool2d,
)
_AVG_POOL2D = layer(
    "AvgPool2d",
    avg_pool2d_apply,
    aux={
        **_WINDOW_AUX,
        "ceil_mode": bool,
        "count_include_pad": bool,
        "divisor_override": int | None,
    },
    torch="torch.nn.AvgPool2d",
    converter=_convert_avg_pool2d,
)
_ADAPTIVE_AVG_POOL2D = layer(
    "AdaptiveAvgPool2d",
    adaptive_avg_pool2d_apply,
    aux={"output_size": tuple},
    torch="torch.nn.AdaptiveAvgPool2d",
    converter=_convert_adaptive_avg_pool2d,
)
