"""`train_step`: one optax update of a model state, as a pure, jittable function."""

from collections.abc import Callable
from typing import Any

import optax

from ._grad import merge_params, split_params, value_and_grad


def params_of(state: Any) -> Any:
    """The trainable params of a tree or bound state, e.g. for `optimizer.init`."""
    return split_params(state)[0]


def train_step(
    loss_fn: Callable[[Any, Any], Any],
    optimizer: optax.GradientTransformation,
    *,
    has_aux: bool = False,
) -> Callable[[Any, Any, Any], tuple[Any, Any, dict[str, Any]]]:
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

    **Example:**
    ```python
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(hax.optim.params_of(tree))
    step = hax.jit(hax.optim.train_step(loss_fn, optimizer))
    tree, opt_state, metrics = step(tree, opt_state, (x, y))
    ```
    """
    grad_fn = value_and_grad(loss_fn, has_aux=has_aux)

    def step(state: Any, opt_state: Any, batch: Any) -> tuple[Any, Any, dict[str, Any]]:
        (loss, out), grads = grad_fn(state, batch)
        new_state, extra = out if has_aux else (out, {})
        if not isinstance(extra, dict):
            raise TypeError(
                "hax.optim.train_step(has_aux=True): the loss function's metrics must be a "
                f"dict, found {type(extra).__name__}"
            )
        params = params_of(state)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return merge_params(params, split_params(new_state)[1]), opt_state, {"loss": loss, **extra}

    return step
