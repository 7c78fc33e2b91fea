"""Dynamic loss scaling for float16 training."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class DynamicLossScaleState(NamedTuple):
    """`scale` multiplies the loss before differentiation; `good_steps` counts finite
    steps since the scale last changed; `finite` says whether the last step's
    gradients were finite (the step was applied); `inner` is the wrapped optimizer's
    state."""

    scale: jax.Array
    good_steps: jax.Array
    finite: jax.Array
    inner: Any


def all_finite(tree: Any) -> jax.Array:
    """Whether every floating-point leaf of `tree` is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.stack(leaves).all() if leaves else jnp.asarray(True)


def select_tree(pred: jax.Array, a: Any, b: Any) -> Any:
    """`a` where `pred` else `b`, leaf by leaf; non-array leaves (aux, applies) from `a`."""
    return jax.tree.map(lambda x, y: jnp.where(pred, x, y) if isinstance(x, jax.Array) else x, a, b)


def dynamic_loss_scale(
    optimizer: optax.GradientTransformation,
    *,
    initial_scale: float = 2.0**15,
    period: int = 2000,
    factor: float = 2.0,
    min_scale: float = 1.0,
    max_scale: float = 2.0**24,
) -> optax.GradientTransformation:
    """Wrap `optimizer` with dynamic loss scaling, for float16 compute.

    With `hax.optim.train_step`, the loss is multiplied by the current scale before
    differentiation, so small float16 gradients do not underflow; this wrapper divides
    the gradients by the scale again. If any gradient is not finite, the step is
    skipped (params, optimizer state and buffers stay as they were) and the scale is
    divided by `factor` (not below `min_scale`); after `period` finite steps in a row
    it is multiplied by `factor`, up to `max_scale`: with bfloat16 or float32 compute,
    where gradients rarely overflow, the scale would otherwise double until it is
    `inf` and every later step would be skipped. The state is a
    `DynamicLossScaleState`. Wrap the
    whole optimizer (`dynamic_loss_scale(optax.multi_transform(...))`): `train_step`
    refuses a loss scale nested inside another transformation.
    """

    if not 0 < min_scale <= initial_scale <= max_scale < float("inf"):
        raise ValueError(
            "dynamic_loss_scale: need 0 < min_scale <= initial_scale <= max_scale < inf, "
            f"found min_scale={min_scale}, initial_scale={initial_scale}, max_scale={max_scale}"
        )
    if not factor > 1 or int(period) != period or period < 1:
        raise ValueError(
            f"dynamic_loss_scale: need factor > 1 and a whole period >= 1, found "
            f"factor={factor}, period={period}"
        )

    def init(params: Any) -> DynamicLossScaleState:
        return DynamicLossScaleState(
            jnp.asarray(initial_scale, jnp.float32),
            jnp.zeros((), jnp.int32),
            jnp.asarray(True),
            optimizer.init(params),
        )

    def update(
        grads: Any, state: DynamicLossScaleState, params: Any = None
    ) -> tuple[Any, DynamicLossScaleState]:
        grads = jax.tree.map(lambda g: (g / state.scale).astype(g.dtype), grads)
        finite = all_finite(grads)
        updates, inner = optimizer.update(grads, state.inner, params)
        updates = jax.tree.map(lambda u: jnp.where(finite, u, jnp.zeros_like(u)), updates)
        inner = select_tree(finite, inner, state.inner)
        good = jnp.where(finite, state.good_steps + 1, 0)
        grow = good >= period
        scale = jnp.where(
            finite,
            jnp.where(grow, jnp.minimum(state.scale * factor, max_scale), state.scale),
            jnp.maximum(state.scale / factor, min_scale),
        )
        good = jnp.where(grow, 0, good)
        return updates, DynamicLossScaleState(scale, good, finite, inner)

    return optax.GradientTransformation(init, update)  # type: ignore[arg-type]  # optax's Protocols are stricter than its runtime contract
