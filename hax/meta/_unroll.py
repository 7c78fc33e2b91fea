"""Differentiating through training: unrolled steps and hypergradients."""

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import jax
import jax.numpy as jnp

from .._leaves import LeafAddress
from .._path import path_str
from .._static import combine, partition
from .._tree import named_nodes, structure_tree_map
from ..optim import merge_params, split_params, value_and_grad

S = TypeVar("S")
H = TypeVar("H")


def unroll(
    step: Callable[[Any, H, Any], Any],
    state: S,
    hyperparams: H,
    batches: Any,
    *,
    checkpoint: bool = True,
) -> S:
    """Run `state = step(state, hyperparams, batch)` for each batch, differentiably.

    `batches` is a pytree whose leaves share a leading axis of length K, one slice per
    step (e.g. `(xs, ys)` of shapes `(K, B, ...)`). The K steps run in one
    `jax.lax.scan`, so the program size does not grow with K. With `checkpoint=True`
    each step is wrapped in `jax.checkpoint`: reverse mode then stores only the
    state between steps and recomputes each step's activations, so memory grows with
    K times the size of the state, not of the activations.

    `state` may be a structure tree (its static parts are held out of the scan) or
    any pytree of arrays.
    """
    arrays, split = partition(state)

    def body(carry: list[Any], batch: Any) -> tuple[list[Any], None]:
        new_arrays, new_split = partition(step(combine(carry, split), hyperparams, batch))
        if new_split != split:
            raise ValueError(
                "hax.meta.unroll: the step changed the structure, aux, dtypes or static "
                "values of the state; a training step must return a state of the same form"
            )
        return new_arrays, None

    final, _ = jax.lax.scan(jax.checkpoint(body) if checkpoint else body, arrays, batches)
    return combine(final, split)  # type: ignore[no-any-return]  # the same form as `state`


def hypergradient(
    step: Callable[[Any, Any, Any], Any],
    val_loss: Callable[[Any, Any], Any],
    *,
    checkpoint: bool = True,
) -> Callable[[Any, Any, Any, Any], tuple[jax.Array, Any]]:
    """The validation loss after K unrolled training steps, and its gradient with
    respect to the hyperparameters.

    Returns `fn(hyperparams, state, train_batches, val_batch) -> (loss, grads)`, where
    `loss = val_loss(unroll(step, state, hyperparams, train_batches), val_batch)` and
    `grads` has the structure of `hyperparams` (a learning rate, a weight decay, a
    per-layer learning-rate mapping, ...). Compose with `jax.jit`/`hax.jit`.

    **Example:**
    ```python
    step = hax.meta.sgd_step(loss_fn)
    fn = hax.jit(hax.meta.hypergradient(step, lambda t, b: loss_fn(t, b)[0]))
    val, g = fn({"learning_rate": jnp.asarray(0.1)}, tree, (xs, ys), (x_val, y_val))
    ```
    """

    def outer(hyperparams: Any, state: Any, batches: Any, val_batch: Any) -> jax.Array:
        final = unroll(step, state, hyperparams, batches, checkpoint=checkpoint)
        return jnp.asarray(val_loss(final, val_batch))

    return jax.value_and_grad(outer)


def _leaf_node(key: str) -> str:
    """The node path of a bound-state key: `"a/b/params/w"` -> `"a/b"`."""
    return path_str(LeafAddress.parse_entry(key).path)


def _per_node(value: Any, who: str) -> Callable[[str], Any]:
    """A function from node path to the hyperparameter for that node's params."""
    if not isinstance(value, Mapping):
        return lambda path: value
    table = dict(value)

    def lookup(path: str) -> Any:
        try:
            return table[path]
        except KeyError:
            raise KeyError(
                f"hax.meta.sgd_step: {who} has no entry for the node {path!r} (it has "
                f"{sorted(table)}); give one value per node with params, e.g. "
                f"hax.meta.layer_rates(tree, 0.1)"
            ) from None

    return lookup


def _update(params: Any, grads: Any, lr: Any, wd: Any) -> Any:
    """`p - lr * (g + wd * p)` with `lr`/`wd` chosen per node."""
    lr_of, wd_of = _per_node(lr, "learning_rate"), _per_node(wd, "weight_decay")

    def leaf(path: str) -> Callable[[Any, Any], Any]:
        rate, decay = lr_of(path), wd_of(path)
        return lambda p, g: p - rate * (g + decay * p)

    if "submodules" in params:  # the params part of a tree, not a bound state
        return structure_tree_map(
            lambda p, g, path: (
                {**p, "params": jax.tree.map(leaf(path_str(path)), p["params"], g["params"])}
                if p["params"]
                else p
            ),
            params,
            grads,
        )
    return {k: leaf(_leaf_node(k))(v, grads[k]) for k, v in params.items()}


def sgd_step(loss_fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any, Any], Any]:
    """A differentiable SGD step `step(state, hyperparams, batch) -> state`.

    `loss_fn(state, batch) -> (loss, new_state)` as in `hax.optim.value_and_grad`;
    buffers advance from `new_state`. `hyperparams` is a dict with `"learning_rate"`
    and optionally `"weight_decay"` (L2, added to the gradient), each a scalar or a
    mapping from node path (`"encoder/0"`) to scalar, for per-layer values (see
    `layer_rates`). Pass them as arrays to differentiate through them.
    """
    grad_fn = value_and_grad(loss_fn)

    def step(state: Any, hyperparams: Any, batch: Any) -> Any:
        (_, new_state), grads = grad_fn(state, batch)
        params = split_params(state)[0]
        lr = hyperparams["learning_rate"]
        wd = hyperparams.get("weight_decay", 0.0)
        return merge_params(_update(params, grads, lr, wd), split_params(new_state)[1])

    return step


def layer_rates(state: Any, value: float | jax.Array) -> dict[str, jax.Array]:
    """`{node path: value}` for every node of `state` that has params: a per-layer
    hyperparameter for `sgd_step`, to differentiate or tune layer by layer."""
    params = split_params(state)[0]
    if "submodules" in params:
        paths = [path_str(path) for path, node in named_nodes(params) if node.get("params")]
    else:
        paths = list(dict.fromkeys(_leaf_node(k) for k in params))
    return {p: jnp.asarray(value, dtype=jnp.result_type(float)) for p in paths}
