"""`Conv1d/2d/3d`, `ConvTranspose1d/2d`: PyTorch's layouts, padding rules and init.

Inputs are channels-first (`N, C, *spatial`, or unbatched `C, *spatial`); weights are
`(out_channels, in_channels // groups, *kernel_size)` for convolutions and
`(in_channels, out_channels // groups, *kernel_size)` for transposed ones, so a
PyTorch `state_dict` loads without reshaping. One private implementation on
`jax.lax.conv_general_dilated` serves every rank.
"""

import math
from collections.abc import Callable, Sequence
from typing import Any, NotRequired

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._rng import RngLike, resolve_rng
from .._torch_attrs import dtype_of, has
from .._types import GlobalConfig, InputArray, Module, StructureTree
from .._validate import validate
from . import _init
from ._layer import ConvertChild, Converter, Layer, layer

_PADDING_MODES = {
    "zeros": "constant",
    "reflect": "reflect",
    "replicate": "edge",
    "circular": "wrap",
}
_KERNEL_DIMS = {1: "kernel_l", 2: "kernel_h kernel_w", 3: "kernel_d kernel_h kernel_w"}


def as_tuple(value: int | Sequence[int], n: int, name: str, who: str) -> tuple[int, ...]:
    """An int-or-sequence argument as a tuple of `n` ints, as PyTorch's `_ntuple`."""
    try:
        items = (value,) * n if isinstance(value, int) else tuple(value)
    except TypeError:
        items = ()
    if len(items) != n or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise ValueError(f"{who}: {name} must be an int or a tuple of {n} ints, found {value!r}")
    return tuple(int(v) for v in items)


def _check_min(values: tuple[int, ...], low: int, name: str, who: str) -> None:
    if any(v < low for v in values):
        raise ValueError(f"{who}: {name} must be >= {low}, found {values}")


def _batched(x: jax.Array, n: int, who: str) -> tuple[jax.Array, bool]:
    """`x` with a batch axis (added if `x` is unbatched), and whether one was added."""
    if x.ndim not in (n + 1, n + 2):
        raise ValueError(
            f"{who}: expected a {n + 1}D (unbatched) or {n + 2}D (batched) input, "
            f"found shape {tuple(x.shape)}"
        )
    return (x[None], True) if x.ndim == n + 1 else (x, False)


def _pad_pairs(
    padding: str | tuple[int, ...], kernel: tuple[int, ...], dilation: tuple[int, ...]
) -> list[tuple[int, int]]:
    """(low, high) padding per spatial axis; "same" puts the odd extra on the high side."""
    if padding == "valid":
        return [(0, 0)] * len(kernel)
    if isinstance(padding, str):  # "same"
        totals = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
        return [(t // 2, t - t // 2) for t in totals]
    return [(p, p) for p in padding]


def _finish(y: jax.Array, params: Any, n: int, unbatched: bool) -> jax.Array:
    if "bias" in params:
        y = y + params["bias"].reshape((-1,) + (1,) * n)
    return y[0] if unbatched else y


def _check_pad_fits(x: jax.Array, pads: list[tuple[int, int]], mode: str, who: str) -> None:
    """PyTorch's limits: "reflect" pads less than the input size, "circular" at most
    the input size (`jnp.pad` would reflect or wrap again instead)."""
    for size, (lo, hi) in zip(x.shape[2:], pads, strict=True):
        if (mode == "reflect" and max(lo, hi) >= size) or (
            mode == "circular" and max(lo, hi) > size
        ):
            limit = "smaller than" if mode == "reflect" else "at most"
            raise ValueError(
                f"{who}: padding_mode={mode!r} needs a padding {limit} the input size, "
                f"found padding {(lo, hi)} for size {size} (input shape {tuple(x.shape)})"
            )


def _conv(tree: StructureTree, x: InputArray, n: int, who: str) -> jax.Array:
    """The convolution of every rank; shapes are static, so the checks cost nothing in jit."""
    x = jnp.asarray(x)
    aux: dict[str, Any] = tree["aux"]
    params = tree["params"]
    weight = params["weight"]
    x, unbatched = _batched(x, n, who)
    if x.shape[1] != weight.shape[1] * aux["groups"]:
        raise ValueError(
            f"{who}: expected {weight.shape[1] * aux['groups']} input channels, "
            f"found input of shape {tuple(x.shape)}"
        )
    pads = _pad_pairs(aux["padding"], weight.shape[2:], aux["dilation"])
    if aux["padding_mode"] != "zeros":
        _check_pad_fits(x, pads, aux["padding_mode"], who)
        mode = _PADDING_MODES[aux["padding_mode"]]
        x = jnp.pad(x, [(0, 0), (0, 0), *pads], mode=mode)
        pads = [(0, 0)] * n
    for size, (lo, hi), k, d in zip(
        x.shape[2:], pads, weight.shape[2:], aux["dilation"], strict=True
    ):
        if size + lo + hi < d * (k - 1) + 1:
            raise ValueError(
                f"{who}: padded input size {size + lo + hi} is smaller than the dilated kernel "
                f"size {d * (k - 1) + 1} (input shape {tuple(x.shape)})"
            )
    dtype = jnp.result_type(x, weight)
    y = jax.lax.conv_general_dilated(
        x.astype(dtype),
        weight.astype(dtype),
        window_strides=aux["stride"],
        padding=pads,
        rhs_dilation=aux["dilation"],
        feature_group_count=aux["groups"],
    )
    return _finish(y, params, n, unbatched)


def conv1d_apply(
    tree: StructureTree,
    global_config: GlobalConfig,
    x: Float[InputArray, "*batch in_channels length"],
) -> tuple[StructureTree, Float[Array, "*batch out_channels out_length"]]:
    """1-d convolution over the last axis of `(N, C, L)` or `(C, L)`."""
    return tree, _conv(tree, x, 1, "Conv1d")


def conv2d_apply(
    tree: StructureTree,
    global_config: GlobalConfig,
    x: Float[InputArray, "*batch in_channels height width"],
) -> tuple[StructureTree, Float[Array, "*batch out_channels out_height out_width"]]:
    """2-d convolution over the last two axes of `(N, C, H, W)` or `(C, H, W)`."""
    return tree, _conv(tree, x, 2, "Conv2d")


def conv3d_apply(
    tree: StructureTree,
    global_config: GlobalConfig,
    x: Float[InputArray, "*batch in_channels depth height width"],
) -> tuple[StructureTree, Float[Array, "*batch out_channels out_depth out_height out_width"]]:
    """3-d convolution over the last three axes of `(N, C, D, H, W)` or `(C, D, H, W)`."""
    return tree, _conv(tree, x, 3, "Conv3d")


def _init_params(
    rng: RngLike | None,
    who: str,
    weight_shape: tuple[int, ...],
    out_channels: int,
    bias: bool,
    dtype: Any,
) -> dict[str, jax.Array]:
    """PyTorch's `_ConvNd.reset_parameters`: `kaiming_uniform_(a=sqrt(5))` for the weight,
    which is `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`, and the same bound for the bias, with
    `fan_in = weight.shape[1] * prod(kernel_size)`."""
    wkey, bkey = jax.random.split(resolve_rng(rng, who))
    fan_in = math.prod(weight_shape[1:])
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    params = {"weight": _init.uniform(wkey, weight_shape, dtype, -bound, bound)}
    if bias:
        params["bias"] = _init.uniform(bkey, (out_channels,), dtype, -bound, bound)
    return params


def _check_channels(in_channels: int, out_channels: int, groups: int, who: str) -> None:
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{who}: groups must be a positive integer, found {groups!r}")
    if in_channels % groups:
        raise ValueError(
            f"{who}: in_channels ({in_channels}) must be divisible by groups ({groups})"
        )
    if out_channels % groups:
        raise ValueError(
            f"{who}: out_channels ({out_channels}) must be divisible by groups ({groups})"
        )


def _make_conv(
    n: int,
    record: Layer,
    in_channels: int,
    out_channels: int,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int],
    padding: str | int | Sequence[int],
    dilation: int | Sequence[int],
    groups: int,
    bias: bool,
    padding_mode: str,
    rng: RngLike | None,
    dtype: Any,
) -> Module:
    who = f"Conv{n}d"
    _check_channels(in_channels, out_channels, groups, who)
    kernel = as_tuple(kernel_size, n, "kernel_size", who)
    strides = as_tuple(stride, n, "stride", who)
    dilations = as_tuple(dilation, n, "dilation", who)
    _check_min(kernel, 1, "kernel_size", who)
    _check_min(strides, 1, "stride", who)
    _check_min(dilations, 1, "dilation", who)
    pad: str | tuple[int, ...]
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(
                f"{who}: padding must be 'same', 'valid', an int or a tuple, found {padding!r}"
            )
        if padding == "same" and any(s != 1 for s in strides):
            raise ValueError(f"{who}: padding='same' is not supported for strided convolutions")
        pad = padding
    else:
        pad = as_tuple(padding, n, "padding", who)
        _check_min(pad, 0, "padding", who)
    if padding_mode not in _PADDING_MODES:
        raise ValueError(
            f"{who}: padding_mode must be one of {sorted(_PADDING_MODES)}, found {padding_mode!r}"
        )
    weight_shape = (out_channels, in_channels // groups, *kernel)
    tree = record.node(
        _init_params(rng, who, weight_shape, out_channels, bias, dtype),
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=kernel,
        stride=strides,
        padding=pad,
        dilation=dilations,
        groups=groups,
        bias=bias,
        padding_mode=padding_mode,
    )
    return validate(tree), {}


def Conv1d(
    in_channels: int,
    out_channels: int,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: str | int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    bias: bool = True,
    padding_mode: str = "zeros",
    *,
    rng: RngLike | None = None,
    dtype: Any = jnp.float32,
) -> Module:
    """A 1-d convolution, as `torch.nn.Conv1d`, over `(N, C, L)` or unbatched `(C, L)`.

    Arguments, params (`weight` of shape `(out_channels, in_channels // groups, k)`) and
    initialisation as for `Conv2d`, with ints or 1-tuples.
    """
    return _make_conv(
        1, _CONV1D, in_channels, out_channels, kernel_size, stride, padding,
        dilation, groups, bias, padding_mode, rng, dtype,
    )  # fmt: skip


def Conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: str | int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    bias: bool = True,
    padding_mode: str = "zeros",
    *,
    rng: RngLike | None = None,
    dtype: Any = jnp.float32,
) -> Module:
    """A 2-d convolution, as `torch.nn.Conv2d`, over `(N, C, H, W)` or unbatched `(C, H, W)`.

    Params: `weight` of shape `(out_channels, in_channels // groups, kH, kW)` and `bias`
    of shape `(out_channels,)`, both drawn from `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` with
    `fan_in = in_channels // groups * kH * kW` (PyTorch's default initialisation).

    **Arguments:** as PyTorch's.
    - `kernel_size`, `stride`, `dilation`: an int or a tuple of 2 ints.
    - `padding`: an int, a tuple of 2 ints, `"valid"` (none) or `"same"` (output size =
      input size; stride 1 only; an odd total padding puts the extra element at the end,
      like PyTorch).
    - `groups`: split the channels into this many independent convolutions.
    - `padding_mode`: `"zeros"`, `"reflect"`, `"replicate"` or `"circular"`.
    - `rng`: a PRNG key (or int seed); defaults to the next key of `hax.rng_context`.
    - `dtype`: the params' dtype.
    """
    return _make_conv(
        2, _CONV2D, in_channels, out_channels, kernel_size, stride, padding,
        dilation, groups, bias, padding_mode, rng, dtype,
    )  # fmt: skip


def Conv3d(
    in_channels: int,
    out_channels: int,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: str | int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    bias: bool = True,
    padding_mode: str = "zeros",
    *,
    rng: RngLike | None = None,
    dtype: Any = jnp.float32,
) -> Module:
    """A 3-d convolution, as `torch.nn.Conv3d`, over `(N, C, D, H, W)` or `(C, D, H, W)`.

    Arguments, params (`weight` of shape `(out_channels, in_channels // groups, kD, kH,
    kW)`) and initialisation as for `Conv2d`, with ints or 3-tuples.
    """
    return _make_conv(
        3, _CONV3D, in_channels, out_channels, kernel_size, stride, padding,
        dilation, groups, bias, padding_mode, rng, dtype,
    )  # fmt: skip


def _conv_converter(constructor: Callable[..., Module]) -> Converter:
    def convert(m: Any, convert_child: ConvertChild) -> Module:
        return constructor(
            m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
            m.groups, has(m.bias), m.padding_mode, dtype=dtype_of(m),
        )  # fmt: skip

    return convert


def _conv_params(n: int) -> dict[str, Any]:
    return {
        "weight": Float[Array, f"out_channels in_channels//groups {_KERNEL_DIMS[n]}"],
        "bias": NotRequired[Float[Array, " out_channels"]],
    }


_CONV_AUX = {
    "in_channels": int,
    "out_channels": int,
    "kernel_size": tuple,
    "stride": tuple,
    "padding": tuple | str,  # "same", "valid" or one int per axis
    "dilation": tuple,
    "groups": int,
    "bias": bool,
    "padding_mode": str,
}
_CONV1D = layer(
    "Conv1d",
    conv1d_apply,
    params=_conv_params(1),
    aux=_CONV_AUX,
    torch="torch.nn.Conv1d",
    converter=_conv_converter(Conv1d),
    present_if={"bias": "bias"},
)
_CONV2D = layer(
    "Conv2d",
    conv2d_apply,
    params=_conv_params(2),
    aux=_CONV_AUX,
    torch="torch.nn.Conv2d",
    converter=_conv_converter(Conv2d),
    present_if={"bias": "bias"},
)
_CONV3D = layer(
    "Conv3d",
    conv3d_apply,
    params=_conv_params(3),
    aux=_CONV_AUX,
    torch="torch.nn.Conv3d",
    converter=_conv_converter(Conv3d),
    present_if={"bias": "bias"},
)


# ---------------------------------------------------------------- transposed


def _output_padding(
    aux: Any, x: jax.Array, unbatched: bool, kernel: tuple[int, ...], output_size: Any, who: str
) -> tuple[int, ...]:
    """`output_padding`, or the one that gives `output_size` (PyTorch's `_output_padding`)."""
    n = len(kernel)
    if output_size is None:
        return tuple(aux["output_padding"])
    size = tuple(int(o) for o in output_size)
    if len(size) == n + (1 if unbatched else 2):
        size = size[-n:]
    if len(size) != n:
        raise ValueError(f"{who}: output_size must have {n} spatial sizes, found {output_size!r}")
    low = [
        (i - 1) * s - 2 * p + d * (k - 1) + 1
        for i, s, p, d, k in zip(
            x.shape[2:], aux["stride"], aux["padding"], aux["dilation"], kernel, strict=True
        )
    ]
    high = [m + s - 1 for m, s in zip(low, aux["stride"], strict=True)]
    if any(not lo <= o <= hi for o, lo, hi in zip(size, low, high, strict=True)):
        raise ValueError(
            f"{who}: requested an output size of {size}, but valid sizes range from "
            f"{tuple(low)} to {tuple(high)} (for an input of {tuple(x.shape[2:])})"
        )
    return tuple(o - lo for o, lo in zip(size, low, strict=True))


def _conv_transpose(
    tree: StructureTree, x: InputArray, n: int, output_size: Sequence[int] | None, who: str
) -> jax.Array:
    """The gradient of a convolution: a convolution of the stride-dilated input with the
    flipped, in/out-swapped kernel."""
    x = jnp.asarray(x)
    aux: dict[str, Any] = tree["aux"]
    params = tree["params"]
    weight, groups = params["weight"], aux["groups"]
    x, unbatched = _batched(x, n, who)
    if x.shape[1] != weight.shape[0]:
        raise ValueError(
            f"{who}: expected {weight.shape[0]} input channels, "
            f"found input of shape {tuple(x.shape)}"
        )
    cin, cout_g, kernel = weight.shape[0], weight.shape[1], tuple(weight.shape[2:])
    out_pad = _output_padding(aux, x, unbatched, kernel, output_size, who)
    # (in, out/g, *k) -> (out, in/g, *k), spatially flipped
    w = weight.reshape(groups, cin // groups, cout_g, *kernel).swapaxes(1, 2)
    w = jnp.flip(w.reshape(groups * cout_g, cin // groups, *kernel), tuple(range(2, n + 2)))
    pads = [
        (d * (k - 1) - p, d * (k - 1) - p + op)
        for k, d, p, op in zip(kernel, aux["dilation"], aux["padding"], out_pad, strict=True)
    ]
    geometry = (aux["stride"], aux["padding"], aux["dilation"], kernel, out_pad)
    sizes = [
        (i - 1) * s - 2 * p + d * (k - 1) + op + 1
        for i, s, p, d, k, op in zip(x.shape[2:], *geometry, strict=True)
    ]
    if any(size < 0 for size in sizes):
        raise ValueError(
            f"{who}: the output size {tuple(sizes)} is negative for an input of shape "
            f"{tuple(x.shape)}: padding={aux['padding']} is too large for it"
        )
    dtype = jnp.result_type(x, w)
    y = jax.lax.conv_general_dilated(
        x.astype(dtype),
        w.astype(dtype),
        window_strides=(1,) * n,
        padding=pads,
        lhs_dilation=aux["stride"],
        rhs_dilation=aux["dilation"],
        feature_group_count=groups,
    )
    return _finish(y, params, n, unbatched)  # an output size of 0 is empty, as in torch


def conv_transpose1d_apply(
    tree: StructureTree,
    global_config: GlobalConfig,
    x: Float[InputArray, "*batch in_channels length"],
    output_size: Sequence[int] | None = None,
) -> tuple[StructureTree, Float[Array, "*batch out_channels out_length"]]:
    """Transposed 1-d convolution of `(N, C, L)` or `(C, L)`; `output_size` (`(L,)`, or
    with batch and channel sizes) as for `conv_transpose2d_apply`."""
    return tree, _conv_transpose(tree, x, 1, output_size, "ConvTranspose1d")


def conv_transpose2d_apply(
    tree: StructureTree,
    global_config: GlobalConfig,
    x: Float[InputArray, "*batch in_channels height width"],
    output_size: Sequence[int] | None = None,
) -> tuple[StructureTree, Float[Array, "*batch out_channels out_height out_width"]]:
    """Transposed 2-d convolution of `(N, C, H, W)` or `(C, H, W)`.

    `output_size` (`(H, W)`, or with batch and channel sizes) picks `output_padding` as
    PyTorch's `forward(input, output_size)` does; it sets the output's shape, so it must
    be Python ints (static under `jit`).
    """
    return tree, _conv_transpose(tree, x, 2, output_size, "ConvTranspose2d")


def _make_conv_transpose(
    n: int,
    record: Layer,
    in_channels: int,
    out_channels: int,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int],
    padding: int | Sequence[int],
    output_padding: int | Sequence[int],
    groups: int,
    bias: bool,
    dilation: int | Sequence[int],
    padding_mode: str,
    rng: RngLike | None,
    dtype: Any,
) -> Module:
    who = record.kind
    _check_channels(in_channels, out_channels, groups, who)
    kernel = as_tuple(kernel_size, n, "kernel_size", who)
    strides = as_tuple(stride, n, "stride", who)
    pads = as_tuple(padding, n, "padding", who)
    out_pad = as_tuple(output_padding, n, "output_padding", who)
    dilations = as_tuple(dilation, n, "dilation", who)
    for values, low, name in (
        (kernel, 1, "kernel_size"),
        (strides, 1, "stride"),
        (pads, 0, "padding"),
        (out_pad, 0, "output_padding"),
        (dilations, 1, "dilation"),
    ):
        _check_min(values, low, name, who)
    if any(op >= max(s, d) for op, s, d in zip(out_pad, strides, dilations, strict=True)):
        raise ValueError(
            f"{who}: output_padding {out_pad} must be smaller than either stride {strides} "
            f"or dilation {dilations}"
        )
    if padding_mode != "zeros":
        raise ValueError(f'{who}: only "zeros" padding mode is supported, found {padding_mode!r}')
    weight_shape = (in_channels, out_channels // groups, *kernel)
    tree = record.node(
        _init_params(rng, who, weight_shape, out_channels, bias, dtype),
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=kernel,
        stride=strides,
        padding=pads,
        output_padding=out_pad,
        groups=groups,
        bias=bias,
        dilation=dilations,
        padding_mode=padding_mode,
    )
    return validate(tree), {}


def ConvTranspose1d(
    in_channels: int,
    out_channels: int,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    output_padding: int | Sequence[int] = 0,
    groups: int = 1,
    bias: bool = True,
    dilation: int | Sequence[int] = 1,
    padding_mode: str = "zeros",
    *,
    rng: RngLike | None = None,
    dtype: Any = jnp.float32,
) -> Module:
    """A transposed 1-d convolution of `(N, C, L)` or `(C, L)`, as `torch.nn.ConvTranspose1d`.

    Arguments (ints or 1-tuples), output size, params (`weight` of shape
    `(in_channels, out_channels // groups, k)`) and initialisation as for
    `ConvTranspose2d`.
    """
    return _make_conv_transpose(
        1, _CONV_TRANSPOSE1D, in_channels, out_channels, kernel_size, stride, padding,
        output_padding, groups, bias, dilation, padding_mode, rng, dtype,
    )  # fmt: skip


def ConvTranspose2d(
    in_channels: int,
    out_channels: int,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    output_padding: int | Sequence[int] = 0,
    groups: int = 1,
    bias: bool = True,
    dilation: int | Sequence[int] = 1,
    padding_mode: str = "zeros",
    *,
    rng: RngLike | None = None,
    dtype: Any = jnp.float32,
) -> Module:
    """A transposed 2-d convolution, as `torch.nn.ConvTranspose2d`.

    Output size per axis: `(in - 1) * stride - 2 * padding + dilation * (kernel_size - 1)
    + output_padding + 1`. Params: `weight` of shape `(in_channels, out_channels // groups,
    kH, kW)` (PyTorch's layout) and `bias` of shape `(out_channels,)`, both drawn from
    `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` with `fan_in = out_channels // groups * kH * kW`
    (PyTorch computes fan_in from the weight's second axis).

    **Arguments:** as PyTorch's; `output_padding` must be smaller than `stride` or
    `dilation`; `padding_mode` must be `"zeros"` (as in PyTorch). `rng` and `dtype` as
    for `Conv2d`.
    """
    return _make_conv_transpose(
        2, _CONV_TRANSPOSE2D, in_channels, out_channels, kernel_size, stride, padding,
        output_padding, groups, bias, dilation, padding_mode, rng, dtype,
    )  # fmt: skip


def _conv_transpose_converter(constructor: Callable[..., Module]) -> Converter:
    def convert(m: Any, convert_child: ConvertChild) -> Module:
        return constructor(
            m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
            m.output_padding, m.groups, has(m.bias), m.dilation, m.padding_mode,
            dtype=dtype_of(m),
        )  # fmt: skip

    return convert


def _conv_transpose_params(n: int) -> dict[str, Any]:
    return {
        "weight": Float[Array, f"in_channels out_channels//groups {_KERNEL_DIMS[n]}"],
        "bias": NotRequired[Float[Array, " out_channels"]],
    }


_CONV_TRANSPOSE_AUX = {**_CONV_AUX, "padding": tuple, "output_padding": tuple}
_CONV_TRANSPOSE1D = layer(
    "ConvTranspose1d",
    conv_transpose1d_apply,
    params=_conv_transpose_params(1),
    aux=_CONV_TRANSPOSE_AUX,
    torch="torch.nn.ConvTranspose1d",
    converter=_conv_transpose_converter(ConvTranspose1d),
    present_if={"bias": "bias"},
)
_CONV_TRANSPOSE2D = layer(
    "ConvTranspose2d",
    conv_transpose2d_apply,
    params=_conv_transpose_params(2),
    aux=_CONV_TRANSPOSE_AUX,
    torch="torch.nn.ConvTranspose2d",
    converter=_conv_transpose_converter(ConvTranspose2d),
    present_if={"bias": "bias"},
)
