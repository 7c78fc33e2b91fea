"""`train_step`: one optax update of a model state, as a pure, jittable function."""

from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import optax

from ._grad import S, merge_params, split_params, value_and_grad
from ._loss_scale import DynamicLossScaleState, select_tree

B = TypeVar("B")
"""A batch, as the loss function takes it."""


def _holds_loss_scale(opt_state: Any) -> bool:
    leaves = jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, DynamicLossScaleState))
    return any(isinstance(x, DynamicLossScaleState) for x in leaves)


def params_of(state: Any) -> Any:
    """The trainable params of a tree or bound state, e.g. for `optimizer.init`."""
    return split_params(state)[0]


def train_step(
    loss_fn: Callable[[S, B], tuple[Any, Any]],
    optimizer: optax.GradientTransformation,
    *,
    has_aux: bool = False,
) -> Callable[[S, Any, B], tuple[S, Any, dict[str, Any]]]:
    """Build `step(state, opt_state, batch) -> (state, opt_state, metrics)`.

    `loss_fn(state, batch)` returns `(loss, new_state)`, or `(loss, (new_state,
    metrics))` with `has_aux=True` and `metrics` a dict. The step differentiates the
    loss with respect to the params only, applies `optimizer`'s update to them and
    keeps every other leaf from `new_state`, so BatchNorm statistics and RNG keys
    advance. `metrics` is `{"loss": loss, **metrics}`.

    The step is pure: wrap it in `hax.jit` when `state` is a structure tree, or in
    `jax.jit` when it is the flat state of `hax.bind_module`. Hyperparameters are
    traced when the optimizer is built with `optax.inject_hyperparams` (they live in
    `opt_state`), so they can be changed without recompiling, or differentiated.
    With an optimizer wrapped by `dynamic_loss_scale`, the loss is scaled before
    differentiation, a step with non-finite gradients is skipped, and `metrics` adds
    `loss_scale` and `grads_finite`. `dynamic_loss_scale` must be the outermost
    transformation (`dynamic_loss_scale(optax.chain(...))`); nested inside another,
    it raises `TypeError`.

    **Example:**
    ```python
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(hax.optim.params_of(tree))
    step = hax.jit(hax.optim.train_step(loss_fn, optimizer))
    tree, opt_state, metrics = step(tree, opt_state, (x, y))
    ```
    """
    grad_fn = value_and_grad(loss_fn, has_aux=has_aux)

    def scaled_loss(state: S, batch: B, scale: jax.Array) -> tuple[jax.Array, Any]:
        loss, out = loss_fn(state, batch)
        return loss.astype(jnp.float32) * scale, out

    scaled_grad_fn = value_and_grad(scaled_loss, has_aux=has_aux)

    def step(state: S, opt_state: Any, batch: B) -> tuple[S, Any, dict[str, Any]]:
        scaled = isinstance(opt_state, DynamicLossScaleState)
        if not scaled and _holds_loss_scale(opt_state):
            raise TypeError(
                "hax.optim.train_step: dynamic_loss_scale must wrap the whole optimizer "
                "(e.g. dynamic_loss_scale(optax.chain(...)) or dynamic_loss_scale("
                "optax.multi_transform(...))): inside another transformation the loss "
                "is not scaled but the gradients are still divided by the scale"
            )
        if scaled:
            (loss, out), grads = scaled_grad_fn(state, batch, opt_state.scale)
            loss = loss / opt_state.scale
        else:
            (loss, out), grads = grad_fn(state, batch)
        new_state, extra = out if has_aux else (out, {})
        if not isinstance(extra, dict):
            raise TypeError(
                "hax.optim.train_step(has_aux=True): the loss function's metrics must be a "
                f"dict, found {type(extra).__name__}"
            )
        params, rest = split_params(state)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        new_rest = split_params(new_state)[1]
        if scaled:  # a skipped step keeps the old buffers too
            new_rest = select_tree(opt_state.finite, new_rest, rest)
            extra = {**extra, "loss_scale": opt_state.scale, "grads_finite": opt_state.finite}
        return merge_params(params, new_rest), opt_state, {"loss": loss, **extra}

    return step
