"""`hax.sharding` on 8 virtual CPU devices: DP, FSDP, TP and a 2-D mesh train exactly
like one device; bad rules are reported at once; init in shards; checkpoints across
meshes. The cases run in one subprocess (tests/sharding_cases.py), because the device
count must be set before jax is imported."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from jax.sharding import Mesh

import hax

HERE = pathlib.Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def results():
    # CPU devices on any machine: the cases compare against the CPU single-device run.
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAX_PLATFORMS": "cpu",
    }
    done = subprocess.run(
        [sys.executable, str(HERE / "sharding_cases.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


CASES = [
    "data_parallel",
    "fsdp",
    "tensor_parallel",
    "2d",
    "bad_rules",
    "init_in_shards",
    "checkpoint_across_meshes",
]


@pytest.mark.parametrize("case", CASES)
def test_case(results, case):
    assert set(results) == set(CASES)
    assert results[case] == "ok", results[case]


def test_single_device_rules_and_specs():
    """On one device: names come from the specs; a symbolic dim is named by its expression."""
    import jax

    mesh = Mesh(np.array(jax.devices()[:1]), ("model",))
    with hax.rng_context(0):
        tree, _ = hax.nn.Sequential(hax.nn.Linear(4, 8), hax.nn.MultiheadAttention(8, 2))
    specs = hax.sharding.partition_specs(
        tree, mesh, {"out_features": "model"}, overrides={"1": {"3*embed_dim": "model"}}
    )
    assert specs["0/params/weight"] == jax.sharding.PartitionSpec("model")
    assert specs["1/params/in_proj_weight"] == jax.sharding.PartitionSpec("model")
    assert specs["1/out_proj/params/weight"] == jax.sharding.PartitionSpec("model")
    assert specs["1/buffers/rng"] == jax.sharding.PartitionSpec()
    placed = hax.sharding.place(tree, hax.sharding.shardings(tree, mesh, {}))
    hax.validate(placed)


def test_checkpoint_of_a_model_sharded_across_two_processes(tmp_path):
    """jax.distributed with 2 local CPU processes: save gathers collectively, load
    places each process's shards of another multi-process sharding."""
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = str(s.getsockname()[1])
    env = {**{k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}, "JAX_PLATFORMS": "cpu"}
    workers = [
        subprocess.Popen(
            [sys.executable, str(HERE / "multihost_cases.py"), str(i), port, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    outputs = [w.communicate(timeout=600) for w in workers]
    for i, (w, (out, err)) in enumerate(zip(workers, outputs, strict=True)):
        assert w.returncode == 0 and f"ok {i}" in out, err[-3000:]
