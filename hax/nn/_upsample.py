"""`Upsample` and `interpolate`: PyTorch's resizing modes, output sizes and sample points.

Every mode but `"area"` is separable: each spatial axis is resized on its own, by
gathering one (nearest), two (linear) or four (cubic) input rows per output row and
weighting them. The source indices and weights are computed with NumPy once per
shape, in the precision PyTorch computes them in (float32 for float32 and half
inputs), so the sample points are PyTorch's to the last bit; `"area"` is adaptive
average pooling, as in PyTorch.
"""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Array, Real

from .._types import GlobalConfig, InputArray, Module, StructureTree
from .._validate import validate
from ._layer import from_attributes, layer
from ._pool import _adaptive_avg_pool

# mode -> the number of spatial axes it needs (None: 1, 2 or 3)
_MODES: dict[str, int | None] = {
    "nearest": None,
    "nearest-exact": None,
    "area": None,
    "linear": 1,
    "bilinear": 2,
    "bicubic": 2,
    "trilinear": 3,
}
_CUBIC_A = -0.75  # PyTorch's (and OpenCV's) bicubic coefficient

Taps = list[tuple[np.ndarray, np.ndarray | None]]  # (source indices, weights) per tap


def _compute_dtype(dtype: Any) -> Any:
    """PyTorch's `opmath_t`: float32 for float32 and half types, float64 for float64."""
    return np.float64 if dtype == jnp.float64 else np.float32


def _kernel_scale(size: int, out: int, scale: float | None, dt: Any) -> Any:
    """PyTorch's `compute_scales_value`: `1 / scale_factor` if one was given, else
    `size / out`, in the kernel's precision."""
    return dt(1.0 / scale) if scale is not None and scale > 0 else dt(size) / dt(out)


def _nearest_taps(size: int, out: int, scale: float | None, exact: bool) -> Taps:
    """PyTorch's `nearest_idx`/`nearest_exact_idx`: `floor(dst * scale)` (or
    `floor((dst + 0.5) * scale)`), computed in float32 and clamped to the input."""
    dst = np.arange(out)
    if not exact and out == size:
        return [(dst, None)]
    if not exact and out == 2 * size:
        return [(dst >> 1, None)]
    f32_scale = _kernel_scale(size, out, scale, np.float32)
    if exact:
        src = np.floor(((dst + 0.5) * np.float64(f32_scale)).astype(np.float32))
    else:
        src = np.floor(dst.astype(np.float32) * f32_scale)
    return [(np.minimum(src.astype(np.int64), size - 1), None)]


def _source_index(
    size: int, out: int, scale: float | None, align_corners: bool, cubic: bool, dt: Any
) -> np.ndarray:
    """PyTorch's `area_pixel_compute_source_index` for every output index."""
    dst = np.arange(out).astype(dt)
    if align_corners:
        ratio = dt(size - 1) / dt(out - 1) if out > 1 else dt(0)
        return np.asarray(ratio * dst, dt)
    ratio = _kernel_scale(size, out, scale, dt)
    src = np.asarray(ratio * (dst + dt(0.5)) - dt(0.5), dt)
    return src if cubic else np.maximum(src, dt(0))


def _floor_and_fraction(src: np.ndarray, size: int, dt: Any) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's `guard_index_and_lambda`: the index below (at most `size - 1`) and the
    fraction past it, clamped to [0, 1]."""
    index = np.minimum(np.floor(src).astype(np.int64), size - 1)
    return index, np.clip(src - index.astype(dt), dt(0), dt(1)).astype(dt)


def _linear_taps(size: int, out: int, scale: float | None, align_corners: bool, dt: Any) -> Taps:
    """PyTorch's `compute_source_index_and_lambda`: two neighbours and their weights."""
    if out == size:
        return [(np.arange(out), None)]
    src = _source_index(size, out, scale, align_corners, False, dt)
    index0, lambda1 = _floor_and_fraction(src, size, dt)
    index1 = index0 + (index0 < size - 1)
    return [(index0, (dt(1) - lambda1).astype(dt)), (index1, lambda1)]


def _cubic_taps(size: int, out: int, scale: float | None, align_corners: bool, dt: Any) -> Taps:
    """PyTorch's bicubic sample points: four neighbours (clamped to the edge) weighted
    by the cubic convolution kernel with `A = -0.75`."""
    src = _source_index(size, out, scale, align_corners, True, dt)
    index, t = _floor_and_fraction(src, size, dt)
    a = dt(_CUBIC_A)

    def near(x: np.ndarray) -> np.ndarray:  # |x| <= 1
        return np.asarray(((a + dt(2)) * x - (a + dt(3))) * x * x + dt(1), dt)

    def far(x: np.ndarray) -> np.ndarray:  # 1 < |x| < 2
        return np.asarray(((a * x - dt(5) * a) * x + dt(8) * a) * x - dt(4) * a, dt)

    one = dt(1)
    weights = [far(t + one), near(t), near(one - t), far((one - t) + one)]
    return [(np.clip(index - 1 + j, 0, size - 1), w.astype(dt)) for j, w in enumerate(weights)]


def _resize_axis(x: jax.Array, axis: int, taps: Taps) -> jax.Array:
    """`sum_k x[taps_k.index along axis] * taps_k.weight`, weights broadcast along `axis`."""
    trailing = (1,) * (x.ndim - axis - 1)

    def tap(index: np.ndarray, weight: np.ndarray | None) -> jax.Array:
        picked = jnp.take(x, jnp.asarray(index), axis=axis)
        if weight is None:
            return picked
        return picked * jnp.asarray(weight, x.dtype).reshape((-1, *trailing))

    total = tap(*taps[0])
    for index, weight in taps[1:]:
        total = total + tap(index, weight)
    return total


def _as_list(value: Any, n: int, name: str, who: str) -> list[Any]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != n:
            raise ValueError(
                f"{who}: the input has {n} spatial dimension(s), but {name} has "
                f"{len(value)} entries: {value!r}"
            )
        return list(value)
    return [value] * n


def _plan(
    shape: tuple[int, ...],
    size: int | Sequence[int] | None,
    scale_factor: float | Sequence[float] | None,
    mode: str,
    recompute_scale_factor: bool | None,
    who: str,
) -> tuple[list[int], list[float | None]]:
    """The output sizes, and the scale factors the kernels use (None: `in / out`), as
    `torch.nn.functional.interpolate` decides them."""
    n = len(shape) - 2
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{who}: exactly one of size or scale_factor must be given")
    if size is not None:
        if recompute_scale_factor:
            raise ValueError(f"{who}: recompute_scale_factor is not meaningful with a size")
        outs = _as_list(size, n, "size", who)
        if not all(isinstance(o, int) and not isinstance(o, bool) for o in outs):
            raise TypeError(f"{who}: size must be an int or a tuple of ints, found {size!r}")
        scales: list[float | None] = [None] * n
    else:
        factors = [float(f) for f in _as_list(scale_factor, n, "scale_factor", who)]
        # as PyTorch, in float64 and truncated
        outs = [int(s * f) for s, f in zip(shape[2:], factors, strict=True)]
        recompute = recompute_scale_factor or mode == "area"
        scales = [None] * n if recompute else list(factors)
    if any(o <= 0 for o in outs) or any(s <= 0 for s in shape[2:]):
        raise ValueError(
            f"{who}: input and output sizes should be greater than 0, found input "
            f"{tuple(shape[2:])} and output {tuple(outs)}"
        )
    return outs, scales


def interpolate(
    input: ArrayLike,
    size: int | Sequence[int] | None = None,
    scale_factor: float | Sequence[float] | None = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor: bool | None = None,
    antialias: bool = False,
) -> jax.Array:
    """Resize the spatial axes of an `(N, C, *spatial)` input, as
    `torch.nn.functional.interpolate`.

    **Arguments:** as PyTorch's.
    - `size` or `scale_factor` (exactly one): an int or float for every spatial axis,
      or one per axis. From a `scale_factor` the output size is `floor(in * scale)`,
      and the sample points use `1 / scale_factor` unless `recompute_scale_factor`.
    - `mode`: `"nearest"` (PyTorch's legacy rounding, `floor(dst * in / out)`),
      `"nearest-exact"`, `"linear"` (3D input), `"bilinear"` or `"bicubic"` (4D),
      `"trilinear"` (5D) or `"area"` (adaptive average pooling).
    - `align_corners`: for the interpolating modes only; `True` maps the corner pixels
      onto each other, `False` (the default) their outer edges.
    - `antialias`: `True` is not supported (PyTorch's anti-aliased downsampling).

    The output has the input's dtype; the interpolation is computed in float32 for
    half-precision inputs, as PyTorch's.
    """
    who = "interpolate"
    x = jnp.asarray(input)
    if mode not in _MODES:
        raise ValueError(f"{who}: mode must be one of {sorted(_MODES)}, found {mode!r}")
    if antialias:
        raise ValueError(f"{who}: antialias=True is not supported; downsample with mode='area'")
    linear_modes = {m for m, rank in _MODES.items() if rank is not None}
    if mode not in linear_modes and align_corners is not None:
        raise ValueError(
            f"{who}: align_corners can only be set with the interpolating modes "
            f"{sorted(linear_modes)}, found mode={mode!r}"
        )
    n, needed = x.ndim - 2, _MODES[mode]
    if x.ndim not in (3, 4, 5) or needed not in (None, n):
        expected = "a 3D, 4D or 5D" if needed is None else f"a {needed + 2}D"
        raise ValueError(
            f"{who}: mode={mode!r} takes {expected} (N, C, *spatial) input, found shape "
            f"{tuple(x.shape)}"
        )
    outs, scales = _plan(x.shape, size, scale_factor, mode, recompute_scale_factor, who)
    if mode == "area":
        return _adaptive_avg_pool(x, tuple(outs), who)
    if mode.startswith("nearest"):
        y = x
        for axis in reversed(range(n)):
            taps = _nearest_taps(x.shape[2 + axis], outs[axis], scales[axis], mode != "nearest")
            y = _resize_axis(y, 2 + axis, taps)
        return y
    dt = _compute_dtype(x.dtype)
    y = x.astype(dt)
    # the last axis first, as PyTorch's kernels weight the innermost neighbours first
    for axis in reversed(range(n)):
        args = (x.shape[2 + axis], outs[axis], scales[axis], bool(align_corners), dt)
        taps = _cubic_taps(*args) if mode == "bicubic" else _linear_taps(*args)
        y = _resize_axis(y, 2 + axis, taps)
    return y.astype(x.dtype)


def upsample_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Real[InputArray, "batch channels *spatial"]
) -> tuple[StructureTree, Real[Array, "batch channels *out_spatial"]]:
    """`interpolate(x, ...)` with the node's arguments."""
    aux: dict[str, Any] = tree["aux"]
    return tree, interpolate(
        x,
        aux["size"],
        aux["scale_factor"],
        aux["mode"],
        aux["align_corners"],
        aux["recompute_scale_factor"],
    )


def Upsample(
    size: int | Sequence[int] | None = None,
    scale_factor: float | Sequence[float] | None = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor: bool | None = None,
) -> Module:
    """Resize `(N, C, L)`, `(N, C, H, W)` or `(N, C, D, H, W)` inputs, as
    `torch.nn.Upsample`; see `hax.nn.functional.interpolate` for the arguments.

    Aux holds the arguments as PyTorch's module stores them: `size` as given (an int
    or a tuple), `scale_factor` as a float or a tuple of floats. As in PyTorch, the
    number of spatial axes comes from the input, so one layer serves any rank that
    its `mode` takes. Arguments that PyTorch would reject at the first call (no or
    two sizes, `align_corners` with a nearest mode, an unknown mode) raise here.
    """
    who = "Upsample"
    if mode not in _MODES:
        raise ValueError(f"{who}: mode must be one of {sorted(_MODES)}, found {mode!r}")
    if (size is None) == (not scale_factor):
        raise ValueError(f"{who}: exactly one of size or scale_factor must be given")
    if _MODES[mode] is None and align_corners is not None:
        raise ValueError(
            f"{who}: align_corners can only be set with the interpolating modes (linear, "
            f"bilinear, bicubic, trilinear), found mode={mode!r}"
        )
    stored_size = tuple(size) if isinstance(size, Sequence) else size
    factor: float | tuple[float, ...] | None
    if isinstance(scale_factor, Sequence):
        factor = tuple(float(f) for f in scale_factor)
    else:  # PyTorch: `float(scale_factor) if scale_factor else None`
        factor = float(scale_factor) if scale_factor else None
    tree = _UPSAMPLE.node(
        size=stored_size,
        scale_factor=factor,
        mode=mode,
        align_corners=None if align_corners is None else bool(align_corners),
        recompute_scale_factor=(
            None if recompute_scale_factor is None else bool(recompute_scale_factor)
        ),
    )
    return validate(tree), {}


_UPSAMPLE = layer(
    "Upsample",
    upsample_apply,
    aux={
        "size": int | tuple | None,
        "scale_factor": float | tuple | None,
        "mode": str,
        "align_corners": bool | None,
        "recompute_scale_factor": bool | None,
    },
    # the two subclasses only fix mode (and align_corners=True for the bilinear one)
    torch=("torch.nn.Upsample", "torch.nn.UpsamplingNearest2d", "torch.nn.UpsamplingBilinear2d"),
    converter=from_attributes(
        Upsample, "size", "scale_factor", "mode", "align_corners", "recompute_scale_factor"
    ),
)
