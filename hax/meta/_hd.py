"""Online hypergradient descent on the learning rate (Baydin et al., 2018)."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class HypergradientSGDState(NamedTuple):
    """The adapted learning rate and the previous step's gradient."""

    learning_rate: jax.Array
    previous_grads: Any


def hypergradient_sgd(
    learning_rate: float, hyper_learning_rate: float
) -> optax.GradientTransformation:
    """SGD whose learning rate adapts at every step by hypergradient descent (SGD-HD).

    The derivative of the loss at step t with respect to the learning rate used at
    step t-1 is `-g_t . g_{t-1}`, so before each update the rate moves by
    `hyper_learning_rate * (g_t . g_{t-1})`: up while successive gradients agree,
    down when they turn back. Then `params -= learning_rate * g_t`. The current rate
    is `opt_state.learning_rate`. Baydin et al., "Online Learning Rate Adaptation with
    Hypergradient Descent", ICLR 2018.

    An optax `GradientTransformation`: use it with `hax.optim.train_step`.
    """

    def init(params: Any) -> HypergradientSGDState:
        zeros = jax.tree.map(jnp.zeros_like, params)
        return HypergradientSGDState(jnp.asarray(learning_rate, jnp.float32), zeros)

    def update(
        grads: Any, state: HypergradientSGDState, params: Any = None
    ) -> tuple[Any, HypergradientSGDState]:
        del params
        dots = jax.tree.map(lambda g, h: jnp.vdot(g, h), grads, state.previous_grads)
        h = sum(jax.tree.leaves(dots), jnp.zeros((), jnp.float32))
        lr = state.learning_rate + hyper_learning_rate * h
        updates = jax.tree.map(lambda g: (-lr * g).astype(g.dtype), grads)
        return updates, HypergradientSGDState(lr, grads)

    return optax.GradientTransformation(init, update)  # type: ignore[arg-type]  # optax's Protocols are stricter than its runtime contract
