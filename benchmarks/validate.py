"""Cost of `hax.validate` per node: time and peak memory, for flat trees and deep chains.

Validation reads shapes and dtypes only, and walks the tree iteratively, so its cost
per node should stay flat whatever the number of nodes, the depth of the tree or the
size of the arrays. Prints, for trees of 100, 1,000, 10,000 and 100,000 `Linear`
nodes:

- `flat`: a root of blocks of 9 layers (three levels, like a stack of stages);
- `chain 1k`, `chain 10k`: chains 1,000 and 10,000 nodes deep (each node the only
  child, named "child", of the one above; more nodes are more chains hanging off
  the root);

the median time of `validate(tree, config)` in µs per node (wall clock, and CPU time,
which a busy machine inflates less) and the peak memory that `tracemalloc` sees during
one more call, in bytes per node. Then the same for a
100-node flat tree whose arrays are ~1,000x larger.

Run: `python benchmarks/validate.py [--repeats 7] [--max-nodes 100000]`
"""

import argparse
import os
import statistics
import time
import tracemalloc
from typing import Any

import jax

import hax
from hax import nn

BLOCK = 9  # layers per block of a flat tree
SIZES = (100, 1_000, 10_000, 100_000)
TARGET_US = 10.0  # µs per node, at every size and shape
TARGET_BYTES = 1024  # peak bytes per node, at every size and shape


def template(features: int) -> hax.StructureTree:
    with hax.rng_context(0):
        tree, _ = nn.Linear(features, features)
    return tree


def clone(t: hax.StructureTree, children: dict[str, Any] | None = None) -> hax.StructureTree:
    """A new node like `t` (its own dicts, the same arrays): cheap to make by the 100,000."""
    return {
        "params": dict(t["params"]),
        "buffers": dict(t["buffers"]),
        "aux": dict(t["aux"]),
        "apply": t["apply"],
        "submodules": children or {},
    }


def flat(n_nodes: int, t: hax.StructureTree) -> hax.StructureTree:
    """Exactly `n_nodes` nodes: a root over blocks of `BLOCK` layers under one node each."""
    seq = nn.Sequential(nn.Identity())[0]
    blocks: dict[str, Any] = {}
    remaining = n_nodes - 1
    while remaining > 0:
        k = min(BLOCK, remaining - 1)
        name = str(len(blocks))
        if k == 0:  # one node left: a lone layer
            blocks[name] = clone(t)
            remaining -= 1
            continue
        layers = {str(i): clone(t) for i in range(k)}
        blocks[name] = {**seq, "submodules": layers}
        remaining -= k + 1
    return {**seq, "submodules": blocks}


def chains(n_nodes: int, depth: int, t: hax.StructureTree) -> hax.StructureTree:
    """Exactly `n_nodes` nodes in chains of `depth` nodes: the first chain starts at the
    root, the others hang off the root (named "1", "2", ...)."""
    tops = []
    for start in range(0, n_nodes, depth):
        node: hax.StructureTree | None = None
        for _ in range(min(depth, n_nodes - start)):
            node = clone(t, {"child": node} if node is not None else None)
        assert node is not None
        tops.append(node)
    root = tops[0]
    root["submodules"].update({str(i): top for i, top in enumerate(tops[1:], 1)})
    return root


def count(tree: hax.StructureTree) -> tuple[int, int]:
    """Number of nodes and depth of a tree."""
    n, deepest, stack = 0, 0, [(tree, 1)]
    while stack:
        node, d = stack.pop()
        n, deepest = n + 1, max(deepest, d)
        stack.extend((c, d + 1) for c in node["submodules"].values())
    return n, deepest


def median_seconds(
    trees: dict[str, hax.StructureTree], repeats: dict[str, int]
) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall-clock and CPU seconds of `validate` per tree, measured in interleaved
    rounds so that machine noise and allocator state hit every tree alike. CPU time
    leaves out the time other processes hold the cores, which wall time counts."""
    wall: dict[str, list[float]] = {name: [] for name in trees}
    cpu: dict[str, list[float]] = {name: [] for name in trees}
    for r in range(max(repeats.values())):
        for name, tree in trees.items():
            if r < repeats[name]:
                start, start_cpu = time.perf_counter(), time.process_time()
                hax.validate(tree, {})
                cpu[name].append(time.process_time() - start_cpu)
                wall[name].append(time.perf_counter() - start)
    return (
        {name: statistics.median(t) for name, t in wall.items()},
        {name: statistics.median(t) for name, t in cpu.items()},
    )


def peak_bytes(tree: hax.StructureTree) -> int:
    """Peak bytes allocated during one `validate` call (beyond what was live before)."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        hax.validate(tree, {})
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def n_params(tree: hax.StructureTree) -> int:
    return sum(x.size for _, x in hax.named_leaves(tree))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--max-nodes", type=int, default=SIZES[-1])
    args = parser.parse_args()
    small, large = template(4), template(141)
    trees: dict[str, hax.StructureTree] = {}
    for n in (s for s in SIZES if s <= args.max_nodes):
        trees[f"flat {n}"] = flat(n, small)
        for depth, label in ((1_000, "1k"), (10_000, "10k")):
            if n >= depth:
                trees[f"chain {label} {n}"] = chains(n, depth, small)
    # ~1,000x larger arrays: Linear(141, 141) has 20,022 params vs 20 for Linear(4, 4).
    trees["large 100"] = flat(100, large)
    # Big trees take seconds a call: fewer rounds (at least 3) keep the run short.
    repeats = {k: max(3, args.repeats * 1_000 // max(count(t)[0], 1_000)) for k, t in trees.items()}
    hax.validate(trees["flat 100"], {})  # warm the caches
    load = os.getloadavg()[0]
    seconds, cpu_seconds = median_seconds(trees, repeats)
    print(
        f"jax {jax.__version__}; validate(tree, {{}}): median of up to {args.repeats} rounds; "
        f"load average {load:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    header = ("tree", "nodes", "depth", "total ms", "µs/node", "cpu µs", "peak KiB", "B/node")
    widths = (10, 8, 6, 9, 8, 7, 9, 7)
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True)))
    per_node: dict[str, float] = {}
    cpu_per_node: dict[str, float] = {}
    per_node_bytes: dict[str, float] = {}
    for name, tree in trees.items():
        nodes, depth = count(tree)
        peak = peak_bytes(tree)
        per_node[name] = seconds[name] / nodes * 1e6
        cpu_per_node[name] = cpu_seconds[name] / nodes * 1e6
        per_node_bytes[name] = peak / nodes
        shape = name.rsplit(" ", 1)[0]
        print(
            f"{shape:>10} {nodes:>8,} {depth:>6,} {seconds[name] * 1e3:>9.1f} "
            f"{per_node[name]:>8.2f} {cpu_per_node[name]:>7.2f} {peak / 1024:>9.0f} "
            f"{per_node_bytes[name]:>7.0f}"
        )
    sized = [k for k in trees if not k.startswith("large")]
    worst = max(sized, key=per_node.__getitem__)
    worst_cpu = max(sized, key=cpu_per_node.__getitem__)
    worst_mem = max(sized, key=per_node_bytes.__getitem__)
    ratio = n_params(trees["large 100"]) / n_params(trees["flat 100"])
    print(
        f"\nworst µs/node: {per_node[worst]:.2f} ({worst} nodes; target <= {TARGET_US:g})"
        f"\nworst CPU µs/node: {cpu_per_node[worst_cpu]:.2f} ({worst_cpu} nodes; "
        f"target <= {TARGET_US:g})"
        f"\nworst peak memory: {per_node_bytes[worst_mem]:.0f} B/node ({worst_mem} nodes; "
        f"target <= {TARGET_BYTES}, i.e. linear in the node count)"
        f"\n100 nodes with {ratio:.0f}x more params: "
        f"{per_node['large 100'] / per_node['flat 100']:.2f}x the time (target <= 1.5x)"
    )


if __name__ == "__main__":
    main()
