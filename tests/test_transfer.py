"""Tests for `hax.surgery.transfer` and `TransferReport`."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_trees_equal

import hax
from hax import nn
from hax._report import TransferEntry, TransferReport
from hax.surgery._transfer import transfer

FAST_COMPILE = {"xla_backend_optimization_level": 0}


def mlp(hidden, rng):
    return nn.Sequential(
        nn.Linear(4, 8, rng=rng),
        nn.ReLU(),
        nn.Linear(8, hidden, rng=rng + 1),
        nn.BatchNorm1d(hidden),
        nn.ReLU(),
        nn.Linear(hidden, 3, rng=rng + 2),
    )


@functools.cache
def trained_mlp():
    """A small MLP after a few SGD steps (one jitted program), so that its params and
    BatchNorm buffers differ from any fresh initialisation."""
    tree, config = mlp(8, 0)
    state, apply = hax.bind_module(tree, config)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32))

    def train(state):
        def step(state, _):
            params = {k: v for k, v in state.items() if "/params/" in k}

            def loss(params):
                new_state, y = apply({**state, **params}, x)
                return jnp.mean(y**2), new_state

            grads, new_state = jax.grad(loss, has_aux=True)(params)
            new_state = {**new_state, **{k: new_state[k] - 0.1 * g for k, g in grads.items()}}
            return new_state, None

        return jax.lax.scan(step, state, None, length=3)[0]

    state = jax.jit(train, compiler_options=FAST_COMPILE)(state)
    return hax.unbind_module(state, apply)


def snapshot(tree):
    """Structure and leaf identities, to check that a tree was not modified in place."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, [id(x) for x in leaves]


def bits_equal(a, b):
    return a.dtype == b.dtype and np.array_equal(
        np.asarray(a).reshape(-1).view(np.uint8), np.asarray(b).reshape(-1).view(np.uint8)
    )


def test_trained_mlp_into_a_wider_one():
    src = trained_mlp()
    src_tree = src[0]
    assert int(src_tree["submodules"]["3"]["buffers"]["num_batches_tracked"]) == 3
    dst_tree, dst_config = mlp(16, 10)
    src_before, dst_before = snapshot(src), snapshot(dst_tree)
    new, report = transfer(src, (dst_tree, dst_config))
    assert snapshot(src) == src_before and snapshot(dst_tree) == dst_before

    src_leaves, dst_leaves = dict(hax.named_leaves(src_tree)), dict(hax.named_leaves(dst_tree))
    new_leaves = dict(hax.named_leaves(new))
    same_shape = {n for n in dst_leaves if src_leaves[n].shape == dst_leaves[n].shape}
    assert same_shape == {
        "0/params/weight",
        "0/params/bias",
        "3/buffers/num_batches_tracked",
        "5/params/bias",
    }
    assert {e.path for e in report.copied} == same_shape
    for name in same_shape:
        assert bits_equal(new_leaves[name], src_leaves[name]), name
    assert [(e.path, e.src_shape, e.dst_shape) for e in report.mismatched] == [
        ("2/params/weight", (8, 8), (16, 8)),
        ("2/params/bias", (8,), (16,)),
        ("3/params/weight", (8,), (16,)),
        ("3/params/bias", (8,), (16,)),
        ("3/buffers/running_mean", (8,), (16,)),
        ("3/buffers/running_var", (8,), (16,)),
        ("5/params/weight", (3, 8), (3, 16)),
    ]
    assert all(e.src_dtype == e.dst_dtype == "float32" for e in report.mismatched)
    assert report.missing == [] and report.unused == []
    for entry in report.mismatched:
        assert new_leaves[entry.path] is dst_leaves[entry.path]  # kept from dst
    # Everything but the copied leaves is the dst tree as it was.
    assert_trees_equal(
        hax.split_tree(new, ["aux", "apply"])[0], hax.split_tree(dst_tree, ["aux", "apply"])[0]
    )
    hax.validate(new, dst_config)


@hax.organized_apply
def named_mlp_apply(org, x):
    return org.fc2(jax.nn.relu(org.fc1(x)))


@hax.organized_init(named_mlp_apply)
def NamedMLP(org, din, dhidden, dout):
    org.fc1 = nn.Linear(din, dhidden)
    org.fc2 = nn.Linear(dhidden, dout)


def test_rename_by_mapping():
    with hax.rng_context(0):
        src = NamedMLP(4, 8, 3)
    dst, _ = nn.Sequential(nn.Linear(4, 8, rng=1), nn.ReLU(), nn.Linear(8, 3, rng=2))
    new, report = transfer(src, dst, rename={"fc1": "0", "fc2": "2"})
    assert [(e.path, e.src_path) for e in report.copied] == [
        ("0/params/weight", "fc1/params/weight"),
        ("0/params/bias", "fc1/params/bias"),
        ("2/params/weight", "fc2/params/weight"),
        ("2/params/bias", "fc2/params/bias"),
    ]
    assert report.missing == report.unused == report.mismatched == []
    src_leaves = dict(hax.named_leaves(src[0]))
    for e in report.copied:
        assert bits_equal(dict(hax.named_leaves(new))[e.path], src_leaves[e.src_path])
    x = jnp.ones((2, 4))
    np.testing.assert_array_equal(
        hax.apply_tree(new, {}, x)[1], hax.apply_tree(src[0], src[1], x)[1]
    )


def test_rename_by_function_and_drop():
    with hax.rng_context(0):
        src = NamedMLP(4, 8, 3)
    dst, _ = nn.Sequential(nn.Linear(4, 8, rng=1), nn.ReLU(), nn.Linear(8, 3, rng=2))

    def rename(path):
        if path == "fc2/params/bias":
            return None
        return path.replace("fc1/", "0/").replace("fc2/", "2/")

    new, report = transfer(src, dst, rename=rename)
    assert [e.path for e in report.copied] == [
        "0/params/weight",
        "0/params/bias",
        "2/params/weight",
    ]
    assert [(e.path, e.src_path, e.src_shape) for e in report.unused] == [
        ("fc2/params/bias", None, (3,))
    ]
    assert [(e.path, e.dst_shape, e.dst_dtype) for e in report.missing] == [
        ("2/params/bias", (3,), "float32")
    ]
    assert new["submodules"]["2"]["params"]["bias"] is dst["submodules"]["2"]["params"]["bias"]


def test_rename_mapping_rules():
    tree = {
        **hax.empty_tree(),
        "submodules": {
            "enc": {
                **hax.empty_tree(),
                "params": {"w": jnp.ones(2)},
                "submodules": {"0": {**hax.empty_tree(), "params": {"w": jnp.zeros(3)}}},
            }
        },
    }
    dst = {
        **hax.empty_tree(),
        "params": {"w": jnp.full(2, 5.0)},
        "submodules": {"b": {**hax.empty_tree(), "params": {"w": jnp.full(3, 5.0)}}},
    }
    # The longest matching prefix wins; "" strips a prefix; a prefix matches whole names only.
    new, report = transfer(tree, dst, rename={"enc": "", "enc/0": "b"})
    assert [(e.path, e.src_path) for e in report.copied] == [
        ("params/w", "enc/params/w"),
        ("b/params/w", "enc/0/params/w"),
    ]
    np.testing.assert_array_equal(new["params"]["w"], jnp.ones(2))
    with pytest.raises(ValueError, match=r"rename keys \['en'\] match no leaf"):
        transfer(tree, dst, rename={"en": "x"})
    with pytest.raises(ValueError, match="are both renamed to 'x'"):
        transfer(tree, dst, rename=lambda p: "x")
    with pytest.raises(TypeError, match="must return a leaf name"):
        transfer(tree, dst, rename=lambda p: 3)


def test_missing_unused_and_dtype_mismatch():
    src, _ = nn.Sequential(nn.Linear(4, 8, rng=0), nn.Linear(8, 8, rng=1), nn.Linear(8, 3, rng=2))
    dst, _ = nn.Sequential(
        nn.Linear(4, 8, rng=5, dtype=jnp.bfloat16),
        nn.Linear(8, 8, rng=6),
        nn.ReLU(),
        nn.Linear(8, 3, rng=7),
    )
    _, report = transfer(src, dst)
    assert [e.path for e in report.copied] == ["1/params/weight", "1/params/bias"]
    assert [(e.path, e.src_dtype, e.dst_dtype) for e in report.mismatched] == [
        ("0/params/weight", "float32", "bfloat16"),
        ("0/params/bias", "float32", "bfloat16"),
    ]
    assert [e.path for e in report.unused] == ["2/params/weight", "2/params/bias"]
    assert [e.path for e in report.missing] == ["3/params/weight", "3/params/bias"]
    assert report.missing[0] == TransferEntry(
        "3/params/weight", None, None, None, (3, 8), "float32"
    )


def test_pytree_valued_params_and_buffers():
    src = {
        **hax.empty_tree(),
        "params": {"w": {"a": jnp.arange(3.0), "b": [jnp.ones(2), jnp.ones(4)]}},
        "buffers": {"rng": jax.random.key(3)},
    }
    dst = {
        **hax.empty_tree(),
        "params": {"w": {"a": jnp.zeros(3), "b": [jnp.zeros(2), jnp.zeros(5)]}},
        "buffers": {"rng": jax.random.key(4)},
    }
    new, report = transfer(src, dst)
    assert [e.path for e in report.copied] == ["params/w/a", "params/w/b/0", "buffers/rng"]
    assert [e.path for e in report.mismatched] == ["params/w/b/1"]
    assert bits_equal(new["params"]["w"]["b"][0], src["params"]["w"]["b"][0])
    np.testing.assert_array_equal(
        jax.random.key_data(new["buffers"]["rng"]), jax.random.key_data(src["buffers"]["rng"])
    )
    assert new["params"]["w"]["b"][1] is dst["params"]["w"]["b"][1]


def test_report_table():
    report = TransferReport(
        copied=[
            TransferEntry(
                "0/params/weight", "fc1/params/weight", (8, 4), "float32", (8, 4), "float32"
            )
        ],
        mismatched=[TransferEntry("2/params/weight", None, (3, 8), "float32", (3, 16), "bfloat16")],
        missing=[TransferEntry("9/params/bias", None, None, None, (3,), "float32")],
    )
    text = str(report)
    assert text.splitlines()[0] == "TransferReport: 1 copied, 1 missing, 0 unused, 1 mismatched"
    assert "unused" not in text.split("\n", 1)[1]  # no section for an empty field
    assert "0/params/weight <- fc1/params/weight  (8, 4) float32" in text
    assert "2/params/weight  src (3, 8) float32  dst (3, 16) bfloat16" in text
    assert "9/params/bias  dst (3,) float32" in text
    with pytest.raises(AttributeError):
        report.copied = []  # frozen
    _, real = transfer(trained_mlp(), mlp(16, 10))
    lines = str(real).splitlines()
    assert "7 mismatched" in lines[0]
    rows = [line for line in lines if line.startswith("    ")]
    names = [name for name, _ in hax.named_leaves(trained_mlp()[0])]
    assert len(rows) == 11 and all(name in str(real) for name in names)
    # Columns are aligned within a section.
    mismatched = rows[4:]
    assert len({row.index(" src ") for row in mismatched}) == 1


@pytest.mark.wrong_types
def test_bad_arguments():
    with pytest.raises(TypeError, match=r"src to be a structure tree .*, found list"):
        transfer([1], trained_mlp())
    with pytest.raises(TypeError, match=r"dst to be a structure tree .*, found int"):
        transfer(trained_mlp(), 3)


def _train_briefly(tree, config, x, y, steps=3):
    """A few SGD steps under hax.jit, so the source differs from any initialisation."""

    def loss_fn(tree, batch):
        new_tree, out = hax.apply_tree(tree, config, batch[0])
        return jnp.mean((out - batch[1]) ** 2), new_tree

    optimizer = optax.sgd(0.1)
    step = hax.jit(hax.optim.train_step(loss_fn, optimizer), compiler_options=FAST_COMPILE)
    opt_state = optimizer.init(hax.optim.params_of(tree))
    for _ in range(steps):
        tree, opt_state, _ = step(tree, opt_state, (x, y))
    return tree


@pytest.mark.parametrize("kind", ["cnn", "transformer"])
def test_a_wider_head_is_the_only_mismatch(kind):
    """A trained small CNN / transformer into the same model with a wider head: every
    other leaf is copied bit-exactly and exactly the head's leaves are mismatched."""

    def build(classes, rng):
        with hax.rng_context(rng):
            if kind == "cnn":
                return nn.Sequential(
                    nn.Conv2d(1, 4, 3, padding=1),
                    nn.BatchNorm2d(4),
                    nn.ReLU(),
                    nn.Flatten(),
                    nn.Linear(4 * 6 * 6, classes),
                )
            return nn.Sequential(
                nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True),
                nn.Linear(8, classes),
            )

    src, config = build(5, 0)
    dst, _ = build(7, 1)
    rng = np.random.default_rng(0)
    x_shape = (4, 1, 6, 6) if kind == "cnn" else (4, 3, 8)
    x = jnp.asarray(rng.normal(size=x_shape).astype(np.float32))
    y = jnp.asarray(rng.normal(size=(4, 5) if kind == "cnn" else (4, 3, 5)).astype(np.float32))
    src = _train_briefly(src, config, x, y)
    head = "4" if kind == "cnn" else "1"
    out, report = transfer(src, dst)
    assert sorted(e.path for e in report.mismatched) == [
        f"{head}/params/bias",
        f"{head}/params/weight",
    ]
    assert report.missing == [] and report.unused == []
    src_leaves = dict(hax.named_leaves(src))
    for name, leaf in hax.named_leaves(out):
        if name.startswith(f"{head}/"):
            np.testing.assert_array_equal(leaf, dict(hax.named_leaves(dst))[name])
        elif jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            np.testing.assert_array_equal(
                jax.random.key_data(leaf), jax.random.key_data(src_leaves[name])
            )
        else:
            assert leaf.dtype == src_leaves[name].dtype
            np.testing.assert_array_equal(
                np.atleast_1d(np.asarray(leaf)).view(np.uint8),
                np.atleast_1d(np.asarray(src_leaves[name])).view(np.uint8),
            )
    assert len(report.copied) == len(src_leaves) - 2
