"""Per-step cost of a jitted SGD train step: hand-written JAX vs HAX's two jit routes.

(a) pure JAX over a params dict, (b) HAX via `bind_module` + `jax.jit`,
(c) HAX via `hax.jit` over the whole structure tree and config. Prints the median
µs per step of each and the ratios to (a), all measured in this run, for a
64-128-128-10 MLP at batch 32 and for one `Linear(4, 4)` at batch 1 (where call
overhead dominates). Each ratio is the median over repeats of the route's time
over (a)'s time in the same repeat (routes run back to back, in rotating order),
so slow drifts in machine load cancel.

Run: `python benchmarks/dispatch.py [--repeats 30] [--steps 200]`
"""

import argparse
import itertools
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

import hax
from hax import nn

LR = 0.01


def sgd(params: Any, grads: Any) -> Any:
    return jax.tree_util.tree_map(lambda p, g: p - LR * g, params, grads)


def mse(out: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean((out - y) ** 2)


def hand_written(sizes: list[int], key: jax.Array) -> tuple[Callable[..., Any], Any]:
    """(a): the same MLP as plain JAX over `{"w0": ..., "b0": ..., ...}`."""
    params = {}
    for i, (din, dout) in enumerate(itertools.pairwise(sizes)):
        key, wk, bk = jax.random.split(key, 3)
        bound = 1.0 / din**0.5
        params[f"w{i}"] = jax.random.uniform(wk, (dout, din), minval=-bound, maxval=bound)
        params[f"b{i}"] = jax.random.uniform(bk, (dout,), minval=-bound, maxval=bound)
    n = len(sizes) - 1

    def forward(params: Any, x: jax.Array) -> jax.Array:
        for i in range(n):
            x = x @ params[f"w{i}"].T + params[f"b{i}"]
            if i < n - 1:
                x = jax.nn.relu(x)
        return x

    @jax.jit
    def step(params: Any, x: jax.Array, y: jax.Array) -> tuple[Any, jax.Array]:
        loss, grads = jax.value_and_grad(lambda p: mse(forward(p, x), y))(params)
        return sgd(params, grads), loss

    return step, params


def relu_apply(tree: hax.StructureTree, config: hax.GlobalConfig, x: jax.Array) -> Any:
    return tree, jax.nn.relu(x)


def hax_model(sizes: list[int], key: jax.Array) -> hax.Module:
    layers: list[hax.Module] = []
    with hax.rng_context(key):
        for i, (din, dout) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(din, dout))
            if i < len(sizes) - 2:
                layers.append((hax.empty_tree(relu_apply), {}))
    return nn.Sequential(*layers)


def bound_route(
    tree: hax.StructureTree, config: hax.GlobalConfig
) -> tuple[Callable[..., Any], Any]:
    """(b): `bind_module` + `jax.jit`."""
    state, apply = hax.bind_module(tree, config)

    @jax.jit
    def step(state: Any, x: jax.Array, y: jax.Array) -> tuple[Any, jax.Array]:
        def loss_fn(state: Any) -> jax.Array:
            return mse(apply(state, x)[1], y)

        loss, grads = jax.value_and_grad(loss_fn)(state)
        return sgd(state, grads), loss

    return step, state


def tree_route(tree: hax.StructureTree, config: hax.GlobalConfig) -> tuple[Callable[..., Any], Any]:
    """(c): `hax.jit` over the whole tree and config."""

    @hax.jit
    def step(
        tree: hax.StructureTree, config: hax.GlobalConfig, x: jax.Array, y: jax.Array
    ) -> tuple[hax.StructureTree, jax.Array]:
        params, rest = hax.split_tree(tree, ["params"])

        def loss_fn(params: Any) -> jax.Array:
            return mse(hax.apply_tree(hax.merge_trees(params, rest), config, x)[1], y)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        return hax.merge_trees(sgd(params, grads), rest), loss

    return step, tree


def time_steps(
    step: Callable[..., Any], state: Any, args: tuple[Any, ...], steps: int
) -> tuple[float, Any]:
    """µs per step over `steps` consecutive steps (each feeds the next)."""
    start = time.perf_counter()
    for _ in range(steps):
        state, loss = step(state, *args)
    jax.block_until_ready((state, loss))
    return (time.perf_counter() - start) / steps * 1e6, state


def bench(name: str, sizes: list[int], batch: int, repeats: int, steps: int) -> dict[str, float]:
    key = jax.random.key(0)
    kx, ky, km = jax.random.split(key, 3)
    x = jax.random.normal(kx, (batch, sizes[0]))
    y = jax.random.normal(ky, (batch, sizes[-1]))
    tree, config = hax_model(sizes, km)
    # Each route: (step, initial state, the arguments after the state).
    routes = {
        "(a) hand-written JAX": (*hand_written(sizes, km), (x, y)),
        "(b) bind_module + jax.jit": (*bound_route(tree, config), (x, y)),
        "(c) hax.jit": (*tree_route(tree, config), (config, x, y)),
    }
    states = {k: s for k, (_, s, _) in routes.items()}
    for k, (step, _, args) in routes.items():  # compile and warm up
        _, states[k] = time_steps(step, states[k], args, steps)
    times: dict[str, list[float]] = {k: [] for k in routes}
    names = list(routes)
    for r in range(repeats):
        # Each repeat times every route back to back, starting with a different one, so
        # the ratios compare measurements taken under the same machine load.
        for k in names[r % len(names) :] + names[: r % len(names)]:
            step, _, args = routes[k]
            us, states[k] = time_steps(step, states[k], args, steps)
            times[k].append(us)
    base = times["(a) hand-written JAX"]
    ratios = {
        k: statistics.median(t / b for t, b in zip(v, base, strict=True)) for k, v in times.items()
    }
    print(f"\n{name}: sizes {sizes}, batch {batch}, {repeats} repeats x {steps} steps")
    print(f"{'route':<28} {'median µs/step':>15} {'ratio to (a)':>13}")
    for k, v in times.items():
        print(f"{k:<28} {statistics.median(v):>15.2f} {ratios[k]:>13.3f}")
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}")
    bench("MLP train step", [64, 128, 128, 10], 32, args.repeats, args.steps)
    bench("one-Linear train step", [4, 4], 1, args.repeats, args.steps)


if __name__ == "__main__":
    main()
