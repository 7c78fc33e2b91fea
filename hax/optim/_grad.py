"""Gradients with respect to params only, with the new buffers threaded out."""

from collections.abc import Callable, Mapping
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar, overload

import jax

from .._leaves import LeafAddress
from .._tree import is_structure_tree, merge_trees, split_tree

# Both kinds of model state HAX passes around: a structure tree (for `hax.jit`) or
# the flat state of `hax.bind_module` (`{"0/params/weight": ...}`, for `jax.jit`).
S = TypeVar("S")
"""A model state: a structure tree or a bound state."""
L = TypeVar("L")
"""A loss (usually a scalar array)."""
A = TypeVar("A")
"""What a loss function returns beside the new state with `has_aux=True`."""
P = ParamSpec("P")


def _is_param_key(key: str) -> bool:
    """Whether a bound-state key (`"a/b/params/weight"`) names a param."""
    return LeafAddress.parse_entry(key).kind == "params"


def split_params(state: Any) -> tuple[Any, Any]:
    """`(params, rest)` of a model state: a structure tree or a bound state.

    For a structure tree both parts are partial trees (`hax.split_tree(tree,
    ["params"])`): `params` is a pytree of arrays that `jax.grad` and optax accept.
    For the flat state of `hax.bind_module`, both parts are flat dicts and `params`
    holds the keys with a `params` segment (`"0/params/weight"`).
    `merge_params(params, rest)` is the inverse.
    """
    if is_structure_tree(state):
        params, rest = split_tree(state, ["params"])
        return params, rest
    if isinstance(state, Mapping):
        params = {k: v for k, v in state.items() if _is_param_key(k)}
        rest = {k: v for k, v in state.items() if not _is_param_key(k)}
        return params, rest
    raise TypeError(
        f"split_params: expected a structure tree or the flat state of hax.bind_module, "
        f"found {type(state).__name__}"
    )


def merge_params(params: Any, rest: Any) -> Any:
    """The inverse of `split_params`."""
    if "submodules" in params or "submodules" in rest:
        return merge_trees(params, rest)
    return {**rest, **params}


def _rest_of(new_state: Any, who: str) -> Any:
    try:
        return split_params(new_state)[1]
    except TypeError:
        raise TypeError(
            f"{who}: the loss function must return `(loss, new_state)` (or `(loss, "
            f"(new_state, aux))` with has_aux=True), where new_state is the tree or bound "
            f"state that apply returned; found {type(new_state).__name__} as new_state"
        ) from None


@overload
def value_and_grad(
    loss_fn: Callable[Concatenate[S, P], tuple[L, S]], *, has_aux: Literal[False] = False
) -> Callable[Concatenate[S, P], tuple[tuple[L, S], dict[str, Any]]]: ...


@overload
def value_and_grad(
    loss_fn: Callable[Concatenate[S, P], tuple[L, tuple[S, A]]], *, has_aux: Literal[True]
) -> Callable[Concatenate[S, P], tuple[tuple[L, tuple[S, A]], dict[str, Any]]]: ...


@overload
def value_and_grad(
    loss_fn: Callable[Concatenate[S, P], tuple[L, Any]], *, has_aux: bool
) -> Callable[Concatenate[S, P], tuple[tuple[L, Any], dict[str, Any]]]: ...


def value_and_grad(
    loss_fn: Callable[Concatenate[S, P], tuple[L, Any]], *, has_aux: bool = False
) -> Callable[Concatenate[S, P], tuple[tuple[L, Any], dict[str, Any]]]:
    """Differentiate a loss with respect to the params of a model state only.

    `loss_fn(state, *args, **kwargs)` returns `(loss, new_state)`, or `(loss,
    (new_state, aux))` with `has_aux=True`, where `new_state` is the tree (or bound
    state) that the model's apply returned: it carries the new buffers (BatchNorm
    statistics, advanced RNG keys). The returned function has the same arguments and
    returns `((loss, new_state), grads)` (or `((loss, (new_state, aux)), grads)`),
    with `grads` shaped like `split_params(state)[0]`. Buffers, `aux` and the
    config are not differentiated. The types follow `loss_fn`'s: its arguments, its
    state type and its loss type.

    **Example:**
    ```python
    def loss_fn(tree, x, y):
        new_tree, logits = hax.apply_tree(tree, config, x)
        return hax.nn.functional.cross_entropy(logits, y), new_tree

    (loss, new_tree), grads = hax.optim.value_and_grad(loss_fn)(tree, x, y)
    ```
    """

    def on_params(params: Any, rest: Any, *args: P.args, **kwargs: P.kwargs) -> tuple[L, Any]:
        out = loss_fn(merge_params(params, rest), *args, **kwargs)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(
                "hax.optim.value_and_grad: the loss function must return a pair `(loss, "
                f"new_state)`, found {type(out).__name__}"
            )
        if has_aux and not (isinstance(out[1], tuple) and len(out[1]) == 2):
            raise TypeError(
                "hax.optim.value_and_grad(has_aux=True): the loss function must return "
                "`(loss, (new_state, aux))`"
            )
        return out

    grad_fn = jax.value_and_grad(on_params, has_aux=True)

    def value_and_grad_fn(
        state: S, /, *args: P.args, **kwargs: P.kwargs
    ) -> tuple[tuple[L, Any], dict[str, Any]]:
        params, rest = split_params(state)
        out: tuple[tuple[L, Any], dict[str, Any]] = grad_fn(params, rest, *args, **kwargs)
        return out

    return value_and_grad_fn
