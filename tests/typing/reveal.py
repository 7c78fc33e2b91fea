"""The types HAX gives back are precise."""

from typing import Any, reveal_type

import jax
import optax

import hax


class Parts(hax.TypedOrganizer):
    fc: hax.Child[jax.Array]
    blocks: hax.Child
    scale: jax.Array


def loss_fn(
    tree: hax.StructureTree, batch: tuple[jax.Array, jax.Array]
) -> tuple[jax.Array, hax.StructureTree]:
    return batch[0].sum(), tree


@hax.organized_apply
def parts_apply(org: Parts, x: jax.Array, *, scale: float = 1.0) -> jax.Array:
    return org.fc(x) * org.scale * scale


def use(org: Parts, untyped: hax.StateOrganizer) -> None:
    reveal_type(org.fc)  # reveal: hax._organizer.Child[jax.Array]
    reveal_type(org.fc(1.0))  # reveal: jax.Array
    reveal_type(org.blocks)  # reveal: hax._organizer.Child[Any]
    reveal_type(org.blocks[0])  # reveal: hax._organizer.Child[Any]
    reveal_type(org.scale)  # reveal: jax.Array
    reveal_type(untyped.fc)  # reveal: Any


tree, config = hax.nn.Linear(2, 2, rng=0)
state, _ = hax.bind_module(tree, config)
batch = (state["0/params/weight"], state["0/params/weight"])
opt_state: Any = None
reveal_type(hax.checkpoint.load("m.safetensors", like=tree))  # reveal: tuple[StructureTree, dict[str, Any]]
reveal_type(hax.checkpoint.load("m.safetensors", like=(tree, config), strict=False))  # reveal: tuple[StructureTree, dict[str, Any], hax._report.TransferReport]
reveal_type(hax.checkpoint.load("m.safetensors", like=tree, strict=bool(state)))  # reveal: tuple[StructureTree, dict[str, Any]] | tuple[StructureTree, dict[str, Any], hax._report.TransferReport]
reveal_type(hax.checkpoint.load("m.safetensors", like=state))  # reveal: tuple[dict[str, Any], dict[str, Any]]
reveal_type(hax.checkpoint.load("m.safetensors"))  # reveal: tuple[dict[str, Any], dict[str, Any]]
step = hax.optim.train_step(loss_fn, optax.adam(1e-3))
reveal_type(step)  # reveal: def (StructureTree, Any, tuple[jax.Array, jax.Array]) -> tuple[StructureTree, Any, dict[str, Any]]
reveal_type(step(tree, opt_state, batch))  # reveal: tuple[StructureTree, Any, dict[str, Any]]
reveal_type(hax.optim.value_and_grad(loss_fn))  # reveal: def (StructureTree, batch: tuple[jax.Array, jax.Array]) -> tuple[tuple[jax.Array, StructureTree], dict[str, Any]]
reveal_type(hax.structure_tree_map(lambda n, path: {**n}, tree))  # reveal: StructureTree
reveal_type(tree["aux"])  # reveal: dict[str, bool | int | float | str | tuple[..., ...] | None]
reveal_type(parts_apply)  # reveal: def (StructureTree, dict[str, Any], x: jax.Array, *, scale: float =) -> tuple[StructureTree, jax.Array]
reveal_type(parts_apply(tree, config, batch[0]))  # reveal: tuple[StructureTree, jax.Array]
