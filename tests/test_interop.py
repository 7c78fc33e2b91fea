"""Tests for `hax.interop`: `from_torch` (loading a state_dict into a HAX tree) and
`convert` (building the HAX module of a torch model), with PyTorch as the reference."""

import collections
import functools
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest
import torch
from torch import nn as tnn

import hax
from hax import nn
from hax.interop import (
    ConversionError,
    StateDictMismatchError,
    convert,
    from_torch,
    named_sequential_apply,
    register_converter,
    to_torch,
)

# XLA's CPU backend compiles about twice as fast without LLVM optimisations.
FAST_COMPILE = {"xla_backend_optimization_level": 0}
INT_DTYPE = jnp.int64 if jax.config.jax_enable_x64 else jnp.int32


def randomize(module, seed=0):
    """Non-trivial values in every tensor (positive running variances, a count), so that
    a tensor loaded into the wrong place changes the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict(keep_vars=True).items():
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif name.endswith("num_batches_tracked"):
                t.fill_(7)
            elif t.is_floating_point():
                t.copy_(0.5 * torch.randn(t.shape, generator=gen))
    return module


def normal(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def torch_outputs(module, inputs):
    with torch.no_grad():
        out = module(*(torch.from_numpy(np.asarray(x)) for x in inputs))
    return jax.tree.map(lambda t: t.numpy(), out, is_leaf=lambda t: isinstance(t, torch.Tensor))


def hax_outputs(tree, config, inputs):
    """One jitted program per call: `apply(tree, config, *inputs)` -> (new tree, out)."""
    state, apply = hax.bind_module(tree, config)
    new_state, out = jax.jit(apply, compiler_options=FAST_COMPILE)(state, *inputs)
    return hax.unbind_module(new_state, apply)[0], out


def assert_outputs_close(ours, theirs, atol=1e-5, where=""):
    leaves, treedef = jax.tree.flatten(theirs)
    assert jax.tree.structure(ours) == treedef, where
    for a, b in zip(jax.tree.leaves(ours), leaves, strict=True):
        assert a.shape == b.shape, where
        scale = max(1.0, float(np.abs(b).max())) if b.size else 1.0
        np.testing.assert_allclose(np.asarray(a), b, atol=atol * scale, rtol=1e-5, err_msg=where)


def assert_holds_torch_tensors(tree, state_dict):
    """Every leaf named by the state_dict holds that tensor's values, bit for bit."""
    leaves = dict(hax.named_leaves(tree))
    for key, value in state_dict.items():
        node, _, name = key.rpartition(".")
        prefix = node.replace(".", "/") + "/" if node else ""
        found = [
            leaves[p] for p in (f"{prefix}params/{name}", f"{prefix}buffers/{name}") if p in leaves
        ]
        assert len(found) == 1, key
        np.testing.assert_array_equal(np.asarray(found[0]), value.numpy(), err_msg=key)


# ---------------------------------------------------------------- from_torch


class TorchNet(tnn.Module):
    """A custom module with nested Sequentials and its own param and buffer."""

    def __init__(self):
        super().__init__()
        self.stem = tnn.Sequential(tnn.Conv2d(3, 4, 3), tnn.BatchNorm2d(4), tnn.ReLU())
        self.head = tnn.Sequential(
            tnn.Sequential(tnn.Linear(4, 5), tnn.Dropout()), tnn.Linear(5, 2)
        )
        self.scale = tnn.Parameter(torch.ones(2))
        self.register_buffer("offset", torch.zeros(2))


def build_hax_net():
    """The HAX tree of `TorchNet`, built by hand (from_torch is tested without convert)."""
    with hax.rng_context(0):
        stem, _ = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        head, _ = nn.Sequential(nn.Sequential(nn.Linear(4, 5), nn.Dropout()), nn.Linear(5, 2))
    tree = hax.empty_tree()
    tree["params"] = {"scale": jnp.zeros(2)}
    tree["buffers"] = {"offset": jnp.ones(2)}
    tree["submodules"] = {"stem": stem, "head": head}
    return hax.bind_module(tree, {})


@functools.cache
def hax_net_state():
    """`build_hax_net` in one compile, not one per random draw (the bound apply keeps the
    dicts' order, which `jax.jit` outputs sort)."""
    applies = []

    def build():
        state, apply = build_hax_net()
        applies.append(apply)
        return state

    return jax.jit(build, compiler_options=FAST_COMPILE)(), applies[0]


def hax_net():
    """A fresh copy of the HAX tree of `TorchNet` (new dicts, shared arrays)."""
    return hax.unbind_module(*hax_net_state())[0]


def test_from_torch_fills_nested_and_custom_modules():
    model = randomize(TorchNet())
    like = hax_net()
    before = dict(hax.named_leaves(like))
    tree = from_torch(model, like)
    assert_holds_torch_tensors(tree, model.state_dict())
    leaves = dict(hax.named_leaves(tree))
    assert set(leaves) == set(before)
    # num_batches_tracked: torch's int64 becomes the dtype of `like`
    assert leaves["stem/1/buffers/num_batches_tracked"].dtype == INT_DTYPE
    # the Dropout key has no torch counterpart: kept from `like`
    assert leaves["head/0/1/buffers/rng"] is before["head/0/1/buffers/rng"]
    # `like` itself is unchanged, and the result is a valid tree with like's structure
    for name, value in hax.named_leaves(like):
        assert value is before[name]
    hax.validate(tree)
    assert list(tree["submodules"]) == ["stem", "head"]
    assert list(tree["submodules"]["stem"]["submodules"]["0"]["params"]) == ["weight", "bias"]
    assert tree["submodules"]["stem"]["apply"] is nn.sequential_apply
    # a state_dict mapping works the same as the module
    again = from_torch(model.state_dict(), like)
    for name, value in hax.named_leaves(again, ("params",)):
        np.testing.assert_array_equal(np.asarray(value), np.asarray(leaves[name]))


def test_from_torch_reports_every_mismatch_in_one_error():
    model = TorchNet()
    state = dict(model.state_dict())
    state["head.1.weight"] = torch.zeros(2, 6)  # shape
    del state["stem.0.bias"]  # missing from torch
    state["stem.3.weight"] = torch.zeros(3)  # no HAX node
    state["stem.0.extra"] = torch.zeros(1)  # a HAX node, but no such leaf
    state["stem.1.num_batches_tracked"] = torch.tensor(1.5)  # float into an int leaf
    state["head.0.1.rng"] = torch.zeros(2)  # a PRNG key buffer
    state["offset"] = "not a tensor"
    with pytest.raises(StateDictMismatchError) as info:
        from_torch(state, hax_net())
    err = info.value
    assert isinstance(err, ValueError)
    found = {(m.hax_path, m.torch_key): (m.hax_shape, m.torch_shape) for m in err.mismatches}
    assert found == {
        ("head/1/params/weight", "head.1.weight"): ((2, 5), (2, 6)),
        ("stem/0/params/bias", "stem.0.bias"): ((4,), None),
        (None, "stem.3.weight"): (None, (3,)),
        (None, "stem.0.extra"): (None, (1,)),
        ("stem/1/buffers/num_batches_tracked", "stem.1.num_batches_tracked"): ((), ()),
        ("head/0/1/buffers/rng", "head.0.1.rng"): ((), (2,)),
        ("buffers/offset", "offset"): ((2,), None),
    }
    message = str(err)
    assert message.startswith("7 mismatches between the torch state_dict and the HAX tree:")
    for line in (
        "head/1/params/weight <- torch 'head.1.weight': shapes differ (HAX shape (2, 5), "
        "torch shape (2, 6))",
        "stem/0/params/bias <- torch 'stem.0.bias': missing from the torch state_dict "
        "(HAX shape (4,))",
        "torch 'stem.3.weight' (shape (3,)): no HAX leaf has this name; looked for "
        "stem/3/params/weight and stem/3/buffers/weight",
        "float32 tensor would be truncated to the HAX leaf's int32",
        "a PRNG key buffer is HAX's own",
        "buffers/offset <- torch 'offset': the torch value is str, not a tensor",
    ):
        assert line.replace("int32", str(np.dtype(INT_DTYPE))) in message
    assert "To fix:" in message and "strict=False" in message and "convert" in message


def test_from_torch_not_strict_skips_missing_and_unexpected_keys_only():
    model = randomize(TorchNet())
    state = dict(model.state_dict())
    del state["stem.0.bias"]
    state["extra.weight"] = torch.zeros(3)
    like = hax_net()
    tree = from_torch(state, like, strict=False)
    del state["extra.weight"]
    assert_holds_torch_tensors(tree, state)
    bias = hax.get_subtree(tree, "stem/0")["params"]["bias"]
    assert bias is hax.get_subtree(like, "stem/0")["params"]["bias"]  # kept from like
    state["head.1.bias"] = torch.zeros(3)
    with pytest.raises(StateDictMismatchError) as info:
        from_torch(state, like, strict=False)
    assert [m.torch_key for m in info.value.mismatches] == ["head.1.bias"]


def test_from_torch_casts_to_the_dtypes_of_like():
    values = np.asarray([1.0, -2.5, 1 / 3, 1e-3], np.float64)
    like = hax.empty_tree()
    like["params"] = {
        "f32": jnp.zeros(4, jnp.float32),
        "bf16": jnp.zeros(4, jnp.bfloat16),
        "from_bf16": jnp.zeros(4, jnp.float32),
        "same_bf16": jnp.zeros(4, jnp.bfloat16),
        "f16": jnp.zeros(4, jnp.float16),
        "nested": [jnp.zeros(4, jnp.float32)],  # a pytree in a param: torch key "nested.0"
    }
    like["buffers"] = {"count": jnp.zeros((), INT_DTYPE)}
    bf16 = torch.tensor(values, dtype=torch.bfloat16)
    state = {
        "f32": torch.tensor(values),  # float64
        "bf16": torch.tensor(values, dtype=torch.float32),
        "from_bf16": bf16,
        "same_bf16": bf16,
        "f16": torch.tensor(values, dtype=torch.float32),
        "count": torch.tensor(5),  # int64
        "nested.0": torch.tensor(values),
    }
    tree = from_torch(state, like)
    for name, value in hax.named_leaves(tree):
        assert value.dtype == dict(hax.named_leaves(like))[name].dtype, name
    p = tree["params"]
    np.testing.assert_array_equal(p["f32"], values.astype(np.float32))
    np.testing.assert_array_equal(p["nested"][0], values.astype(np.float32))
    np.testing.assert_array_equal(p["bf16"], values.astype(np.float32).astype(ml_dtypes.bfloat16))
    np.testing.assert_array_equal(p["f16"], values.astype(np.float16))
    # bfloat16 tensors keep their exact bits (NumPy has no bfloat16: read through int16)
    bits = bf16.view(torch.int16).numpy()
    np.testing.assert_array_equal(np.asarray(p["same_bf16"]).view(np.int16), bits)
    np.testing.assert_array_equal(p["from_bf16"], bf16.float().numpy())
    assert int(tree["buffers"]["count"]) == 5


def test_from_torch_copies_instead_of_aliasing_torch_memory():
    model = randomize(TorchNet())
    model.head[1].to(torch.bfloat16)
    like = hax_net()
    like["submodules"]["head"]["submodules"]["1"]["params"] = {
        "weight": jnp.zeros((2, 5), jnp.bfloat16),
        "bias": jnp.zeros(2, jnp.bfloat16),
    }
    tree = from_torch(model, like)
    expected = {
        name: np.array(value)
        for name, value in hax.named_leaves(tree)
        if not jnp.issubdtype(value.dtype, jax.dtypes.prng_key)
    }
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model.stem[1].running_mean.add_(1.0)
    for name, value in hax.named_leaves(tree):
        if name in expected:
            np.testing.assert_array_equal(np.asarray(value), expected[name], err_msg=name)


@pytest.mark.wrong_types
def test_from_torch_rejects_a_module_pair_and_other_objects():
    like = hax_net()
    with pytest.raises(TypeError, match=r"module\[0\]"):
        from_torch(TorchNet(), (like, {}))
    with pytest.raises(TypeError, match=r"torch\.nn\.Module, a state_dict"):
        from_torch([torch.zeros(2)], like)


# ---------------------------------------------------------------- to_torch


def test_to_torch_gives_a_state_dict_torch_loads_strictly():
    tree = from_torch(randomize(TorchNet()), hax_net())
    tree = {**tree, "params": {"scale": jnp.asarray([3.0, -4.0])}}  # a HAX-side change
    state = to_torch(tree)
    fresh = TorchNet()
    fresh.load_state_dict(state, strict=True)  # every key, no extra: torch checks
    leaves = dict(hax.named_leaves(tree))
    for key, value in fresh.state_dict().items():
        node, _, name = key.rpartition(".")
        where = node.replace(".", "/") + "/" if node else ""
        ours = leaves.get(f"{where}params/{name}", leaves.get(f"{where}buffers/{name}"))
        np.testing.assert_array_equal(value.numpy(), np.asarray(ours), err_msg=key)
    assert "head.0.1.rng" not in state  # Dropout's key is HAX's own


def test_a_model_trained_in_hax_runs_identically_in_torch():
    model = randomize(
        tnn.Sequential(
            tnn.Conv2d(3, 4, 3), tnn.BatchNorm2d(4), tnn.ReLU(), tnn.Flatten(), tnn.Linear(64, 3)
        )
    )
    tree, config = convert(model)
    x = jnp.asarray(normal(8, 3, 6, 6, seed=1))
    y = jnp.asarray(np.arange(8) % 3)

    def loss_fn(tree, batch):
        new_tree, logits = hax.apply_tree(tree, config, batch[0])
        return hax.nn.functional.cross_entropy(logits, batch[1]), new_tree

    optimizer = optax.adam(1e-2)
    step = hax.jit(hax.optim.train_step(loss_fn, optimizer))
    opt_state = optimizer.init(hax.optim.params_of(tree))
    for _ in range(3):
        tree, opt_state, _ = step(tree, opt_state, (x, y))
    _, ours = hax.apply_tree(tree, {**config, "train_mode": False}, x)

    model.load_state_dict(to_torch(tree), strict=True)
    model.eval()
    assert int(model[1].num_batches_tracked) == 7 + 3  # randomize set 7
    with torch.no_grad():
        theirs = model(torch.from_numpy(np.array(x))).numpy()
    np.testing.assert_allclose(np.asarray(ours), theirs, rtol=1e-5, atol=1e-5)


def test_to_torch_keeps_bfloat16_bits_and_copies():
    tree, _ = nn.Linear(3, 2, rng=0, dtype=jnp.bfloat16)
    state = to_torch(tree)
    weight = np.asarray(tree["params"]["weight"])
    assert state["weight"].dtype == torch.bfloat16
    np.testing.assert_array_equal(state["weight"].view(torch.int16).numpy(), weight.view(np.int16))
    state["weight"].add_(1.0)  # torch's copy, not JAX's memory
    np.testing.assert_array_equal(np.asarray(tree["params"]["weight"]), weight)


def test_to_torch_reports_leaves_that_share_a_torch_key():
    node = hax.empty_tree()
    node["params"], node["buffers"] = {"w": jnp.zeros(2)}, {"w": jnp.ones(2)}
    tree = hax.empty_tree()
    tree["submodules"] = {"a": node}
    with pytest.raises(ValueError, match=r"a/buffers/w and a/params/w both become 'a\.w'"):
        to_torch(tree)


def test_import_without_torch_and_the_install_hint():
    code = """
import sys
sys.modules["torch"] = None  # as if PyTorch were not installed
import hax, hax.interop
tree, _ = hax.nn.Identity()
assert hax.interop.from_torch({}, tree) is not None  # NumPy (or no) values: no torch needed
for fn, args in (
    (hax.interop.from_torch, ({"weight": [1.0]}, tree)),
    (hax.interop.convert, (None,)),
    (hax.interop.to_torch, (tree,)),
):
    try:
        fn(*args)
    except ImportError as err:
        print(err)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.splitlines()
    assert out == [
        "hax.interop.from_torch needs PyTorch, which is not installed: pip install torch",
        "hax.interop.convert needs PyTorch, which is not installed: pip install torch",
        "hax.interop.to_torch needs PyTorch, which is not installed: pip install torch",
    ]


# ---------------------------------------------------------------- convert: each layer

# (torch module, inputs): one case per layer and argument that changes the computation.
# Shapes are shared between cases where possible (each new shape costs a compile).
X2 = normal(2, 4, 6, 7)
X1 = normal(2, 4, 9)
LAYER_CASES = {
    "Linear": (lambda: tnn.Linear(7, 3), [X2]),
    "Linear/no-bias": (lambda: tnn.Linear(7, 3, bias=False), [X2]),
    "Bilinear": (lambda: tnn.Bilinear(7, 6, 3), [X2, normal(2, 4, 6, 6)]),
    "Identity": (lambda: tnn.Identity(3, unused=True), [X2]),
    "Flatten": (lambda: tnn.Flatten(1, 2), [X2]),
    "Conv1d": (
        lambda: tnn.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2),
        [X1],
    ),
    "Conv1d/circular": (lambda: tnn.Conv1d(4, 2, 4, padding="same", padding_mode="circular"), [X1]),
    "Conv2d": (lambda: tnn.Conv2d(4, 6, (2, 3), stride=(2, 1), padding=(1, 0), bias=False), [X2]),
    "Conv2d/reflect": (
        lambda: tnn.Conv2d(
            4, 4, 3, padding="same", dilation=(1, 2), padding_mode="reflect", groups=4
        ),
        [X2],
    ),
    "Conv3d": (lambda: tnn.Conv3d(2, 3, 2, padding=(0, 1, 1)), [normal(1, 2, 3, 4, 4)]),
    "ConvTranspose2d": (
        lambda: tnn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
        [X2],
    ),
    "MaxPool2d": (lambda: tnn.MaxPool2d(3, 2, 1, ceil_mode=True), [X2]),
    "MaxPool2d/indices": (
        lambda: tnn.MaxPool2d((2, 3), dilation=(1, 2), return_indices=True),
        [X2],
    ),
    "AvgPool2d": (lambda: tnn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False), [X2]),
    "AvgPool2d/divisor": (lambda: tnn.AvgPool2d(2, divisor_override=3), [X2]),
    "AdaptiveAvgPool2d": (lambda: tnn.AdaptiveAvgPool2d((4, None)), [X2]),
    "BatchNorm1d": (lambda: tnn.BatchNorm1d(4, eps=0.1, momentum=None), [X1]),
    "BatchNorm2d": (lambda: tnn.BatchNorm2d(4, eps=0.1), [X2]),
    "BatchNorm2d/no-affine": (lambda: tnn.BatchNorm2d(4, affine=False), [X2]),
    "BatchNorm2d/no-bias": (lambda: tnn.BatchNorm2d(4, bias=False), [X2]),
    "BatchNorm2d/batch-stats": (lambda: tnn.BatchNorm2d(4, track_running_stats=False), [X2]),
    "LayerNorm": (lambda: tnn.LayerNorm((6, 7), eps=0.1), [X2]),
    "LayerNorm/no-affine": (lambda: tnn.LayerNorm(7, elementwise_affine=False), [X2]),
    "LayerNorm/no-bias": (lambda: tnn.LayerNorm(7, bias=False), [X2]),
    "GroupNorm": (lambda: tnn.GroupNorm(2, 4, eps=0.1), [X2]),
    "GroupNorm/no-affine": (lambda: tnn.GroupNorm(2, 4, affine=False), [X2]),
    "RMSNorm": (lambda: tnn.RMSNorm((6, 7), eps=0.1), [X2]),
    "RMSNorm/no-affine": (lambda: tnn.RMSNorm(7, elementwise_affine=False), [X2]),
    "Embedding": (
        lambda: tnn.Embedding(10, 3, padding_idx=-2, max_norm=1.0, norm_type=1.0),
        [np.array([[1, 8, 3], [8, 0, 9]])],
    ),
    "Dropout": (lambda: tnn.Dropout(0.3), [X2]),
    "ReLU": (tnn.ReLU, [X2]),
    "GELU": (tnn.GELU, [X2]),
    "GELU/tanh": (lambda: tnn.GELU(approximate="tanh"), [X2]),
    "SiLU": (tnn.SiLU, [X2]),
    "Tanh": (tnn.Tanh, [X2]),
    "Sigmoid": (tnn.Sigmoid, [X2]),
    "Softmax": (lambda: tnn.Softmax(dim=1), [X2]),
    "LogSoftmax": (lambda: tnn.LogSoftmax(dim=-2), [X2]),
}
X_SEQ = normal(2, 5, 8)
TRANSFORMER_CASES = {
    "MultiheadAttention": (
        lambda: tnn.MultiheadAttention(
            8, 2, bias=False, add_bias_kv=True, add_zero_attn=True, kdim=6, vdim=5, batch_first=True
        ),
        [X_SEQ, normal(2, 4, 6), normal(2, 4, 5)],
    ),
    "TransformerEncoderLayer": (
        lambda: tnn.TransformerEncoderLayer(
            8, 2, 16, activation="gelu", layer_norm_eps=0.1, batch_first=True, norm_first=True
        ),
        [X_SEQ],
    ),
    "TransformerEncoder": (
        lambda: tnn.TransformerEncoder(
            tnn.TransformerEncoderLayer(8, 2, 16, bias=False),
            2,
            norm=tnn.LayerNorm(8),
            enable_nested_tensor=False,
        ),
        [X_SEQ],
    ),
}
TRANSFORMERS = [
    pytest.param(
        *case,
        id=name,
        marks=pytest.mark.skipif(not hasattr(nn, name), reason=f"hax.nn.{name} is not there yet"),
    )
    for name, case in TRANSFORMER_CASES.items()
]


def test_convert_each_layer_matches_torch():
    """Every case converted, then run in one jitted program (one compile, not forty)."""
    torch.manual_seed(0)
    cases = []
    for name, (make, inputs) in LAYER_CASES.items():
        layer = randomize(make()).eval()
        tree, config = convert(layer)
        assert config == ({"train_mode": False} if "train_mode" in config else {}), name
        assert_holds_torch_tensors(tree, layer.state_dict())
        cases.append((name, layer, *hax.bind_module(tree, config), inputs))

    def run_all(states, inputs):
        return [
            apply(state, *x)[1]
            for (*_, apply, _), state, x in zip(cases, states, inputs, strict=True)
        ]

    outs = jax.jit(run_all, compiler_options=FAST_COMPILE)(
        [c[2] for c in cases], [[jnp.asarray(x) for x in c[4]] for c in cases]
    )
    for (name, layer, _, _, inputs), ours in zip(cases, outs, strict=True):
        # torch runs after the check of the tensors: Embedding's max_norm renormalises
        # its weight in place
        assert_outputs_close(ours, torch_outputs(layer, inputs), where=name)


@pytest.mark.parametrize("make, inputs", TRANSFORMERS)
def test_convert_attention_and_transformer_match_torch(make, inputs):
    torch.manual_seed(0)
    layer = randomize(make()).eval()
    tree, config = convert(layer)
    assert config == {"train_mode": False}
    assert_holds_torch_tensors(tree, layer.state_dict())
    _, ours = hax_outputs(tree, config, [jnp.asarray(x) for x in inputs])
    assert_outputs_close(ours, torch_outputs(layer, inputs))


@pytest.mark.skipif(not hasattr(nn, "TransformerEncoder"), reason="not in hax.nn yet")
def test_convert_transformer_encoder_needs_identical_layers():
    """HAX's TransformerEncoder repeats one layer; torch layers that differ in more than
    their weights cannot be converted that way."""
    model = tnn.TransformerEncoder(
        tnn.TransformerEncoderLayer(8, 2, 16), 3, enable_nested_tensor=False
    )
    model.layers[2].norm1.eps = 0.1
    with pytest.raises(ConversionError, match="layers/2 differs from layers/0") as info:
        convert(model)
    assert [where for where, _ in info.value.failed] == [
        "<root> (torch.nn.modules.transformer.TransformerEncoder)"
    ]


def test_convert_reads_every_constructor_argument():
    """Arguments that no eval-mode output shows land in aux, as the constructor puts them."""
    tree, _ = convert(tnn.Conv2d(4, 6, (2, 3), stride=(2, 1), padding=(1, 0), bias=False))
    with hax.rng_context(0):
        expected, _ = nn.Conv2d(4, 6, (2, 3), stride=(2, 1), padding=(1, 0), bias=False)
    assert tree["aux"] == expected["aux"]
    tree, _ = convert(tnn.Embedding(10, 3, padding_idx=-2, scale_grad_by_freq=True, sparse=True))
    assert tree["aux"]["padding_idx"] == 8 and tree["aux"]["scale_grad_by_freq"]
    assert tree["aux"]["sparse"]
    tree, _ = convert(tnn.ReLU(inplace=True))
    assert tree["aux"] == {"inplace": True}


@pytest.mark.parametrize("momentum", [0.3, None])
def test_convert_batch_norm_trains_like_torch(momentum):
    """In train mode the converted layer updates its running stats as torch does (this
    checks `momentum`, which eval outputs do not show)."""
    layer = randomize(tnn.BatchNorm2d(4, momentum=momentum))
    tree, config = convert(layer)
    assert config == {"train_mode": True}
    new_tree, ours = hax_outputs(tree, config, [jnp.asarray(X2)])
    assert_outputs_close(ours, torch_outputs(layer, [X2]))
    for name, value in layer.state_dict().items():
        np.testing.assert_allclose(
            np.asarray(new_tree["buffers"].get(name, new_tree["params"].get(name))),
            value.numpy(),
            rtol=1e-5,
            atol=1e-6,
            err_msg=name,
        )


def test_convert_keeps_bfloat16():
    layer = randomize(tnn.Linear(7, 3)).to(torch.bfloat16)
    tree, _ = convert(layer)
    assert tree["params"]["weight"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(
        np.asarray(tree["params"]["weight"]).view(np.int16),
        layer.weight.detach().view(torch.int16).numpy(),
    )


# ---------------------------------------------------------------- convert: models


def test_convert_nested_sequentials_with_torch_names():
    model = randomize(
        tnn.Sequential(
            collections.OrderedDict(
                conv=tnn.Conv2d(4, 3, 3),
                body=tnn.Sequential(tnn.Flatten(), tnn.Sequential(tnn.Linear(60, 5), tnn.Tanh())),
                drop=tnn.Dropout(0.5),
                out=tnn.Linear(5, 2),
            )
        )
    ).eval()
    tree, config = convert(model)
    assert config == {"train_mode": False}
    assert list(tree["submodules"]) == ["conv", "body", "drop", "out"]
    assert tree["apply"] is named_sequential_apply
    assert tree["aux"] == {"order": ("conv", "body", "drop", "out")}
    body = tree["submodules"]["body"]
    assert body["apply"] is nn.sequential_apply and body["aux"] == {}
    # the order comes from aux, which must name the submodules
    broken = {**tree, "submodules": {k: v for k, v in tree["submodules"].items() if k != "drop"}}
    with pytest.raises(ValueError, match=r"set aux\['order'\] to match"):
        named_sequential_apply(broken, config, jnp.asarray(X2))
    assert body["submodules"]["1"]["submodules"]["1"]["apply"] is nn.tanh_apply
    assert_holds_torch_tensors(tree, model.state_dict())
    _, ours = hax_outputs(tree, config, [jnp.asarray(X2)])
    assert_outputs_close(ours, torch_outputs(model, [X2]))


def test_convert_train_mode_follows_the_torch_model():
    model = tnn.Sequential(tnn.Linear(3, 3), tnn.Sequential(tnn.Dropout(0.5), tnn.Dropout(0.5)))
    assert convert(model.train())[1] == {"train_mode": True}
    tree, config = convert(model.eval())
    assert config == {"train_mode": False}
    assert convert(tnn.Sequential(tnn.Linear(3, 3), tnn.ReLU()))[1] == {}
    # every PRNG key buffer gets its own key, drawn from `rng`
    keys = [v for _, v in hax.named_leaves(tree, ("buffers",))]
    data = [jax.random.key_data(k) for k in keys]
    assert len(keys) == 2 and not np.array_equal(data[0], data[1])
    same = [jax.random.key_data(v) for _, v in hax.named_leaves(convert(model)[0], ("buffers",))]
    other = [
        jax.random.key_data(v) for _, v in hax.named_leaves(convert(model, rng=1)[0], ("buffers",))
    ]
    np.testing.assert_array_equal(same, data)
    assert not np.array_equal(other, data)


class Residual(tnn.Module):
    """A custom module: children in a ModuleList, its own param, persistent and
    non-persistent buffers."""

    def __init__(self):
        super().__init__()
        self.blocks = tnn.ModuleList([tnn.Linear(4, 4), tnn.LayerNorm(4)])
        self.gate = tnn.Parameter(torch.ones(4))
        self.register_buffer("shift", torch.zeros(4))
        self.register_buffer("table", torch.arange(4.0), persistent=False)

    def forward(self, x):
        y = self.blocks[1](self.blocks[0](x))
        return x + self.gate * y + self.shift + self.table


@hax.organized_apply
def residual_apply(org, x):
    blocks = org.blocks.tree["submodules"]  # a ModuleList: run its children one by one
    _, y = hax.apply_tree(blocks["0"], org.global_config, x)
    _, y = hax.apply_tree(blocks["1"], org.global_config, y)
    return x + org.gate * y + org.shift + org.table


def test_convert_custom_module_with_applies():
    model = tnn.Sequential(randomize(Residual()), tnn.ReLU(), Residual()).eval()
    tree, config = convert(model, applies={Residual: residual_apply})
    node = tree["submodules"]["0"]
    assert node["apply"] is residual_apply
    assert list(node["params"]) == ["gate"] and list(node["buffers"]) == ["shift", "table"]
    np.testing.assert_array_equal(node["buffers"]["table"], np.arange(4.0))
    assert node["submodules"]["blocks"]["apply"] is hax.missing_apply
    assert list(node["submodules"]["blocks"]["submodules"]) == ["0", "1"]
    x = normal(3, 4)
    _, ours = hax_outputs(tree, config, [jnp.asarray(x)])
    assert_outputs_close(ours, torch_outputs(model, [x]))


class Unknown(tnn.Module):
    def __init__(self):
        super().__init__()
        self.inner = tnn.Sequential(tnn.Linear(2, 2), Other())


class Other(tnn.Module):
    pass


def test_convert_reports_every_unknown_class_and_failure_in_one_error():
    model = tnn.Sequential(
        Unknown(), tnn.ModuleList([Other(), tnn.Softmax()]), tnn.Softmax(dim=0), Unknown()
    )
    with pytest.raises(ConversionError) as info:
        convert(model)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.unknown == [
        ("0", Unknown),
        ("0/inner/1", Other),
        ("1/0", Other),
        ("3", Unknown),
        ("3/inner/1", Other),
    ]
    assert [where for where, _ in err.failed] == ["1/1 (torch.nn.modules.activation.Softmax)"]
    message = str(err)
    assert "Softmax: dim is required" in message
    assert f"{__name__}.Unknown x2 at 0, 3\n" in message
    assert f"{__name__}.Other x3 at 0/inner/1, 1/0, 3/inner/1\n" in message
    assert "applies={Unknown: unknown_apply, Other: other_apply}" in message
    assert "register_converter" in message
    # with applies for both classes only the failing Softmax is left
    with pytest.raises(ConversionError) as info:
        convert(model, applies={Unknown: hax.missing_apply, Other: hax.missing_apply})
    assert info.value.unknown == [] and len(info.value.failed) == 1
    with pytest.raises(TypeError, match="from_torch"):
        convert(model.state_dict())


class Scale(tnn.Module):
    def __init__(self, n):
        super().__init__()
        self.weight = tnn.Parameter(torch.ones(n))

    def forward(self, x):
        return x * self.weight


def scale_apply(tree, config, x):
    return tree, x * tree["params"]["weight"]


def test_register_converter():
    def convert_scale(module, convert_child):
        tree = hax.empty_tree(scale_apply)
        tree["params"] = {"weight": jnp.ones(module.weight.shape[0])}
        tree["aux"] = {"n": module.weight.shape[0]}
        return tree, {}

    register_converter(Scale, convert_scale)
    model = randomize(tnn.Sequential(tnn.Linear(3, 4), Scale(4)))
    tree, config = convert(model)
    assert tree["submodules"]["1"]["aux"] == {"n": 4}
    x = normal(2, 3)
    _, ours = hax_outputs(tree, config, [jnp.asarray(x)])
    assert_outputs_close(ours, torch_outputs(model, [x]))
    with pytest.raises(ValueError, match="not a dotted class path"):
        register_converter("Scale", convert_scale)


@pytest.mark.wrong_types
def test_register_converter_refuses_what_is_not_a_class():
    with pytest.raises(TypeError, match="expected a class or a dotted class path"):
        register_converter(3, lambda module, convert_child: (hax.empty_tree(scale_apply), {}))


# ---------------------------------------------------------------- a ResNet-18-style model


class BasicBlock(tnn.Module):
    """torchvision's BasicBlock."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(cout)
        self.relu = tnn.ReLU(inplace=True)
        self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = tnn.Sequential(
                tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout)
            )

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet(tnn.Module):
    """torchvision's ResNet-18 layout ([2, 2, 2, 2] BasicBlocks), narrower."""

    def __init__(self, widths=(4, 8, 8, 16), num_classes=5):
        super().__init__()
        self.conv1 = tnn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = tnn.BatchNorm2d(widths[0])
        self.relu = tnn.ReLU(inplace=True)
        self.maxpool = tnn.MaxPool2d(3, 2, 1)
        cin = widths[0]
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(cin, width, stride), BasicBlock(width, width, 1)]
            setattr(self, f"layer{i + 1}", tnn.Sequential(*blocks))
            cin = width
        self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
        self.fc = tnn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@hax.organized_apply
def basic_block_apply(org, x):
    out = org.relu(org.bn1(org.conv1(x)))
    out = org.bn2(org.conv2(out))
    # as the torch forward reads it: `downsample = None` is a plain attribute, in aux
    identity = x if org.downsample is None else org.downsample(x)
    return org.relu(out + identity)


@hax.organized_apply
def resnet_apply(org, x):
    x = org.maxpool(org.relu(org.bn1(org.conv1(x))))
    x = org.layer4(org.layer3(org.layer2(org.layer1(x))))
    return org.fc(org.avgpool(x).reshape(x.shape[0], -1))


@pytest.mark.parametrize("train", [False, True])
def test_convert_resnet18_style_model(train):
    model = randomize(ResNet()).train(train)
    tree, config = convert(model, applies={BasicBlock: basic_block_apply, ResNet: resnet_apply})
    assert config == {"train_mode": train}
    assert "downsample" in hax.get_subtree(tree, "layer2/0")["submodules"]
    assert "downsample" not in hax.get_subtree(tree, "layer2/1")["submodules"]
    x = normal(2, 3, 32, 32)
    new_tree, ours = hax_outputs(tree, config, [jnp.asarray(x)])
    assert_outputs_close(ours, torch_outputs(model, [x]), atol=1e-4)
    # in training, the running statistics move as torch's do
    for name, value in hax.named_leaves(new_tree, ("buffers",)):
        torch_value = model.state_dict()[name.replace("/buffers/", ".").replace("/", ".")]
        np.testing.assert_allclose(
            np.asarray(value), torch_value.numpy(), rtol=1e-4, atol=1e-5, err_msg=name
        )
