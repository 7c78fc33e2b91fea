"""Per-call cost of `hax.jit` over a whole tree vs `jax.jit` over the bound state.

For models of 16, 128, 1,024 and 2,048 leaves (a `Sequential` of `Linear(4, 4)`
layers, two leaves each), and for two models of many kinds of layer (`hax.models`'
GPT with dropout, whose PRNG keys are leaves too, and ResNet-18, with many static
`aux` values per array), functions are compiled both ways:

- `state`: returns the new state (every float array scaled), as a train step does;
- `scalar`: returns one number (the sum of squares of every float array), as a loss does;
- `ignore` (the two models): returns a constant, so that the time is all per-call host
  work (the models' own compute would hide it).

(a) is `jax.jit` over `bind_module`'s flat state, (b) is `hax.jit` over the tree and
its config. The work inside is the same, so the difference is the host-side cost of
each call. Prints the median µs per call of each and the median ratio (b)/(a), with
the two routes timed back to back in rotating order in each repeat, so that machine
load hits both alike. Each timed window runs for about `--window` seconds (0.2) after
one untimed call: what is timed is the steady cost of a call, as in a training loop,
not the cost of switching between the routes (the other route's calls push a route's
data out of the caches, so the first call after a switch is slower).

With `--breakdown`, prints instead, for the `state` function at each size, the host
work on each side of the compiled call, each alone (warm caches, best of the repeats,
µs): JAX's own `tree_flatten` and `unflatten` of the bound state (what (a) adds) and of
the whole tree (what a generic walk of the tree costs), and HAX's fast-path matcher and
builder on the tree (what (b) adds; the build includes freeing the previous result);
then how many dicts the bound state and the tree hold, and their size in KB.

With `--gc-freeze`, `gc.freeze()` runs once the models are built and compiled: the
objects alive then (JAX's own, the models) leave the garbage collector's generations,
so full collections no longer walk them. (`hax.jit` already pauses the collector
while its fast path builds a result; this shows what is left to the collector.)

Run: `python benchmarks/jit_overhead.py [--repeats 21] [--window 0.2] [--models gpt resnet18]
[--gc-freeze] [--breakdown [--calls 200]]`
"""

import argparse
import gc
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

import hax
from hax import nn

LEAVES = (16, 128, 1024, 2048)


MODELS: dict[str, Callable[[], hax.Module]] = {
    "gpt": lambda: hax.models.GPT(256, 64, n_layer=4, n_embd=128, dropout=0.1, rng=0),
    "resnet18": lambda: hax.models.resnet18(rng=0),
}


def model(size: int | str) -> hax.Module:
    if isinstance(size, str):
        return MODELS[size]()
    with hax.rng_context(0):
        return nn.Sequential(*[nn.Linear(4, 4) for _ in range(size // 2)])


def _is_float(a: Any) -> bool:
    """A float array (not a static value, a PRNG key or a step counter)."""
    return isinstance(a, jax.Array) and bool(jnp.issubdtype(a.dtype, jnp.floating))


def scale(tree: Any) -> Any:
    """Every float array scaled: the same work on a bound state and on a whole tree."""
    return jax.tree.map(lambda a: a * 0.999 if _is_float(a) else a, tree)


def square_sum(tree: Any) -> jax.Array:
    floats = [a for a in jax.tree.leaves(tree) if _is_float(a)]
    return sum((jnp.sum(a * a) for a in floats), start=jnp.zeros(()))


def routes(
    size: int | str, kind: str
) -> dict[str, tuple[Callable[..., Any], Any, tuple[Any, ...]]]:
    """`{route: (fn, first argument, other arguments)}`; for `state` the result is fed back."""
    tree, config = model(size)
    state, _ = hax.bind_module(tree, config)

    if kind == "state":

        @jax.jit
        def jax_fn(state: Any) -> Any:
            return scale(state)

        @hax.jit
        def hax_fn(tree: hax.StructureTree, config: hax.GlobalConfig) -> hax.StructureTree:
            return scale(tree)  # type: ignore[no-any-return]  # a tree in, a tree out

    elif kind == "ignore":

        @jax.jit
        def jax_fn(state: Any) -> Any:
            return jnp.zeros(())

        @hax.jit
        def hax_fn(tree: hax.StructureTree, config: hax.GlobalConfig) -> jax.Array:
            return jnp.zeros(())

    else:

        @jax.jit
        def jax_fn(state: Any) -> Any:
            return square_sum(state)

        @hax.jit
        def hax_fn(tree: hax.StructureTree, config: hax.GlobalConfig) -> jax.Array:
            return square_sum(tree)

    return {
        "(a) jax.jit, bound state": (jax_fn, state, ()),
        "(b) hax.jit, tree": (hax_fn, tree, (config,)),
    }


def time_calls(
    fn: Callable[..., Any], first: Any, rest: tuple[Any, ...], calls: int, feed: bool
) -> tuple[float, Any]:
    """µs per call over `calls` consecutive calls; with `feed`, each result is the next
    input. One untimed call runs first: the route's first call after the other route ran
    finds its data out of the caches, a cost of switching routes, not of a call."""
    out = fn(first, *rest)
    if feed:
        first = out
    jax.block_until_ready(out)
    start = time.perf_counter()
    for _ in range(calls):
        out = fn(first, *rest)
        if feed:
            first = out
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / calls * 1e6, first


def bench(
    size: int | str, kind: str, repeats: int, window: float, freeze: bool
) -> tuple[int, float, float, float]:
    table = routes(size, kind)
    feed = kind == "state"
    firsts = {k: v[1] for k, v in table.items()}
    slowest = 0.0
    for k, (fn, _, rest) in table.items():  # compile and warm up
        _, firsts[k] = time_calls(fn, firsts[k], rest, 3, feed)
        us, firsts[k] = time_calls(fn, firsts[k], rest, 10, feed)
        slowest = max(slowest, us)
    calls = max(round(window * 1e6 / slowest), 10)  # windows of about `window` seconds
    if freeze:
        gc.collect()
        gc.freeze()
    times: dict[str, list[float]] = {k: [] for k in table}
    names = list(table)
    for r in range(repeats):
        for k in names[r % 2 :] + names[: r % 2]:
            fn, _, rest = table[k]
            us, firsts[k] = time_calls(fn, firsts[k], rest, calls, feed)
            times[k].append(us)
    if freeze:
        gc.unfreeze()
    a, b = (times[k] for k in names)
    ratio = statistics.median(y / x for x, y in zip(a, b, strict=True))
    n_leaves = len(jax.tree.leaves(table["(a) jax.jit, bound state"][1]))
    return n_leaves, statistics.median(a), statistics.median(b), ratio


def containers(tree: Any) -> tuple[int, float]:
    """How many dicts `tree` holds, and their size in KB (with their key tables)."""
    count, size, stack = 0, 0, [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            count, size = count + 1, size + sys.getsizeof(node)
            stack.extend(node.values())
    return count, size / 1024


def breakdown(size: int, repeats: int, calls: int) -> dict[str, float]:
    """µs per call of the host work on each side of the compiled call (see the docstring)."""
    table = routes(size, "state")
    state = table["(a) jax.jit, bound state"][1]
    fn, tree, (config,) = table["(b) hax.jit, tree"]
    for _ in range(3):  # the third call runs on the fast path, which it leaves in place
        tree = fn(tree, config)
    entry = fn._recent[0]  # the entry just used, with its matcher and builder
    arrays = entry.compiled(*entry.match((tree, config), {}))

    def best(work: Callable[[], Any]) -> float:
        return min(timeit.repeat(work, number=calls, repeat=repeats)) / calls * 1e6

    flat = jax.tree_util.tree_flatten
    state_leaves, state_def = flat(state)
    tree_leaves, tree_def = flat(tree)
    return {
        "jax, state: flatten": best(lambda: flat(state)),
        "unflatten": best(lambda: state_def.unflatten(state_leaves)),
        "jax, tree: flatten": best(lambda: flat(tree)),
        "unflatten ": best(lambda: tree_def.unflatten(tree_leaves)),
        "hax, tree: match": best(lambda: entry.match((tree, config), {})),
        "build": best(lambda: entry.build(arrays)),
        "dicts, state": containers(state)[0],
        "tree": containers(tree)[0],
        "KB, state": containers(state)[1],
        "tree ": containers(tree)[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--window", type=float, default=0.2, help="seconds per timed window")
    parser.add_argument("--calls", type=int, default=200, help="calls per --breakdown timing")
    parser.add_argument("--leaves", type=int, nargs="*", default=list(LEAVES))
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() before timing")
    parser.add_argument("--breakdown", action="store_true", help="time each side's host work")
    args = parser.parse_args()
    if args.breakdown:
        print(f"jax {jax.__version__}; µs per call, best of {args.repeats} repeats, warm")
        for i, n in enumerate(args.leaves):
            parts = breakdown(n, args.repeats, max(args.calls * 16 // n, 10))
            if i == 0:
                print(f"{'leaves':>6} " + " ".join(f"{k.strip():>19}" for k in parts))
            cells = (f"{v:>19,}" if isinstance(v, int) else f"{v:>19,.1f}" for v in parts.values())
            print(f"{n:>6} " + " ".join(cells))
        return
    gc_mode = "gc.freeze() before timing" if args.gc_freeze else "default gc"
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}; median of {args.repeats} "
        f"repeats; {gc_mode}"
    )
    header = ("function", "model", "leaves", "(a) jax.jit µs", "(b) hax.jit µs", "(b)/(a)")
    widths = (8, 10, 6, 15, 15, 8)
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True)))
    runs: list[tuple[str, int | str]] = [
        *((kind, n) for kind in ("state", "scalar") for n in args.leaves),
        *(("ignore", name) for name in args.models),
    ]
    for kind, size in runs:
        leaves, a, b, ratio = bench(size, kind, args.repeats, args.window, args.gc_freeze)
        name = "Linear" if isinstance(size, int) else size
        print(f"{kind:<8} {name:>10} {leaves:>6} {a:>15.1f} {b:>15.1f} {ratio:>8.2f}")


if __name__ == "__main__":
    main()
