"""`Dropout`, `Dropout1d`, `Dropout2d`: zero inputs (or whole channels) with probability `p`
in training, scale the rest by `1/(1-p)`."""

from collections.abc import Callable
from typing import Any

import jax
from jaxtyping import Array, Float, Key
from typing_extensions import TypedDict

from .._rng import RngLike, resolve_rng
from .._types import ApplyFn, GlobalConfig, InputArray, Module, StructureTree
from .._validate import validate
from . import _functional as F
from ._layer import ConvertChild, Layer, layer


def read_train_mode(global_config: GlobalConfig, who: str) -> bool:
    """The `"train_mode"` flag of a global config, with an error that says how to set it."""
    try:
        train_mode = global_config["train_mode"]
    except KeyError:
        raise KeyError(
            f"{who} reads global_config['train_mode'], which is missing; run with a config "
            "such as {'train_mode': True} (the config the constructor returned has it)"
        ) from None
    if not isinstance(train_mode, bool):
        raise TypeError(f"{who}: global_config['train_mode'] must be a bool, found {train_mode!r}")
    return train_mode


def _run(
    tree: StructureTree,
    global_config: GlobalConfig,
    x: InputArray,
    fn: Callable[..., jax.Array],
    who: str,
) -> tuple[StructureTree, jax.Array]:
    """`fn(x, p, rng=...)` in training, advancing the key; `fn(x, p, training=False)`
    (the input, after `fn`'s shape checks) otherwise."""
    p = tree["aux"]["p"]
    if not read_train_mode(global_config, who) or p == 0.0:
        return tree, fn(x, p, training=False)
    key, sub = jax.random.split(tree["buffers"]["rng"])
    new_tree: StructureTree = {**tree, "buffers": {**tree["buffers"], "rng": key}}
    return new_tree, fn(x, p, rng=sub)


def dropout_apply(
    tree: StructureTree, global_config: GlobalConfig, x: InputArray
) -> tuple[StructureTree, jax.Array]:
    """Identity when `train_mode` is false; otherwise drop and rescale, advancing the key."""
    return _run(tree, global_config, x, F.dropout, "Dropout")


def dropout1d_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[InputArray, "*batch channels length"]
) -> tuple[StructureTree, Float[Array, "*batch channels length"]]:
    """Identity when `train_mode` is false; otherwise drop whole channels, advancing the key."""
    return _run(tree, global_config, x, F.dropout1d, "Dropout1d")


def dropout2d_apply(
    tree: StructureTree,
    global_config: GlobalConfig,
    x: Float[InputArray, "batch channels *spatial"],
) -> tuple[StructureTree, Float[Array, "batch channels *spatial"]]:
    """Identity when `train_mode` is false; otherwise drop whole channels, advancing the key."""
    return _run(tree, global_config, x, F.dropout2d, "Dropout2d")


def _make(record: Layer, p: float, rng: RngLike | None) -> Module:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{record.kind}: p must be in [0, 1], found {p}")
    tree = record.node({}, {"rng": resolve_rng(rng, record.kind)}, p=float(p))
    config = {"train_mode": True}
    return validate(tree, config), config


def Dropout(p: float = 0.5, inplace: bool = False, *, rng: RngLike | None = None) -> Module:
    """Dropout, as `torch.nn.Dropout`.

    Reads `global_config["train_mode"]`: when true, each element is zeroed with
    probability `p` and the others are scaled by `1/(1-p)`; when false, identity.
    Its PRNG key lives in `buffers["rng"]` and advances at every training call.
    The returned config is `{"train_mode": True}`, PyTorch's default. `inplace` is
    accepted for PyTorch compatibility and has no effect (JAX arrays are immutable;
    the result is the same).
    """
    return _make(_DROPOUT, p, rng)


def Dropout1d(p: float = 0.5, inplace: bool = False, *, rng: RngLike | None = None) -> Module:
    """Channel dropout over `(N, C, L)` or `(C, L)` inputs, as `torch.nn.Dropout1d`.

    In training each channel is zeroed as a whole with probability `p` (the others
    scaled by `1/(1-p)`): neighbouring positions of a channel are correlated, so
    element-wise dropout would barely regularise them. Buffers, config and `inplace`
    as for `Dropout`.
    """
    return _make(_DROPOUT1D, p, rng)


def Dropout2d(p: float = 0.5, inplace: bool = False, *, rng: RngLike | None = None) -> Module:
    """Channel dropout over `(N, C, H, W)` inputs, as `torch.nn.Dropout2d`.

    In training each channel is zeroed as a whole with probability `p` (the others
    scaled by `1/(1-p)`). A 3D input is read as `(N, C, L)`, as PyTorch does (see
    `hax.nn.functional.dropout2d`). Buffers, config and `inplace` as for `Dropout`.
    """
    return _make(_DROPOUT2D, p, rng)


class DropoutBuffers(TypedDict):
    rng: Key[Array, ""]


def _declare(kind: str, apply: ApplyFn, constructor: Callable[..., Module]) -> Layer:
    def convert(m: Any, convert_child: ConvertChild) -> Module:
        return constructor(m.p)

    return layer(
        kind,
        apply,
        buffers=DropoutBuffers,
        aux={"p": float},
        config={"train_mode": bool},
        torch=f"torch.nn.{kind}",
        converter=convert,
    )


_DROPOUT = _declare("Dropout", dropout_apply, Dropout)
_DROPOUT1D = _declare("Dropout1d", dropout1d_apply, Dropout1d)
_DROPOUT2D = _declare("Dropout2d", dropout2d_apply, Dropout2d)
