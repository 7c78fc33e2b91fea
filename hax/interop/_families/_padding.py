"""torch's constant padding modules (`nn.ZeroPad2d`, `nn.ConstantPad2d`, 1-d and 3-d):
`F.pad(x, padding, "constant", value)`, negative amounts cropping."""

from typing import Any

import jax
import jax.numpy as jnp

from ..._types import GlobalConfig, StructureTree
from ._registry import register_all


def constant_pad_apply(
    tree: StructureTree, global_config: GlobalConfig, x: jax.Array
) -> tuple[StructureTree, jax.Array]:
    """`_ConstantPadNd`: `padding` is `(left, right, top, bottom, ...)`, last axis first,
    as `F.pad` reads it; a negative amount crops."""
    aux: dict[str, Any] = tree["aux"]
    padding = aux["padding"]
    pairs = [(padding[i], padding[i + 1], 0) for i in range(0, len(padding), 2)]
    config = [(0, 0, 0)] * (x.ndim - len(pairs)) + pairs[::-1]
    value = jnp.asarray(aux["value"], x.dtype)
    return tree, jax.lax.pad(x, value, config)


# `ConstantPad2d`, `ZeroPad2d`, ... inherit its forward, so they run with it too
register_all("torch.nn.modules.padding.", {"_ConstantPadNd": constant_pad_apply})
