"""Registration of a family's applies in one call, by dotted class path, and the aux
readers that families share."""

from collections.abc import Callable, Collection, Mapping
from typing import Any

from ..._types import ApplyFn, AuxValue
from .._library import register_apply


def register_all(
    prefix: str,
    applies: Mapping[str, ApplyFn],
    *,
    rng: Collection[str] = (),
    aux: Mapping[str, Callable[[Any], Mapping[str, AuxValue]]] | None = None,
) -> None:
    """Register `applies[name]` for the class `prefix + name` of each name, e.g.
    `register_all("timm.models.", {"resnet.ResNet": resnet_apply})`; the names in `rng`
    get a PRNG key buffer, those in `aux` their aux reader."""
    for name, apply in applies.items():
        register_apply(prefix + name, apply, rng=name in rng, aux=(aux or {}).get(name))


def child_order(module: Any) -> Mapping[str, AuxValue]:
    """An aux reader for a module whose forward runs its children in the order it
    defines them (a stem, a conv-norm-activation): that order, `aux["order"]`, for
    `named_sequential_apply`."""
    return {"order": tuple(name for name, _ in module.named_children())}
