"""Multi-device checks of `hax.sharding`, run by tests/test_sharding.py in a subprocess
with 8 virtual CPU devices (XLA_FLAGS must be set before jax is imported).

`python tests/sharding_cases.py` prints one JSON line: {case: "ok" | traceback}.
"""

import json
import os
import sys
import tempfile
import traceback

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, PartitionSpec

import hax
from hax import nn
from hax.nn import functional as F

VOCAB, D, HEADS, FF, SEQ, BATCH, STEPS = 16, 32, 4, 64, 8, 16, 5


@hax.organized_apply
def lm_apply(org, tokens):
    return org.head(org.encoder(org.embed(tokens), is_causal=False))


@hax.organized_init(lm_apply)
def TinyLM(org):
    """Embedding, a 2-layer TransformerEncoder, a linear head."""
    org.embed = nn.Embedding(VOCAB, D)
    layer = nn.TransformerEncoderLayer(D, HEADS, FF, dropout=0.0, batch_first=True)
    org.encoder = nn.TransformerEncoder(layer, 2)
    org.head = nn.Linear(D, VOCAB)


def model():
    with hax.rng_context(0):
        return TinyLM()


def data():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, VOCAB, size=(STEPS, BATCH, SEQ + 1)).astype(np.int32)
    return jnp.asarray(tokens[..., :-1]), jnp.asarray(tokens[..., 1:])


def train(tree, config, place_batch=lambda b: b):
    """5 SGD steps with hax.optim.train_step under hax.jit: (losses, final tree)."""

    def loss_fn(tree, batch):
        new_tree, logits = hax.apply_tree(tree, config, batch[0])
        return F.cross_entropy(logits.reshape(-1, VOCAB), batch[1].reshape(-1)), new_tree

    # Not Adam: it would amplify the rounding noise in the (mathematically zero)
    # gradient of the attention key bias into differences of the size of its step.
    optimizer = optax.sgd(0.1, momentum=0.9)
    step = hax.jit(hax.optim.train_step(loss_fn, optimizer))
    opt_state = optimizer.init(hax.optim.params_of(tree))
    xs, ys = data()
    losses = []
    for i in range(STEPS):
        tree, opt_state, metrics = step(tree, opt_state, place_batch((xs[i], ys[i])))
        losses.append(float(metrics["loss"]))
    return losses, tree


def reference():
    tree, config = model()
    return train(tree, config)


def assert_same_training(losses, tree, ref):
    ref_losses, ref_tree = ref
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5, atol=1e-5)
    got = dict(hax.named_leaves(tree))
    for name, leaf in hax.named_leaves(ref_tree):
        np.testing.assert_allclose(bits(got[name]), bits(leaf), rtol=1e-5, atol=1e-5, err_msg=name)


def bits(x):
    """A NumPy copy of an array (typed PRNG keys as their key data)."""
    return np.asarray(jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x)


def param_bytes_per_device(tree):
    return sum(
        leaf.addressable_shards[0].data.nbytes for _, leaf in hax.named_leaves(tree, ["params"])
    )


def run_sharded(mesh, specs, batch_axis):
    tree, config = model()
    placed = hax.sharding.place(tree, hax.sharding.named(mesh, specs))
    batch_sharding = hax.sharding.batch_sharding(mesh, batch_axis)
    losses, trained = train(placed, config, lambda b: jax.device_put(b, batch_sharding))
    return placed, losses, trained


def case_data_parallel(ref):
    mesh = Mesh(np.array(jax.devices()), ("data",))
    tree, _ = model()
    specs = hax.sharding.replicated(tree, mesh)
    _, losses, trained = run_sharded(mesh, specs, "data")
    assert all(
        s == PartitionSpec()
        for s in jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, PartitionSpec))
    )
    assert_same_training(losses, trained, ref)


def case_fsdp(ref):
    mesh = Mesh(np.array(jax.devices()), ("data",))
    tree, _ = model()
    specs = hax.sharding.fsdp(tree, mesh, hax.sharding.replicated(tree, mesh), "data")
    placed, losses, trained = run_sharded(mesh, specs, "data")
    replicated = hax.sharding.place(
        tree, hax.sharding.named(mesh, hax.sharding.replicated(tree, mesh))
    )
    ratio = param_bytes_per_device(placed) / param_bytes_per_device(replicated)
    assert ratio == 1 / 8, ratio
    assert param_bytes_per_device(trained) == param_bytes_per_device(placed)  # stays sharded
    assert_same_training(losses, trained, ref)


def case_tensor_parallel(ref):
    mesh = Mesh(np.array(jax.devices()), ("model",))
    tree, _ = model()
    specs = hax.sharding.partition_specs(
        tree, mesh, {}, overrides=hax.sharding.tensor_parallel(tree, "model")
    )
    assert specs["encoder/layers/0/linear1/params/weight"] == PartitionSpec("model")
    assert specs["encoder/layers/0/linear2/params/weight"] == PartitionSpec(None, "model")
    assert specs["encoder/layers/1/self_attn/params/in_proj_weight"] == PartitionSpec("model")
    assert specs["encoder/layers/1/self_attn/out_proj/params/weight"] == PartitionSpec(
        None, "model"
    )
    _, losses, trained = run_sharded(mesh, specs, None)
    assert_same_training(losses, trained, ref)


def case_2d(ref):
    mesh = Mesh(np.array(jax.devices()).reshape(2, 4), ("data", "model"))
    tree, _ = model()
    tp = hax.sharding.partition_specs(
        tree, mesh, {}, overrides=hax.sharding.tensor_parallel(tree, "model")
    )
    specs = hax.sharding.fsdp(tree, mesh, tp, "data")
    assert specs["encoder/layers/0/linear1/params/weight"] == PartitionSpec("model", "data")
    _, losses, trained = run_sharded(mesh, specs, "data")
    assert_same_training(losses, trained, ref)


def case_bad_rules(ref):
    """Every problem in one ShardingError, each naming the offending paths."""
    tree, _ = model()
    mesh = Mesh(np.array(jax.devices()[:6]), ("data",))  # 6 divides none of 16, 32, 64
    rules = {"out_features": "modle", "embedding_dim": "data", "kernel_size": "data"}
    overrides = {"**/linear9": {"in_features": "data"}, "**/linear2": {"in_features": "data"}}
    try:
        hax.sharding.partition_specs(tree, mesh, rules, overrides=overrides)
    except hax.sharding.ShardingError as err:
        text = str(err)
        assert text.startswith("6 sharding problems:"), text
        assert "override '**/linear9': matches no node" in text
        assert "embed/params/weight: dimension 1 (embedding_dim=32) does not divide evenly" in text
        for layer in ("0", "1"):
            assert (
                f"encoder/layers/{layer}/linear2/params/weight: dimension 1 (in_features=64)"
                in text
            )
        unknown = [line for line in err.problems if "'modle'" in line]
        assert len(unknown) == 1 and "head/params/weight" in unknown[0]
        assert unknown[0].count("params/weight") == 7  # out_proj, linear1, linear2 x2, head
        assert "rule 'kernel_size': no array" in text
    else:
        raise AssertionError("no error")


def case_init_in_shards(ref):
    mesh = Mesh(np.array(jax.devices()), ("data",))

    def shardings_for(abstract):
        return hax.sharding.named(
            mesh, hax.sharding.fsdp(abstract, mesh, hax.sharding.replicated(abstract, mesh))
        )

    tree, config = hax.sharding.init(model, shardings_for)
    eager, _ = model()
    want = shardings_for(eager)
    for name, leaf in hax.named_leaves(tree):
        assert leaf.sharding.is_equivalent_to(want[name], leaf.ndim), name
    for (name, a), (_, b) in zip(hax.named_leaves(tree), hax.named_leaves(eager), strict=True):
        np.testing.assert_array_equal(bits(a), bits(b), err_msg=name)
    hax.validate(tree, config)


def case_checkpoint_across_meshes(ref):
    mesh8 = Mesh(np.array(jax.devices()), ("data",))
    tree, config = model()
    specs8 = hax.sharding.fsdp(tree, mesh8, hax.sharding.replicated(tree, mesh8))
    saved = hax.sharding.place(tree, hax.sharding.named(mesh8, specs8))
    mesh42 = Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "model"))
    tp = hax.sharding.partition_specs(
        tree, mesh42, {}, overrides=hax.sharding.tensor_parallel(tree, "model")
    )
    shards42 = hax.sharding.named(mesh42, hax.sharding.fsdp(tree, mesh42, tp, "data"))
    like = hax.sharding.place(model()[0], shards42)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sharded.safetensors")
        hax.checkpoint.save(path, saved, config)
        loaded, loaded_config = hax.checkpoint.load(path, like=like)
    assert loaded_config == config
    for (name, a), (_, b) in zip(hax.named_leaves(loaded), hax.named_leaves(saved), strict=True):
        assert a.sharding.is_equivalent_to(shards42[name], a.ndim), (name, a.sharding)
        np.testing.assert_array_equal(bits(a), bits(b), err_msg=name)


def main():
    assert len(jax.devices()) == 8, jax.devices()
    ref = reference()
    results = {}
    for name, case in list(globals().items()):
        if name.startswith("case_"):
            try:
                case(ref)
                results[name[5:]] = "ok"
            except Exception:
                results[name[5:]] = traceback.format_exc()
    print(json.dumps(results))


if __name__ == "__main__":
    sys.exit(main())
