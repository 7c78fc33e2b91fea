"""Mistakes with checkpoints and training, each on its marked line."""

from typing import Any

import jax
import jax.numpy as jnp
import optax

import hax

tree, config = hax.nn.Linear(4, 1, rng=0)
Batch = tuple[jax.Array, jax.Array]


def loss_fn(tree: hax.StructureTree, batch: Batch) -> tuple[jax.Array, hax.StructureTree]:
    new_tree, pred = hax.apply_tree(tree, config, batch[0])
    return jnp.mean((pred - batch[1]) ** 2), new_tree


loaded, cfg = hax.checkpoint.load("model.safetensors", like=tree)
loaded["parms"]  # expect-error: typeddict-item
hax.checkpoint.load("model.safetensors", like=tree, strict="no")  # expect-error: call-overload
loaded, cfg = hax.checkpoint.load("model.safetensors", like=tree, strict=False)  # expect-error: misc

optimizer = optax.adam(1e-3)
step = hax.optim.train_step(loss_fn, optimizer)
opt_state: Any = optimizer.init(hax.optim.params_of(tree))
new_tree, opt_state, metrics = step(tree, opt_state, jnp.ones(4))  # expect-error: arg-type
(loss, new_state), grads = hax.optim.value_and_grad(loss_fn)(tree)  # expect-error: call-arg
hax.precision.Policy(compute_dtype=16)  # expect-error: arg-type
