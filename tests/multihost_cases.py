"""A checkpoint of a model sharded across 2 processes (4 CPU devices each), run by
tests/test_sharding.py: `python tests/multihost_cases.py PROCESS_ID PORT DIR`.

Both processes save collectively (process 0 writes), then load into a different
sharding that also spans both processes; each checks its own shards. Prints "ok".
"""

import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"

import jax
import numpy as np
from jax.sharding import Mesh

import hax
from hax import nn


def main(process_id: int, port: str, directory: str) -> None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=process_id)
    assert jax.process_count() == 2 and len(jax.devices()) == 8

    def build():
        with hax.rng_context(0):
            return nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.1), nn.Linear(16, 8))

    expected = {
        k: np.asarray(jax.random.key_data(v) if k.endswith("rng") else v)
        for k, v in hax.named_leaves(build()[0])
    }
    mesh8 = Mesh(np.array(jax.devices()), ("data",))

    def fsdp(tree):
        return hax.sharding.named(
            mesh8, hax.sharding.fsdp(tree, mesh8, hax.sharding.replicated(tree, mesh8))
        )

    tree, config = hax.sharding.init(build, fsdp)  # each process builds its own shards
    weight = tree["submodules"]["0"]["params"]["weight"]
    assert not weight.is_fully_addressable
    path = os.path.join(directory, "model.safetensors")
    hax.checkpoint.save(path, tree, config)

    mesh42 = Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "model"))
    target = hax.sharding.named(
        mesh42,
        hax.sharding.partition_specs(
            tree, mesh42, {"out_features": "data", "in_features": "model"}
        ),
    )
    like = hax.sharding.init(build, lambda t: target)[0]
    loaded, loaded_config = hax.checkpoint.load(path, like=like)
    assert loaded_config == config
    for name, leaf in hax.named_leaves(loaded):
        assert leaf.sharding.is_equivalent_to(target[name], leaf.ndim), name
        data = jax.random.key_data(leaf) if name.endswith("rng") else leaf
        for shard in data.addressable_shards:
            np.testing.assert_array_equal(
                np.asarray(shard.data), expected[name][shard.index], err_msg=name
            )
    print("ok", process_id, flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
