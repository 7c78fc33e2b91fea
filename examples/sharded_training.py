"""Train a small transformer language model across devices with `hax.sharding`.

On a CPU-only machine this runs on 8 virtual CPU devices; on a machine with GPUs it
runs unchanged on the GPUs. The mesh is `(data, model)`: the batch is split over
`data`, each transformer block is split Megatron-style over `model` (tensor
parallel), and every param is also split over `data` (FSDP). The model is built
directly in its shards, trained with the same `hax.optim.train_step` as on one
device, checkpointed, and the per-device memory is printed by `hax.summary`.

Run: `python examples/sharded_training.py [--steps 50] [--model-axis 2]`
Several hosts: call `jax.distributed.initialize()` first on every host (see README).
"""

import os

# Must happen before jax is imported; it only affects the CPU platform.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import argparse
import pathlib
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

import hax
from hax import nn
from hax.nn import functional as F


@hax.organized_apply
def lm_apply(org: hax.StateOrganizer, tokens: jax.Array) -> jax.Array:
    x = org.embed(tokens) + org.pos[: tokens.shape[1]]
    mask = nn.generate_square_subsequent_mask(tokens.shape[1])
    return org.head(org.encoder(x, mask=mask, is_causal=True))


@hax.organized_init(lm_apply)
def TransformerLM(org: hax.StateOrganizer, vocab: int, d: int, heads: int, layers: int, seq: int):
    org.embed = nn.Embedding(vocab, d)
    org.pos = 0.02 * jax.random.normal(hax.next_rng_key(), (seq, d))
    layer = nn.TransformerEncoderLayer(
        d, heads, 4 * d, dropout=0.0, batch_first=True, norm_first=True
    )
    org.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(d))
    org.head = nn.Linear(d, vocab)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument(
        "--model-axis", type=int, default=2, help="devices per tensor-parallel group"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()

    devices = jax.devices()
    n_model = args.model_axis if len(devices) % args.model_axis == 0 else 1
    mesh = Mesh(np.array(devices).reshape(-1, n_model), ("data", "model"))
    print(f"{len(devices)} {devices[0].platform} devices, mesh {dict(mesh.shape)}")

    vocab, d, heads, layers, seq, batch = 64, 128, 8, 2, 32, 8 * mesh.shape["data"]

    def shardings_for(tree: hax.StructureTree) -> dict:
        tp = hax.sharding.partition_specs(
            tree, mesh, {}, overrides=hax.sharding.tensor_parallel(tree, "model")
        )
        return hax.sharding.named(mesh, hax.sharding.fsdp(tree, mesh, tp, "data"))

    def build() -> hax.Module:
        with hax.rng_context(args.seed):
            return TransformerLM(vocab, d, heads, layers, seq)

    tree, config = hax.sharding.init(build, shardings_for)  # each device builds its shards
    print(hax.summary(tree, config))

    def loss_fn(tree: hax.StructureTree, batch: tuple[jax.Array, jax.Array]):
        new_tree, logits = hax.apply_tree(tree, config, batch[0])
        return F.cross_entropy(logits.reshape(-1, vocab), batch[1].reshape(-1)), new_tree

    optimizer = optax.adamw(3e-3)
    step = hax.jit(hax.optim.train_step(loss_fn, optimizer))
    opt_state = optimizer.init(hax.optim.params_of(tree))
    data_sharding = hax.sharding.batch_sharding(mesh, "data")

    # A toy language: each sequence counts up by a random stride, modulo the vocabulary.
    rng = np.random.default_rng(args.seed)
    for i in range(args.steps + 1):
        first = rng.integers(0, vocab, (batch, 1))
        stride = rng.integers(1, 4, (batch, 1))
        tokens = (first + stride * np.arange(seq + 1)) % vocab
        x, y = jax.device_put(
            (jnp.asarray(tokens[:, :-1]), jnp.asarray(tokens[:, 1:])), data_sharding
        )
        tree, opt_state, metrics = step(tree, opt_state, (x, y))
        if i % 10 == 0:
            print(f"step {i:3d}  loss {float(metrics['loss']):.4f}")

    weight = tree["submodules"]["encoder"]["submodules"]["layers"]["submodules"]["0"]
    w = weight["submodules"]["linear1"]["params"]["weight"]
    print(
        f"linear1.weight {w.shape} is stored as {w.sharding.spec} "
        f"({w.addressable_shards[0].data.shape} per device)"
    )

    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "lm.safetensors"
        hax.checkpoint.save(path, tree, config)
        loaded, _ = hax.checkpoint.load(path, like=tree)  # placed like `tree`, shard by shard
        same = all(
            bool(jnp.array_equal(a, b))
            for (_, a), (_, b) in zip(
                hax.named_leaves(loaded, ["params"]),
                hax.named_leaves(tree, ["params"]),
                strict=True,
            )
        )
        print(f"checkpoint round trip: identical params: {same}")
    print(f"done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
