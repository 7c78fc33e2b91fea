"""Mistakes with StateOrganizer, each on its marked line."""

import jax
import jax.numpy as jnp

import hax


class MLPParts(hax.TypedOrganizer):
    fc1: hax.Child[jax.Array]
    fc2: hax.Child[jax.Array]
    scale: jax.Array


@hax.organized_apply
def mlp_apply(org: MLPParts, x: jax.Array) -> jax.Array:
    h = org.fcc1(x)  # expect-error: attr-defined
    w = org.fc1.T  # expect-error: attr-defined
    return org.fc2(h) * org.scale


@hax.organized_init(mlp_apply)
def MLP(org: hax.StateOrganizer, din: int, dout: int) -> None:
    org.fc1 = hax.nn.Linear(din, dout)
    org.fc2 = hax.nn.Linear(dout, dout)
    org.scale = jnp.ones(dout)
    org.register_aux("sizes", [din, dout])  # expect-error: arg-type
    org.register_param("bias", 1.0)  # expect-error: arg-type


tree, config = MLP(2, "3")  # expect-error: arg-type
tree, config = MLP(2, 3)
hax.apply_tree(tree, config, jnp.ones(2), jnp.ones(2), extra=1)
mlp_apply(tree, config, "x")  # expect-error: arg-type
