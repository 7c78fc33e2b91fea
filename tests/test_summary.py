"""Tests for `hax.summary` (in `hax._summary`): content checked against counts computed
here from the tree, never against a pasted table."""

import math
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp

import hax
import hax.surgery as surgery
from hax import nn
from hax._summary import summary


@hax.organized_apply
def net_apply(org, x):
    return org.head(org.body(x) * org.scale)


@hax.organized_init(net_apply)
def Net(org):
    org.body = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.1))
    org.head = nn.Linear(6, 3, bias=False)
    org.scale = jnp.ones((6,), jnp.float16)


def net():
    with hax.rng_context(0):
        return Net()


def parse(text):
    """The table of `summary` as a list of {column: cell}, cut at the widths of the
    dashed line under the header (cells may contain single spaces)."""
    lines = text.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("---"))
    bounds, start = [], 0
    for dashes in lines[rule].split("  "):
        bounds.append((start, start + len(dashes)))
        start += len(dashes) + 2
    header = [lines[rule - 1][a:b].strip() for a, b in bounds]
    rows = []
    for line in lines[rule + 1 :]:
        if not line.strip():
            break
        rows.append(dict(zip(header, (line[a:b].strip() for a, b in bounds), strict=True)))
    return header, rows


def test_summary_has_every_node_and_correct_totals():
    tree, config = net()
    text = summary(tree, config)
    header, rows = parse(text)
    assert header[:6] == ["path", "kind", "params", "#params", "#buffers", "aux"]
    assert "sharding" not in header  # one device: no sharding columns
    assert text.splitlines()[0] == f"global config: {config!r}"

    nodes = hax.named_nodes(tree)
    assert [r["path"] for r in rows] == ["/".join(p) or "<root>" for p, _ in nodes]
    for row, (path, node) in zip(rows, nodes, strict=True):
        n_params = sum(x.size for x in jax.tree_util.tree_leaves(node["params"]))
        n_buffers = sum(x.size for x in jax.tree_util.tree_leaves(node["buffers"]))
        assert row["#params"] == f"{n_params:,}", path
        assert row["#buffers"] == f"{n_buffers:,}", path
        for name, value in node["params"].items():
            assert f"{name} {tuple(value.shape)}" in row["params"]  # shapes as Python prints them
    kinds = {r["path"]: r["kind"] for r in rows}
    assert kinds["body/0"] == "Linear" and kinds["body/1"] == "BatchNorm1d"
    assert kinds["<root>"] == "net_apply"
    assert "bias=False" in next(r["aux"] for r in rows if r["path"] == "head")

    params = [x for _, x in hax.named_leaves(tree, ("params",))]
    buffers = [x for _, x in hax.named_leaves(tree, ("buffers",))]
    n_params = sum(x.size for x in params)
    p_bytes = sum(x.size * x.dtype.itemsize for x in params)
    b_bytes = sum(x.size * x.dtype.itemsize for x in buffers)
    assert n_params == 4 * 6 + 6 + 6 + 6 + 6 * 3 + 6
    assert f"total params: {n_params:,} ({p_bytes:,} bytes" in text
    assert f"total buffers: {sum(x.size for x in buffers):,} ({b_bytes:,} bytes" in text
    n_half = sum(x.size for x in params if x.dtype == jnp.float16)
    assert f"float16: {n_half:,} params, 0 buffer elements" in text
    assert f"float32: {n_params - n_half:,} params" in text
    assert "key<fry>: 0 params, 1 buffer elements, 8 B" in text


def doubled(inner, tree, config, *args, **kwargs):
    tree, out = inner(tree, config, *args, **kwargs)
    return tree, 2 * out


def test_summary_shows_frozen_wrapped_and_abstract_trees():
    tree, _ = net()
    tree = surgery.wrap(surgery.freeze(tree, "body/0"), "head", doubled)
    _, rows = parse(summary(tree))
    by_path = {r["path"]: r for r in rows}
    assert by_path["body/0"]["aux"].startswith("frozen, ")
    assert not by_path["body/1"]["aux"].startswith("frozen")
    assert by_path["head"]["kind"] == "Linear [wrap: doubled]"

    def shapes_only(node, path):
        def abstract(entries):
            return {
                k: jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), v)
                for k, v in entries.items()
            }

        return {**node, "params": abstract(node["params"]), "buffers": abstract(node["buffers"])}

    abstract = hax.structure_tree_map(shapes_only, tree)
    assert isinstance(abstract["submodules"]["head"]["params"]["weight"], jax.ShapeDtypeStruct)
    assert summary(abstract) == summary(tree)


def test_summary_of_sharded_arrays_has_sharding_columns():
    # Several CPU devices exist only if XLA is told so before jax starts: a new process.
    script = textwrap.dedent(
        """
        import jax, numpy as np
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
        import hax
        from hax._summary import summary

        tree, _ = hax.nn.Linear(8, 6, rng=0)
        mesh = Mesh(np.array(jax.devices()), ("data",))
        weight, bias = tree["params"]["weight"], tree["params"]["bias"]
        tree = {**tree, "params": {
            "weight": jax.device_put(weight, NamedSharding(mesh, P(None, "data"))),
            "bias": jax.device_put(bias, NamedSharding(mesh, P())),
        }}
        print(summary(tree))
        """
    )
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",  # 4 virtual CPU devices, even on a machine with a GPU
    }
    env.pop("HAX_DEBUG", None)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout
    header, rows = parse(text)
    assert header[-2:] == ["sharding", "per device"]
    (row,) = rows
    assert row["sharding"] == "P(None, 'data'), P()"
    # weight: 6 x 8 float32 split 4 ways over its columns; bias: 6 float32 on every device.
    per_device = 6 * (8 // 4) * 4 + 6 * 4
    assert row["per device"] == f"{per_device} B"
    assert f"most bytes on one device: {per_device:,}" in text
    assert row["#params"] == f"{math.prod((6, 8)) + 6}"
