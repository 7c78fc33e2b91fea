"""Checkpoints under misuse: save writes only what load reads back bit-exactly (or
refuses before touching the old file), killed saves leave nothing behind, crafted
headers are format errors, and files get the permissions and paths users expect."""

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
from hypothesis import HealthCheck, given, settings, strategies as st
from test_checkpoint import W, craft, metadata

import hax
from hax import checkpoint as ckpt
from hax.checkpoint import CheckpointFormatError


def test_big_endian_arrays_are_stored_little_endian_with_the_same_values(tmp_path):
    path = tmp_path / "m.safetensors"
    values = np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5
    state = {"params/w": values.astype(">f4"), "buffers/n": np.array([1, -7], ">i4")}
    ckpt.save(path, state)
    loaded, _ = ckpt.load(path)
    np.testing.assert_array_equal(loaded["params/w"], values)
    np.testing.assert_array_equal(loaded["buffers/n"], [1, -7])
    # other safetensors readers see the same numbers
    other = safetensors.numpy.load_file(path)
    np.testing.assert_array_equal(other["params/w"], values)
    np.testing.assert_array_equal(other["buffers/n"], [1, -7])


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"": jnp.ones(2)}, "not a leaf name"),
        ({"a/b": jnp.ones(2)}, "not a leaf name"),
        ({"w": {"x/y": jnp.ones(2)}}, "the key 'x/y'"),
        ({"w": {"": jnp.ones(2)}}, "the key ''"),
    ],
)
def test_names_load_would_refuse_are_refused_before_the_old_file_is_touched(
    tmp_path, params, match
):
    path = tmp_path / "m.safetensors"
    good = hax.fill_tree({"params": {"w": jnp.arange(3.0)}})
    ckpt.save(path, good)
    before = path.read_bytes()
    bad = {**good, "params": params}
    with pytest.raises(ValueError, match=match):
        ckpt.save(path, bad)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]


def _killed_save(tmp_path):
    """Start a process that saves and hangs before its temporary file is complete; kill it."""
    script = textwrap.dedent(
        f"""
        import os, sys, time
        import jax.numpy as jnp
        from hax import checkpoint
        os.fsync = lambda fd: (print("writing", flush=True), time.sleep(60))
        checkpoint.save({str(tmp_path / "m.safetensors")!r}, {{"params/w": jnp.ones(100_000)}})
        """
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    assert proc.stdout.readline().strip() == b"writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_a_killed_save_leaves_a_temporary_file_the_next_save_removes(tmp_path):
    path = tmp_path / "m.safetensors"
    ckpt.save(path, {"params/w": jnp.zeros(2)})
    _killed_save(tmp_path)
    left = [n for n in os.listdir(tmp_path) if n != "m.safetensors"]
    assert len(left) == 1 and os.path.getsize(tmp_path / left[0]) > 400_000
    np.testing.assert_array_equal(ckpt.load(path)[0]["params/w"], [0.0, 0.0])  # old file intact
    ckpt.save(path, {"params/w": jnp.ones(2)})
    assert os.listdir(tmp_path) == ["m.safetensors"]


def test_the_temporary_file_of_a_running_save_is_kept(tmp_path):
    path = tmp_path / "m.safetensors"
    live = tmp_path / f".m.safetensors.hax-{_host()}-{os.getppid()}-{'0' * 16}.tmp"
    live.write_bytes(b"in progress")
    ckpt.save(path, {"params/w": jnp.ones(2)})
    assert live.exists()


def _host():
    from hax.checkpoint import _save

    return _save._HOST


def _deep(depth):
    value = {"leaf": "params/w"}
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("header", "overrides", "match"),
    [
        ({"params/w": {**W, "shape": [1] * 64 + [2]}}, {}, "more than 64"),
        (
            {"params/w": W, "params/e": {**W, "shape": [2**70, 0], "data_offsets": [8, 8]}},
            {},
            "2\\*\\*62",
        ),
        ({"params/w": W}, {"format_version": "\u0661"}, "not a version number"),
        ({"params/w": W}, {"format_version": "1" * 5000}, "not a version number"),
        (
            {"params/w": W},
            {"state": json.dumps({"params/w": {"leaf": "params/w"}, "params/v": _deep(900)})},
            "nested more than",
        ),
        ({"params/w": W}, {"config": json.dumps(_deep(150))}, "nested more than"),
    ],
)
def test_crafted_headers_are_format_errors(tmp_path, header, overrides, match):
    path = craft(tmp_path / "bad", {**header, "__metadata__": metadata(**overrides)})
    with pytest.raises(CheckpointFormatError, match=match):
        ckpt.load(path)
    with pytest.raises(CheckpointFormatError, match=match):
        ckpt.read_info(path)
    jnp.ones(2).block_until_ready()  # the interpreter is fine


def test_saved_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        ckpt.save(tmp_path / "a.safetensors", {"params/w": jnp.ones(2)})
        os.umask(0o077)
        ckpt.save(tmp_path / "b.safetensors", {"params/w": jnp.ones(2)})
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a.safetensors").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / "b.safetensors").st_mode) == 0o600


def test_saving_through_a_symlink_replaces_its_target_and_keeps_the_link(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "m.safetensors"
    ckpt.save(target, {"params/w": jnp.zeros(2)})
    link = tmp_path / "latest.safetensors"
    link.symlink_to(target)
    ckpt.save(link, {"params/w": jnp.ones(2)})
    assert link.is_symlink() and os.readlink(link) == str(target)
    np.testing.assert_array_equal(ckpt.load(target)[0]["params/w"], [1.0, 1.0])


def test_a_full_disk_is_an_os_error(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    ckpt.save(path, {"params/w": jnp.zeros(2)})
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="No space left"):
        ckpt.save(path, {"params/w": jnp.ones(2)})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["m.safetensors"]
    np.testing.assert_array_equal(ckpt.load(path)[0]["params/w"], [0.0, 0.0])


# -- save either refuses or writes what load reads back bit-exactly -----------------

_dtypes = st.sampled_from(
    ["float32", "float16", "bfloat16", "int8", "uint16", "int64", "bool", ">f4", ">i2", "<u4"]
)
_names = st.one_of(st.sampled_from(["w", "b", "0", "x y", "é", "a.b"]), st.text(max_size=4))


@st.composite
def _entries(draw):
    out = {}
    for name in draw(st.lists(_names, max_size=3, unique=True)):
        kind = draw(st.sampled_from(["params", "buffers"]))
        dtype = draw(_dtypes)
        shape = draw(st.lists(st.integers(0, 3), max_size=3))
        data = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape) % 3
        value = np.asarray(data).astype(jnp.dtype(dtype) if dtype == "bfloat16" else dtype)
        if draw(st.booleans()):
            value = {draw(_names): value, "z": [value]}
        out[f"{kind}/{name}"] = value
    return out


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(state=_entries())
def test_save_refuses_or_round_trips_bit_exactly(tmp_path, state):
    path = tmp_path / "m.safetensors"
    ckpt.save(path, {"params/keep": jnp.arange(2.0)})
    before = path.read_bytes()
    try:
        ckpt.save(path, state)
    except (ValueError, TypeError):
        assert path.read_bytes() == before
        return
    loaded, _ = ckpt.load(path)
    assert list(loaded) == list(state)
    for key in state:
        want, got = jax.tree.leaves(state[key]), jax.tree.leaves(loaded[key])
        assert jax.tree.structure(loaded[key]) == jax.tree.structure(state[key])
        for a, b in zip(want, got, strict=True):
            a = np.asarray(a)
            assert b.shape == a.shape and np.dtype(b.dtype).name == a.dtype.name
            np.testing.assert_array_equal(np.asarray(b), a)
