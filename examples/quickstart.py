"""Quickstart: build a small model with StateOrganizer and train it under hax.jit.

Fits y = sin(3x) with a two-layer MLP and plain SGD, printing the loss as it falls.
Run: `python examples/quickstart.py [--steps 2000] [--seed 0]`
"""

import argparse

import jax
import jax.numpy as jnp

import hax
from hax import nn


@hax.organized_apply
def mlp_apply(org: hax.StateOrganizer, x: jax.Array) -> jax.Array:
    h = jnp.tanh(org.fc1(x * org.input_scale))
    return org.fc2(org.drop(h))


@hax.organized_init(mlp_apply)
def MLP(org: hax.StateOrganizer, hidden: int) -> None:
    org.fc1 = nn.Linear(1, hidden)  # a submodule
    org.drop = nn.Dropout(0.1)  # reads global_config["train_mode"]
    org.fc2 = nn.Linear(hidden, 1)
    org.input_scale = jnp.ones(())  # a trainable param


def loss_fn(params: dict, rest: dict, config: hax.GlobalConfig, x: jax.Array, y: jax.Array):
    new_tree, pred = hax.apply_tree(hax.merge_trees(params, rest), config, x)
    return jnp.mean((pred - y) ** 2), new_tree


@hax.jit
def train_step(
    tree: hax.StructureTree, config: hax.GlobalConfig, x: jax.Array, y: jax.Array, lr: jax.Array
):
    params, rest = hax.split_tree(tree, ["params"])
    (loss, new_tree), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest, config, x, y)
    params = jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)
    _, new_rest = hax.split_tree(new_tree, ["params"])  # keeps the advanced Dropout key
    return hax.merge_trees(params, new_rest), loss


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=2000, help="SGD steps (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the init")
    args = parser.parse_args()

    with hax.rng_context(args.seed):
        tree, config = MLP(hidden=32)
    x = jnp.linspace(-1.0, 1.0, 128)[:, None]
    y = jnp.sin(3.0 * x)
    lr = jnp.asarray(0.05)  # an array, so it is traced (a Python float would be static)

    print(f"config: {config}; params: {[name for name, _ in hax.named_leaves(tree, ['params'])]}")
    for step in range(args.steps + 1):
        tree, loss = train_step(tree, config, x, y, lr)
        if step % 400 == 0:
            print(f"step {step:4d}  train loss {float(loss):.4f}")

    _, pred = hax.apply_tree(tree, {**config, "train_mode": False}, x)
    print(f"final eval loss {float(jnp.mean((pred - y) ** 2)):.4f}")


if __name__ == "__main__":
    main()
