"""`Dropout`: zero inputs with probability `p` in training, scale the rest by `1/(1-p)`."""

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Key
from typing_extensions import TypedDict

from .._rng import resolve_rng
from .._types import GlobalConfig, Module, StructureTree
from .._validate import validate
from ._layer import ConvertChild, layer


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


def dropout_apply(
    tree: StructureTree, global_config: GlobalConfig, x: jax.Array
) -> tuple[StructureTree, jax.Array]:
    """Identity when `train_mode` is false; otherwise drop and rescale, advancing the key."""
    p = tree["aux"]["p"]
    if not read_train_mode(global_config, "Dropout") or p == 0.0:
        return tree, x
    key, sub = jax.random.split(tree["buffers"]["rng"])
    new_tree: StructureTree = {**tree, "buffers": {**tree["buffers"], "rng": key}}
    if p == 1.0:
        return new_tree, jnp.zeros_like(x)
    keep = jax.random.bernoulli(sub, 1.0 - p, jnp.shape(x))
    return new_tree, jnp.where(keep, x / (1.0 - p), jnp.zeros((), x.dtype))


def Dropout(p: float = 0.5, inplace: bool = False, *, rng: jax.Array | int | None = None) -> Module:
    """Dropout, as `torch.nn.Dropout`.

    Reads `global_config["train_mode"]`: when true, each element is zeroed with
    probability `p` and the others are scaled by `1/(1-p)`; when false, identity.
    Its PRNG key lives in `buffers["rng"]` and advances at every training call.
    The returned config is `{"train_mode": True}`, PyTorch's default. `inplace` is
    accepted for PyTorch compatibility and has no effect (JAX arrays are immutable;
    the result is the same).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"Dropout: p must be in [0, 1], found {p}")
    tree = _DROPOUT.node({}, {"rng": resolve_rng(rng, "Dropout")}, p=float(p))
    config = {"train_mode": True}
    return validate(tree, config), config


class DropoutBuffers(TypedDict):
    rng: Key[Array, ""]


def _convert(m: Any, convert_child: ConvertChild) -> Module:
    return Dropout(m.p)


_DROPOUT = layer(
    "Dropout",
    dropout_apply,
    buffers=DropoutBuffers,
    aux={"p": float},
    config={"train_mode": bool},
    torch="torch.nn.Dropout",
    converter=_convert,
)
