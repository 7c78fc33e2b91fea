"""Cost of `hax.validate` per node, for growing trees and for much larger arrays.

Validation reads shapes and dtypes only, so its cost should grow with the number of
nodes and leaves, not with the number of parameters. Prints the median time of
`validate(tree, config)` for trees of 10, 100, 1,000 and 10,000 nodes (µs per node,
and the ratio to the 100-node tree), then the same for a 100-node tree whose arrays
are ~1,000x larger.

Run: `python benchmarks/validate.py [--repeats 7]`
"""

import argparse
import statistics
import time

import jax

import hax
from hax import nn

BLOCK = 9  # Linear layers per Sequential block


def build(n_nodes: int, features: int) -> hax.Module:
    """A tree of exactly `n_nodes` nodes: a root Sequential of Sequential blocks of
    `Linear(features, features)` layers (two levels, like a stack of residual stages)."""
    blocks: list[hax.Module] = []
    remaining = n_nodes - 1  # the root
    with hax.rng_context(0):
        while remaining > 0:
            k = min(BLOCK, remaining - 1)
            if k == 0:  # one node left: a lone Linear
                blocks.append(nn.Linear(features, features))
                remaining -= 1
                continue
            blocks.append(nn.Sequential(*[nn.Linear(features, features) for _ in range(k)]))
            remaining -= k + 1
    return nn.Sequential(*blocks)


def median_times(modules: dict[str, hax.Module], repeats: int) -> dict[str, float]:
    """Median seconds of `validate` per module, measured in interleaved rounds so that
    machine noise and allocator state hit every module alike."""
    times: dict[str, list[float]] = {name: [] for name in modules}
    for _ in range(repeats):
        for name, (tree, config) in modules.items():
            start = time.perf_counter()
            hax.validate(tree, config)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def n_params(module: hax.Module) -> int:
    return sum(x.size for _, x in hax.named_leaves(module[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    sizes = (10, 100, 1_000, 10_000)
    modules = {f"{n}": build(n, 4) for n in sizes}
    # ~1,000x larger arrays: Linear(141, 141) has 20,022 params vs 20 for Linear(4, 4).
    modules["100 large"] = build(100, 141)
    seconds = median_times(modules, args.repeats)
    per_node = {name: seconds[name] / int(name.split()[0]) * 1e6 for name in modules}
    print(f"jax {jax.__version__}; validate(tree, config), median of {args.repeats} rounds")
    header = ("nodes", "leaves", "params", "total ms", "µs/node", "vs 100")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, (10, 7, 10, 9, 8, 7), strict=True)))
    for name, module in modules.items():
        print(
            f"{name:>10} {len(hax.named_leaves(module[0])):>7} {n_params(module):>10} "
            f"{seconds[name] * 1e3:>9.2f} {per_node[name]:>8.2f} "
            f"{per_node[name] / per_node['100']:>7.2f}"
        )
    growth = max(per_node[f"{n}"] for n in sizes[1:]) / min(per_node[f"{n}"] for n in sizes[1:])
    ratio = n_params(modules["100 large"]) / n_params(modules["100"])
    print(f"\nspread of µs/node from 100 to 10,000 nodes: {growth:.2f}x (target <= 2x)")
    print(f"worst µs/node: {max(per_node.values()):.2f} (target < 25)")
    print(
        f"100 nodes with {ratio:.0f}x more params: "
        f"{per_node['100 large'] / per_node['100']:.2f}x the time (target <= 1.5x)"
    )


if __name__ == "__main__":
    main()
