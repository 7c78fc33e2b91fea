"""Training: split and merge, value_and_grad, train_step with optax, hax.jit."""

import jax
import jax.numpy as jnp
import optax

import hax

tree, config = hax.nn.Linear(4, 1, rng=0)
Batch = tuple[jax.Array, jax.Array]


def loss_fn(tree: hax.StructureTree, batch: Batch) -> tuple[jax.Array, hax.StructureTree]:
    x, y = batch
    new_tree, pred = hax.apply_tree(tree, config, x)
    return jnp.mean((pred - y) ** 2), new_tree


def loss_with_metrics(
    tree: hax.StructureTree, batch: Batch
) -> tuple[jax.Array, tuple[hax.StructureTree, dict[str, jax.Array]]]:
    loss, new_tree = loss_fn(tree, batch)
    return loss, (new_tree, {"mse": loss})


optimizer = optax.adam(1e-3)
opt_state = optimizer.init(hax.optim.params_of(tree))
step = hax.jit(hax.optim.train_step(loss_fn, optimizer))
batch = (jnp.ones((8, 4)), jnp.zeros((8, 1)))
tree, opt_state, metrics = step(tree, opt_state, batch)
loss: jax.Array = metrics["loss"]
aux_step = hax.optim.train_step(loss_with_metrics, optimizer, has_aux=True)
tree, opt_state, metrics = aux_step(tree, opt_state, batch)
flag = bool(len(metrics))
either_step = hax.optim.train_step(loss_with_metrics, optimizer, has_aux=flag)

(value, new_tree), grads = hax.optim.value_and_grad(loss_fn)(tree, batch)
new_tree["params"]["weight"].shape
(value, (new_tree, extra)), grads = hax.optim.value_and_grad(loss_with_metrics, has_aux=True)(
    tree, batch
)

params, rest = hax.split_tree(tree, ["params"])
params, buffers, rest = hax.split_tree(tree, ["params", "buffers"])
single = hax.split_tree(tree, "params")
partial = hax.filter_keys(tree, "params", "aux")
merged: hax.StructureTree = hax.merge_trees(params, buffers, rest)
zeros = hax.structure_tree_map(
    lambda n, path: {**n, "params": jax.tree.map(jnp.zeros_like, n["params"])}, tree
)
zeros["params"]["weight"] = jnp.ones((1, 4))
leaves = hax.named_leaves(tree, ["params"])
loss_scaled = hax.optim.dynamic_loss_scale(optax.sgd(0.1))
