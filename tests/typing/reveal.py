"""The types HAX gives back are precise."""

from typing import reveal_type

import jax
import optax

import hax


class Parts(hax.TypedOrganizer):
    fc: hax.Child[jax.Array]
    scale: jax.Array


def loss_fn(
    tree: hax.StructureTree, batch: tuple[jax.Array, jax.Array]
) -> tuple[jax.Array, hax.StructureTree]:
    return batch[0].sum(), tree


def use(org: Parts) -> None:
    reveal_type(org.fc)  # reveal: hax._organizer.Child[jax._src.basearray.Array]
    reveal_type(org.fc(1.0))  # reveal: jax._src.basearray.Array
    reveal_type(org.fc[0])  # reveal: hax._organizer.Child[Any]
    reveal_type(org.scale)  # reveal: jax._src.basearray.Array


tree, config = hax.nn.Linear(2, 2, rng=0)
state, _ = hax.bind_module(tree, config)
reveal_type(hax.checkpoint.load("m.safetensors", like=tree))  # reveal: tuple[TypedDict(hax._types.StructureTree,
reveal_type(hax.checkpoint.load("m.safetensors", like=(tree, config), strict=False))  # reveal: dict[str, Any], hax._report.TransferReport]
reveal_type(hax.checkpoint.load("m.safetensors", like=state))  # reveal: tuple[dict[str, Any], dict[str, Any]]
reveal_type(hax.checkpoint.load("m.safetensors"))  # reveal: tuple[dict[str, Any], dict[str, Any]]
reveal_type(hax.optim.train_step(loss_fn, optax.adam(1e-3)))  # reveal: def (TypedDict(hax._types.StructureTree,
reveal_type(hax.optim.value_and_grad(loss_fn))  # reveal: batch: tuple[jax._src.basearray.Array, jax._src.basearray.Array]) -> tuple[tuple[jax._src.basearray.Array, TypedDict(
reveal_type(hax.structure_tree_map(lambda n, path: {**n}, tree))  # reveal: TypedDict(hax._types.StructureTree,
reveal_type(tree["aux"])  # reveal: dict[str, bool | int | float | str | tuple[..., ...] | None]
