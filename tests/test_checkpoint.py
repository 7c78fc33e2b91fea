"""Tests for `hax.checkpoint`: bit-exact round trips, exact metadata, strict checks,
atomic writes, and hostile or broken files."""

import json
import math
import os
import struct
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors
import safetensors.numpy
import torch
from conftest import ARRAY_TYPES, assert_leaves_equal, assert_trees_equal
from hypothesis import HealthCheck, given, settings, strategies as st
from safetensors.torch import load_file as torch_load_file

import hax
import hax.checkpoint as ckpt
from hax import nn
from hax.checkpoint import CheckpointFormatError, CheckpointMismatchError


def apply_a(tree, global_config, x):
    return tree, x


def apply_b(tree, global_config, x):
    return tree, -x


def random_bits(dtype, shape, seed):
    """An array of `dtype` holding random bit patterns (NaN payloads, -0.0, infinities,
    subnormals included for floats); bools get 0 or 1."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    raw = rng.integers(0, 256, size=(math.prod(shape) * dtype.itemsize,), dtype=np.uint8)
    return raw.view(dtype).reshape(shape)


def bits(x):
    """The raw bits of an array (the key data of a typed key), for exact comparison."""
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    a = np.asarray(x)
    return a.view(np.dtype(f"u{a.dtype.itemsize}")) if a.dtype != np.bool_ else a


def assert_bits_equal(tree_a, tree_b):
    """Same structure, the same non-array leaves, and arrays of the same shapes, dtypes
    and bits (NaN payloads included)."""
    leaves_a, treedef_a = jax.tree_util.tree_flatten_with_path(tree_a)
    leaves_b, treedef_b = jax.tree_util.tree_flatten_with_path(tree_b)
    assert treedef_a == treedef_b
    for (where, a), (_, b) in zip(leaves_a, leaves_b, strict=True):
        where = jax.tree_util.keystr(where)
        if isinstance(a, ARRAY_TYPES) or isinstance(b, ARRAY_TYPES):
            assert (np.shape(a), a.dtype) == (np.shape(b), b.dtype), where
            np.testing.assert_array_equal(bits(a), bits(b), err_msg=where)
        else:
            assert_leaves_equal(a, b, where)


DTYPES = ["float32", "bfloat16", "float16", "int32", "uint8", "bool", "int8", "int16"]
DTYPES += ["uint16", "uint32", "float8_e4m3fn", "float8_e5m2", "complex64"]


def dtype_tree():
    """A tree with one array per supported dtype (random bits), typed PRNG keys of two
    implementations, an old-style uint32 key, a scalar and a zero-size array."""
    params = {
        name: jnp.asarray(random_bits(jnp.dtype(name), (2, 3), i)) for i, name in enumerate(DTYPES)
    }
    buffers = {
        "key": jax.random.key(7),
        "keys": jax.random.split(jax.random.key(1, impl="rbg"), 3),
        "old_key": jax.random.PRNGKey(3),
        "count": jnp.asarray(5, jnp.int32),
        "empty": jnp.zeros((0, 4), jnp.bfloat16),
    }
    child = {
        "params": {"w": jnp.asarray(random_bits(np.float32, (4,), 99))},
        "buffers": {},
        "aux": {},
        "apply": apply_b,
        "submodules": {},
    }
    return {
        "params": params,
        "buffers": buffers,
        "aux": {"n": 1},
        "apply": apply_a,
        "submodules": {"child": child},
    }


def test_round_trip_is_bit_exact_for_every_dtype_and_keys(tmp_path):
    tree = dtype_tree()
    path = tmp_path / "m.safetensors"
    ckpt.save(path, tree)
    loaded, config = ckpt.load(path, like=tree)
    assert_bits_equal(loaded, tree)
    assert config == {}
    assert loaded["buffers"]["keys"].dtype == tree["buffers"]["keys"].dtype  # key<rbg>
    assert loaded["buffers"]["old_key"].dtype == jnp.uint32
    # Without `like`: the bound state, the same as hax.bind_module's.
    state, _ = ckpt.load(path)
    assert_bits_equal(state, hax.bind_module(tree, {})[0])
    assert list(state) == list(hax.bind_module(tree, {})[0])  # the model's order


def test_float64_and_int64_need_x64(tmp_path):
    path = tmp_path / "m.safetensors"
    with jax.enable_x64(True):
        state = {
            "params/f": jnp.asarray(random_bits(np.float64, (3,), 0)),
            "params/i": jnp.asarray(random_bits(np.int64, (3,), 1)),
            "params/u": jnp.asarray(random_bits(np.uint64, (2,), 2)),
        }
        ckpt.save(path, state)
        loaded, _ = ckpt.load(path)
        assert_bits_equal(loaded, state)
    with pytest.raises(CheckpointFormatError, match="jax_enable_x64"):
        ckpt.load(path)


AUX = {
    "int": 1,
    "float": 1.0,
    "bool": True,
    "none": None,
    "str": "é/ü \"'",
    "tuple": (1, (2.0, "x", False), None, ()),
    "empty": (),
    "inf": float("-inf"),
    "neg_zero": -0.0,
    "big": 2**70,
}
CONFIG = {"train_mode": True, "lr": 1, "beta": 1.0, "list": [1, (2, 3)], "d": {"a": None}}


def test_aux_and_config_types_are_exact(tmp_path):
    tree = {**dtype_tree(), "aux": AUX}
    path = tmp_path / "m.safetensors"
    ckpt.save(path, tree, CONFIG)
    info = ckpt.read_info(path)
    # assert_trees_equal compares leaf types (1 vs 1.0 vs True) and tuples vs lists.
    assert_trees_equal(info.nodes[""].aux, AUX)
    assert math.copysign(1.0, info.nodes[""].aux["neg_zero"]) == -1.0
    assert_trees_equal(info.config, CONFIG)
    _, config = ckpt.load(path, like=tree)
    assert_trees_equal(config, CONFIG)
    _, config = ckpt.load(path)
    assert_trees_equal(config, CONFIG)
    assert info.nodes["child"].apply == f"{__name__}:apply_b"
    assert info.format_version == 1
    assert info.leaves["buffers/keys"] == ckpt.LeafInfo((3,), "key<rbg>", "rbg")


def trained_model():
    """Sequential(Linear, BatchNorm1d, Dropout, Linear) with the buffers a training step
    leaves (running stats, a counter, an advanced key), so they differ from a fresh model's."""
    tree, config = nn.Sequential(
        nn.Linear(3, 4, rng=0), nn.BatchNorm1d(4), nn.Dropout(0.5, rng=1), nn.Linear(4, 2, rng=2)
    )
    bn, dropout = tree["submodules"]["1"], tree["submodules"]["2"]
    bn = {
        **bn,
        "buffers": {
            "running_mean": jnp.asarray(random_bits(np.float32, (4,), 1)),
            "running_var": jnp.asarray([0.5, 1.5, 2.0, 3.0], jnp.float32),
            "num_batches_tracked": jnp.asarray(3, bn["buffers"]["num_batches_tracked"].dtype),
        },
    }
    dropout = {**dropout, "buffers": {"rng": jax.random.split(dropout["buffers"]["rng"])[0]}}
    submodules = {**tree["submodules"], "1": bn, "2": dropout}
    return hax.validate({**tree, "submodules": submodules}, config), config


def test_nn_model_round_trip(tmp_path):
    tree, config = trained_model()
    path = tmp_path / "model.safetensors"
    ckpt.save(path, (tree, config))
    fresh = nn.Sequential(
        nn.Linear(3, 4, rng=5), nn.BatchNorm1d(4), nn.Dropout(0.5, rng=6), nn.Linear(4, 2, rng=7)
    )
    loaded, loaded_config = ckpt.load(path, like=fresh)
    assert_bits_equal(loaded, tree)  # applies and aux compared too
    assert loaded_config == config == {"train_mode": True}
    # The bound state and unbind_module give the same tree back.
    state, _ = ckpt.load(path)
    _, bound = hax.bind_module(*fresh)
    assert_bits_equal(hax.unbind_module(state, bound)[0], tree)
    info = ckpt.read_info(path)
    assert set(info.nodes) == {"/".join(p) for p, _ in hax.named_nodes(tree)}
    assert info.nodes["0"].apply == "hax.nn._linear:linear_apply"
    assert info.nodes["1"].aux == tree["submodules"]["1"]["aux"]


def test_pytree_valued_params(tmp_path):
    tree = {
        **hax.empty_tree(apply_a),
        "params": {"w": {"a": jnp.ones(3), "b": [jnp.zeros(2), (jnp.arange(2), None)], "e": {}}},
    }
    path = tmp_path / "m.safetensors"
    ckpt.save(path, tree)
    assert list(ckpt.read_info(path).leaves) == [name for name, _ in hax.named_leaves(tree)]
    loaded, _ = ckpt.load(path, like=tree)
    assert_bits_equal(loaded, tree)
    state, _ = ckpt.load(path)
    assert_bits_equal(state, {"params/w": tree["params"]["w"]})


def test_save_a_bound_state_and_load_into_shapes(tmp_path):
    tree, config = trained_model()
    state, _ = hax.bind_module(tree, config)
    path = tmp_path / "state.safetensors"
    ckpt.save(path, state, config)
    assert ckpt.read_info(path).nodes is None
    loaded, cfg = ckpt.load(path)
    assert_bits_equal(loaded, state)
    assert cfg == config
    # A state of jax.ShapeDtypeStruct as `like`: load without initialising a model.
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
    loaded, _ = ckpt.load(path, like=abstract)
    assert_bits_equal(loaded, state)
    loaded_tree, _ = ckpt.load(path, like=(tree, config))
    assert_bits_equal(loaded_tree, tree)


def mismatched_like():
    """The dtype tree with one leaf missing from it, one extra, one reshaped and one recast."""
    tree = dtype_tree()
    params = dict(tree["params"])
    del params["int8"]  # unused: in the file only
    params["extra"] = jnp.zeros(2)  # missing: in like only
    params["float32"] = jnp.zeros((3, 2), jnp.float32)  # shape
    params["int32"] = jnp.zeros((2, 3), jnp.int16)  # dtype
    return {**tree, "params": params}


def test_strict_load_reports_every_mismatch_at_once(tmp_path):
    path = tmp_path / "m.safetensors"
    ckpt.save(path, dtype_tree())
    like = mismatched_like()
    with pytest.raises(CheckpointMismatchError) as info:
        ckpt.load(path, like=like)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    for expected in [
        "params/int8",
        "params/extra",
        "params/float32  file (2, 3) float32",
        "like (3, 2) float32",
        "params/int32",
        "file (2, 3) int32",
        "like (2, 3) int16",
        "4 problems",
        "strict=False",
    ]:
        assert expected in message, expected
    report = info.value.report
    assert [e.path for e in report.missing] == ["params/extra"]
    assert [e.path for e in report.unused] == ["params/int8"]
    assert [e.path for e in report.mismatched] == ["params/float32", "params/int32"]
    m = report.mismatched[1]
    assert (m.src_shape, m.src_dtype, m.dst_shape, m.dst_dtype) == (
        (2, 3),
        "int32",
        (2, 3),
        "int16",
    )


def test_non_strict_load_keeps_what_does_not_match(tmp_path):
    path = tmp_path / "m.safetensors"
    saved = dtype_tree()
    ckpt.save(path, saved)
    like = mismatched_like()
    loaded, _, report = ckpt.load(path, like=like, strict=False)
    for name in ["extra", "float32", "int32"]:
        assert loaded["params"][name] is like["params"][name]
    assert "int8" not in loaded["params"]
    np.testing.assert_array_equal(bits(loaded["params"]["uint8"]), bits(saved["params"]["uint8"]))
    assert {e.path for e in report.copied} == {
        n
        for n, _ in hax.named_leaves(like)
        if n.split("/")[-1] not in ("extra", "float32", "int32")
    }
    assert len(report.missing) == 1 and len(report.unused) == 1 and len(report.mismatched) == 2


def test_frozen_flags_come_from_like_with_a_warning_when_dropped(tmp_path):
    path = tmp_path / "m.safetensors"
    with hax.rng_context(0):
        tree, config = nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.ReLU(), nn.Linear(4, 2)))
    frozen = hax.surgery.freeze(tree, ["0", "1"])
    ckpt.save(path, frozen, config)
    assert ckpt.read_info(path).nodes["1/1"].aux["frozen"] is True
    # like keeps its aux: the saved frozen flags are dropped, and load says which
    for strict in (True, False):
        with pytest.warns(UserWarning, match=r"frozen nodes \['0', '1'\] that `like` does not"):
            loaded = ckpt.load(path, like=(tree, config), strict=strict)[0]
        assert hax.surgery.trainable_mask(loaded) == hax.surgery.trainable_mask(tree)
    # freezing like first (or after loading, as the warning says) restores them, silently
    refrozen = hax.surgery.freeze(loaded, ["0", "1"])
    assert hax.surgery.trainable_mask(refrozen) == hax.surgery.trainable_mask(frozen)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded, _ = ckpt.load(path, like=(frozen, config))
        assert_trees_equal(loaded, frozen)
        ckpt.load(path, like=hax.surgery.freeze(tree, ""))  # like may freeze more
        ckpt.save(path, tree, config)
        ckpt.load(path, like=frozen)  # or freeze what the file did not


def test_inputs_are_not_mutated(tmp_path):
    tree = dtype_tree()
    before = jax.tree_util.tree_flatten_with_path(tree)
    path = tmp_path / "m.safetensors"
    ckpt.save(path, tree)
    ckpt.load(path, like=tree)
    after = jax.tree_util.tree_flatten_with_path(tree)
    assert before[1] == after[1]
    assert all(a[1] is b[1] for a, b in zip(before[0], after[0], strict=True))


# ---------------------------------------------------------------- atomic writes


def assert_only(directory, names):
    assert sorted(os.listdir(directory)) == sorted(names)  # no temporary files left


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch, error):
    path = tmp_path / "m.safetensors"
    old = dtype_tree()
    ckpt.save(path, old)

    def failing_fsync(fd):  # the data is written, the disk fails before it is durable
        raise error

    monkeypatch.setattr(os, "fsync", failing_fsync)
    new = {**old, "params": {"other": jnp.ones(2)}}
    with pytest.raises(type(error)):
        ckpt.save(path, new)
    monkeypatch.undo()
    assert_only(tmp_path, ["m.safetensors"])
    assert_bits_equal(ckpt.load(path, like=old)[0], old)


def test_leaf_that_cannot_be_saved_keeps_the_old_file(tmp_path):
    path = tmp_path / "m.safetensors"
    old = dtype_tree()
    ckpt.save(path, old)
    bad = {**old, "params": {**old["params"], "z": np.zeros(2, np.complex128)}}
    with pytest.raises(TypeError, match="params/z has dtype complex128"):
        ckpt.save(path, bad)
    assert_only(tmp_path, ["m.safetensors"])
    assert_bits_equal(ckpt.load(path, like=old)[0], old)


@pytest.mark.wrong_types
def test_save_errors_name_what_is_wrong(tmp_path):
    path = tmp_path / "m.safetensors"
    tree = dtype_tree()
    with pytest.raises(TypeError, match=r"child: aux\['f'\]: a float32 cannot be saved"):
        bad_child = {**tree["submodules"]["child"], "aux": {"f": np.float32(1)}}
        ckpt.save(path, {**tree, "submodules": {"child": bad_child}})
    with pytest.raises(TypeError, match=r"config\['fn'\]: a function"):
        ckpt.save(path, tree, {"fn": apply_a})
    with pytest.raises(TypeError, match="already has a config"):
        ckpt.save(path, (tree, {}), {"train_mode": True})
    with pytest.raises(ValueError, match="state key 'weight' is not a leaf name"):
        ckpt.save(path, {"weight": jnp.ones(2)})
    with pytest.raises(TypeError, match="params/x is a float, not an array"):
        ckpt.save(path, {"params/x": 1.0})
    with pytest.raises(TypeError, match="expected a structure tree"):
        ckpt.save(path, [jnp.ones(2)])
    assert_only(tmp_path, [])


# ---------------------------------------------------------------- the file is standard


def test_dtype_codes_agree_with_safetensors():
    """HAX's dtype table (used to read files) matches the codes safetensors writes."""
    from hax.checkpoint._format import DTYPE_CODES

    buffer = np.zeros(8, np.uint8)
    for name, code in DTYPE_CODES.items():
        spec = safetensors.TensorSpec(
            dtype=name, shape=[1], data_ptr=buffer.ctypes.data, data_len=jnp.dtype(name).itemsize
        )
        assert spec.dtype == code, name


def test_file_is_readable_by_safetensors_and_torch(tmp_path):
    tree = dtype_tree()
    path = tmp_path / "m.safetensors"
    ckpt.save(path, tree)
    with safetensors.safe_open(path, framework="numpy") as f:
        np.testing.assert_array_equal(
            bits(f.get_tensor("params/float32")), bits(tree["params"]["float32"])
        )
        np.testing.assert_array_equal(
            f.get_tensor("buffers/key"), jax.random.key_data(tree["buffers"]["key"])
        )
        assert json.loads(f.metadata()["format_version"]) == 1
    tensors = torch_load_file(path)
    assert tensors["params/bfloat16"].dtype == torch.bfloat16
    np.testing.assert_array_equal(
        tensors["params/bfloat16"].view(torch.int16).numpy().view(np.uint16),
        bits(tree["params"]["bfloat16"]),
    )
    assert tensors["params/float16"].dtype == torch.float16
    assert tuple(tensors["buffers/empty"].shape) == (0, 4)
    assert tuple(tensors["buffers/count"].shape) == ()


# ---------------------------------------------------------------- broken and hostile files


def assert_rejected(path, match=None, header=True):
    """`load` raises a CheckpointFormatError (a ValueError); so does `read_info` when
    the problem is in the header."""
    with pytest.raises(CheckpointFormatError, match=match) as info:
        ckpt.load(path)
    assert isinstance(info.value, ValueError)
    if header:
        with pytest.raises(CheckpointFormatError, match=match):
            ckpt.read_info(path)


def test_truncated_files_are_rejected(tmp_path):
    path = tmp_path / "m.safetensors"
    ckpt.save(path, dtype_tree())
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    cut = tmp_path / "cut.safetensors"
    for length in [0, 1, 7, 8, 9, 8 + n // 2, 8 + n - 1, 8 + n, 8 + n + 1, len(data) - 1]:
        cut.write_bytes(data[:length])
        assert_rejected(cut, "truncated")


@pytest.mark.parametrize(
    "content",
    [b"", b"hello world, not a checkpoint", b"PK\x03\x04" + bytes(100), bytes(64), b"\xff" * 64],
)
def test_garbage_files_are_rejected(tmp_path, content):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(content)
    assert_rejected(path)


def metadata(**overrides):
    """HAX metadata for one float32 tensor `params/w` of shape (2,)."""
    base = {
        "format": "hax.checkpoint",
        "format_version": "1",
        "config": "null",
        "nodes": "null",
        "state": json.dumps({"params/w": {"leaf": "params/w"}}),
        "leaves": json.dumps({"params/w": {"dtype": "float32"}}),
    }
    return {**base, **overrides}


def craft(path, header, data=bytes(8), length=None):
    """A file with this header (a dict, or raw bytes) and data, and optionally a forged
    header length."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


W = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


def test_crafted_file_is_valid(tmp_path):
    """The baseline the hostile variants below start from loads fine."""
    state, config = ckpt.load(craft(tmp_path / "ok", {"params/w": W, "__metadata__": metadata()}))
    assert state["params/w"].shape == (2,) and config == {}


@pytest.mark.parametrize(
    ("header", "data", "length", "match"),
    [
        # lengths and offsets
        ({"params/w": W}, bytes(8), 2**63, "header claims"),
        ({"params/w": W}, bytes(8), 2**40, "header claims"),
        ({"params/w": {**W, "data_offsets": [0, 4096]}}, bytes(8), None, "needs 8 bytes"),
        ({"params/w": {**W, "data_offsets": [8, 16]}}, bytes(8), None, "gap"),
        ({"params/w": {**W, "shape": [1024], "data_offsets": [0, 4096]}}, bytes(8), None, "trunc"),
        ({"params/w": {**W, "data_offsets": [-8, 0]}}, bytes(8), None, "data_offsets"),
        ({"params/w": {**W, "data_offsets": [False, 8]}}, bytes(8), None, "data_offsets"),
        ({"params/w": {**W, "data_offsets": [0, 8, 9]}}, bytes(8), None, "data_offsets"),
        ({"params/w": W}, bytes(16), None, "truncated or corrupt"),
        (
            {"params/w": W, "params/v": W},
            bytes(8),
            None,
            "overlaps",
        ),
        ({"params/w": {**W, "shape": [2**62, 2**62]}}, bytes(8), None, "needs"),
        ({"params/w": {**W, "shape": [-2, -1]}}, bytes(8), None, "non-negative"),
        ({"params/w": {**W, "shape": 2}}, bytes(8), None, "shape"),
        ({"params/w": {**W, "dtype": "F128"}}, bytes(8), None, "unsupported dtype"),
        ({"params/w": {**W, "extra": 1}}, bytes(8), None, "expected keys"),
        ({"params/w": 3}, bytes(8), None, "expected keys"),
        # not JSON, or not an object
        (b'{"params/w": ', bytes(8), None, "not valid JSON"),
        (b"{\xff\xfe}", bytes(8), None, "not valid JSON"),
        (b"[1, 2]", bytes(8), None, "JSON object"),
        (b"{" * 200_000 + b"}" * 200_000, b"", None, "not valid JSON"),
        (b'{"a": 1, "a": 2}', b"", None, "duplicate key"),
    ],
)
def test_hostile_headers_are_rejected(tmp_path, header, data, length, match):
    if isinstance(header, dict):
        header = {**header, "__metadata__": metadata()}
    assert_rejected(craft(tmp_path / "bad", header, data, length), match)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"format": "other"}, "not a HAX checkpoint"),
        ({"format_version": "2"}, "newer HAX"),
        ({"format_version": "one"}, "not a version number"),
        ({"config": "{not json"}, "metadata 'config' is not valid JSON"),
        ({"config": "[1, 2]"}, "not a dict"),
        ({"config": json.dumps({"dict": {"a": {"set": [1]}}})}, "not an encoded value"),
        ({"nodes": json.dumps({"": {"aux": 1}})}, "expected keys aux and apply"),
        ({"state": "{}"}, "exactly once"),
        (
            {
                "state": json.dumps(
                    {"params/w": {"leaf": "params/w"}, "params/v": {"leaf": "params/w"}}
                )
            },
            "exactly once",
        ),
        ({"state": json.dumps({"w": {"leaf": "params/w"}})}, "not a leaf name"),
        ({"state": json.dumps({"params/w": {"code": "import os"}})}, "not a pytree structure"),
        ({"state": json.dumps({"params/w": [[[{"leaf": "params/w"}]]] * 2})}, "exactly once"),
        ({"state": "[" * 100_000 + "]" * 100_000}, "not valid JSON|too deeply"),
        ({"leaves": json.dumps({"params/w": {"dtype": "int32"}})}, "the tensor holds float32"),
        ({"leaves": json.dumps({"params/w": {"dtype": "key<fry>", "impl": "x"}})}, "PRNG key"),
        ({"leaves": "{}"}, "exactly once"),
        ({"state": None}, "missing or not a string"),
    ],
)
def test_bad_metadata_is_rejected(tmp_path, overrides, match):
    meta = {k: v for k, v in metadata(**overrides).items() if v is not None}
    assert_rejected(craft(tmp_path / "bad", {"params/w": W, "__metadata__": meta}), match)


def test_plain_safetensors_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "plain.safetensors"
    safetensors.numpy.save_file({"w": np.ones(2, np.float32)}, path)
    assert_rejected(path, "not a HAX checkpoint")


def test_bad_array_data_is_rejected_at_load(tmp_path):
    bool_meta = metadata(leaves=json.dumps({"params/w": {"dtype": "bool"}}))
    header = {"params/w": {**W, "dtype": "BOOL", "data_offsets": [0, 2]}, "__metadata__": bool_meta}
    path = craft(tmp_path / "bool", header, bytes([1, 2]))
    assert_rejected(path, "bool data", header=False)
    key = {"dtype": "key<fry>", "impl": "no_such_impl", "shape": []}
    key_meta = metadata(leaves=json.dumps({"params/w": key}))
    header = {"params/w": {**W, "dtype": "U32"}, "__metadata__": key_meta}
    assert_rejected(craft(tmp_path / "key", header), "no_such_impl", header=False)


def test_header_size_limit(tmp_path, monkeypatch):
    path = craft(tmp_path / "m", {"params/w": W, "__metadata__": metadata()})
    monkeypatch.setattr(hax.checkpoint._format, "MAX_HEADER_BYTES", 64)
    assert_rejected(path, "more than the limit")


# ---------------------------------------------------------------- property-based

NAMES = st.text(alphabet="abcXYZ_.-0é", min_size=1, max_size=4)
HYP_DTYPES = ["float32", "bfloat16", "float16", "int32", "int8", "uint8", "uint32", "bool"]


@st.composite
def arrays(draw):
    dtype = jnp.dtype(draw(st.sampled_from(HYP_DTYPES)))
    shape = tuple(draw(st.lists(st.integers(0, 3), max_size=3)))
    return random_bits(dtype, shape, draw(st.integers(0, 2**16)))


pytrees = st.recursive(
    arrays() | st.none(),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(NAMES, inner, max_size=3)
    ),
    max_leaves=6,
)
aux_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3).map(tuple),
    max_leaves=5,
)


@st.composite
def structure_trees(draw, depth=0):
    children = {}
    if depth < 2:
        children = draw(st.dictionaries(NAMES, structure_trees(depth + 1), max_size=2))
    return {
        "params": draw(st.dictionaries(NAMES, pytrees, max_size=3)),
        "buffers": draw(st.dictionaries(NAMES, arrays(), max_size=2)),
        "aux": draw(st.dictionaries(NAMES, aux_values, max_size=3)),
        "apply": draw(st.sampled_from([apply_a, apply_b])),
        "submodules": children,
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(structure_trees(), st.dictionaries(NAMES, aux_values, max_size=3))
def test_random_trees_round_trip(tmp_path_factory, tree, config):
    path = tmp_path_factory.mktemp("hyp") / "m.safetensors"
    ckpt.save(path, tree, config)
    loaded, loaded_config = ckpt.load(path, like=tree)
    assert_bits_equal(loaded, tree)
    assert_trees_equal(loaded_config, config)
    state, _ = ckpt.load(path)
    assert_bits_equal(state, hax.bind_module(tree, {})[0])
    info = ckpt.read_info(path)
    for p, node in hax.named_nodes(tree):
        assert_trees_equal(info.nodes["/".join(p)].aux, node["aux"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4))
def test_corrupted_bytes_never_crash(tmp_path_factory, edits):
    """Any byte edits of a valid file load, or fail with CheckpointFormatError."""
    directory = tmp_path_factory.mktemp("fuzz")
    path = directory / "m.safetensors"
    tree = {**hax.empty_tree(apply_a), "params": {"w": jnp.ones(3), "b": jnp.ones((), bool)}}
    ckpt.save(path, tree, {"a": (1, 2)})
    data = bytearray(path.read_bytes())
    for position, value in edits:
        data[position % len(data)] = value
    path.write_bytes(bytes(data))
    for like in (None, tree):
        try:
            ckpt.load(path, like=like, strict=False)
        except CheckpointFormatError:
            pass
