"""Registration of a family's applies in one call, by dotted class path."""

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
