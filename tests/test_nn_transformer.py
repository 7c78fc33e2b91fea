"""Tests for `TransformerEncoderLayer` and `TransformerEncoder`, with PyTorch as the
reference.

Speed: the parity cases run as ONE jitted program (XLA's compile time is largely a
fixed cost per program), and layers whose params are replaced by PyTorch's are built
under `jax.eval_shape` (their random init would compile once per param shape).
"""

import itertools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import hax
from hax.nn import (
    LayerNorm,
    TransformerEncoder,
    TransformerEncoderLayer,
    transformer_encoder_apply,
    transformer_encoder_layer_apply,
)

# XLA's CPU backend compiles about twice as fast without LLVM optimisations; the
# results are the same to the tolerances used here.
FAST_COMPILE = {"xla_backend_optimization_level": 0}

D, NHEAD, FF, L, N = 8, 2, 16, 5, 3  # shared by every case: one random-init compile each
EVAL = {"train_mode": False}


def torch_state(torch_module):
    return {k: jnp.asarray(v.detach().numpy().copy()) for k, v in torch_module.state_dict().items()}


def torch_name(leaf_name):
    """A HAX leaf name as PyTorch's `state_dict` key: `"a/b/params/w"` -> `"a.b.w"`."""
    return ".".join(part for part in leaf_name.split("/") if part != "params")


def with_params(tree, flat):
    """`tree` with its params replaced from `flat`, keyed by PyTorch's `state_dict`
    names (`"layers.0.self_attn.in_proj_weight"` is the param `in_proj_weight` of the
    node `layers/0/self_attn`)."""
    flat = dict(flat)

    def fill(node, path):
        prefix = "".join(f"{name}." for name in path)
        params = {}
        for name, old in node["params"].items():
            new = flat.pop(prefix + name)
            assert new.shape == old.shape, prefix + name  # no reshaping needed
            params[name] = new
        return {**node, "params": params}

    new_tree = hax.structure_tree_map(fill, tree)
    assert not flat, f"torch entries without a HAX param: {sorted(flat)}"
    return new_tree


def abstract_module(make):
    """The module `make()` returns, built under `jax.eval_shape`: every leaf is a
    `jax.ShapeDtypeStruct` and nothing is compiled."""
    box = {}

    def state():
        state, box["apply"] = hax.bind_module(*make())
        return state

    return hax.unbind_module(jax.eval_shape(state), box["apply"])


def hax_module(make, torch_module, seed=0):
    """`make()`'s module holding `torch_module`'s params and fresh PRNG keys."""
    tree, config = abstract_module(make)
    seeds = itertools.count(seed)

    def keys(node, path):
        assert all(jnp.issubdtype(b.dtype, jax.dtypes.prng_key) for b in node["buffers"].values())
        return {**node, "buffers": {k: jax.random.key(next(seeds)) for k in node["buffers"]}}

    return with_params(hax.structure_tree_map(keys, tree), torch_state(torch_module)), config


def prepare(torch_layer, tree, arrays, masks, call):
    """Run the (eval-mode) torch module, backpropagate `sum(out * r)`, and set up the
    same loss for HAX: `(loss, args, reference)`, traced by `run_cases`."""
    xs = [torch.from_numpy(a).requires_grad_(True) for a in arrays]
    out = torch_layer(*xs, **{k: torch.from_numpy(v) for k, v in masks.items()}, **call)
    r = np.random.default_rng(7).normal(size=tuple(out.shape)).astype(np.float32)
    (out * torch.from_numpy(r)).sum().backward()
    reference = {
        "out": out.detach().numpy(),
        "x_grads": [x.grad.numpy() for x in xs],
        "param_grads": {n: p.grad.numpy() for n, p in torch_layer.named_parameters()},
    }

    def loss(params, xs, masks, r):
        _, out = hax.apply_tree(with_params(tree, params), EVAL, *xs, **masks, **call)
        return jnp.sum(out * r), out

    args = (
        torch_state(torch_layer),
        [jnp.asarray(a) for a in arrays],
        {k: jnp.asarray(v) for k, v in masks.items()},
        jnp.asarray(r),
    )
    return loss, args, reference


def run_cases(cases):
    """Every case's output and gradients in ONE jitted program (XLA's compile time is
    mostly a fixed cost per program)."""

    def all_cases(args):
        return {
            name: jax.grad(loss, argnums=(0, 1), has_aux=True)(*args[name])
            for name, (loss, _, _) in cases.items()
        }

    return jax.jit(all_cases, compiler_options=FAST_COMPILE)(
        {name: args for name, (_, args, _) in cases.items()}
    )


def compare(result, reference):
    (g_params, g_xs), out = result
    ref = reference["out"]
    assert out.shape == ref.shape
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5 * max(1, np.abs(ref).max()))
    for g, g_ref in zip(g_xs, reference["x_grads"], strict=True):
        np.testing.assert_allclose(np.asarray(g), g_ref, atol=1e-4, rtol=1e-4)
    assert set(g_params) == set(reference["param_grads"])
    for name, g_ref in reference["param_grads"].items():
        np.testing.assert_allclose(np.asarray(g_params[name]), g_ref, atol=1e-4, rtol=1e-4)


def causal(n, as_bool=False):
    mask = np.array(hax.nn.generate_square_subsequent_mask(n))
    return np.isinf(mask) if as_bool else mask


def padding(batch, src, seed=1):
    """A bool key_padding_mask hiding a suffix of each sequence (never all of it)."""
    lengths = np.random.default_rng(seed).integers(2, src + 1, size=batch)
    lengths[0] = src - 1
    return np.arange(src)[None, :] >= lengths[:, None]


LAYER_CASES = {
    # name: (constructor kwargs, input shape, masks, call kwargs)
    "post_norm_relu_seq_first_causal": (
        {},
        (L, N, D),
        {"src_mask": causal(L)},
        {"is_causal": True},
    ),
    "pre_norm_gelu_batch_first_padding": (
        {"norm_first": True, "activation": "gelu", "batch_first": True},
        (N, L, D),
        {"src_key_padding_mask": padding(N, L)},
        {},
    ),
    "unbatched_no_bias_bool_mask": (
        {"bias": False, "layer_norm_eps": 1e-3},
        (L, D),
        {"src_mask": causal(L, as_bool=True)},
        {},
    ),
    "post_norm_gelu_seq_first_float_mask_padding": (
        {"activation": "gelu"},
        (L, N, D),
        {
            "src_mask": np.random.default_rng(2).normal(size=(L, L)).astype(np.float32),
            "src_key_padding_mask": np.where(padding(N, L), -np.inf, 0).astype(np.float32),
        },
        {},
    ),
}

ENCODER_CASES = {
    # name: (layer kwargs, final norm, input shape, masks, call kwargs)
    "post_norm_batch_first_final_norm_padding": (
        {"batch_first": True},
        True,
        (N, L, D),
        {"src_key_padding_mask": padding(N, L)},
        {},
    ),
    "pre_norm_gelu_seq_first_causal": (
        {"norm_first": True, "activation": "gelu"},
        False,
        (L, N, D),
        {"mask": causal(L)},
        {"is_causal": True},
    ),
}


def torch_encoder_layer(seed, **kwargs):
    torch.manual_seed(seed)
    return torch.nn.TransformerEncoderLayer(D, NHEAD, FF, **kwargs)


def make_encoder(layer_kwargs, num_layers, final_norm):
    layer = TransformerEncoderLayer(D, NHEAD, FF, **layer_kwargs, rng=0)
    return TransformerEncoder(layer, num_layers, LayerNorm(D) if final_norm else None)


@pytest.fixture(scope="module")
def parity():
    cases, fast = {}, {}
    rng = np.random.default_rng(0)
    for name, (kwargs, shape, masks, call) in LAYER_CASES.items():
        torch_layer = torch_encoder_layer(len(cases), **kwargs).eval()
        tree, _ = hax_module(
            lambda kw=kwargs: TransformerEncoderLayer(D, NHEAD, FF, **kw, rng=0), torch_layer
        )
        x = rng.normal(size=shape).astype(np.float32)
        cases[name] = prepare(torch_layer, tree, [x], masks, call)
    for name, (kwargs, final_norm, shape, masks, call) in ENCODER_CASES.items():
        torch_layer = torch_encoder_layer(len(cases), **kwargs)
        norm = torch.nn.LayerNorm(D) if final_norm else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's note that the nested path is off
            torch_encoder = torch.nn.TransformerEncoder(
                torch_layer, 2, norm=norm, enable_nested_tensor=False
            ).eval()
            torch_fast = torch.nn.TransformerEncoder(torch_layer, 2, norm=norm).eval()
        tree, _ = hax_module(lambda kw=kwargs, n=final_norm: make_encoder(kw, 2, n), torch_encoder)
        x = rng.normal(size=shape).astype(np.float32)
        cases[name] = prepare(torch_encoder, tree, [x], masks, call)
        torch_fast.load_state_dict(torch_encoder.state_dict())
        with torch.no_grad(), warnings.catch_warnings():  # the fast path: nested tensors
            warnings.simplefilter("ignore")  # nested tensors are a prototype
            out = torch_fast(
                torch.from_numpy(x), **{k: torch.from_numpy(v) for k, v in masks.items()}
            )
        fast[name] = out.numpy()
    return cases, run_cases(cases), fast


@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_encoder_layer_matches_torch_eval(case, parity):
    cases, results, _ = parity
    compare(results[case], cases[case][2])


@pytest.mark.parametrize("case", list(ENCODER_CASES))
def test_encoder_matches_torch_eval(case, parity):
    cases, results, _ = parity
    compare(results[case], cases[case][2])


def test_encoder_matches_torch_fast_path_where_not_padded(parity):
    """PyTorch's inference fast path (no grad, batch_first, padding mask) runs nested
    tensors and returns 0 at padded positions; HAX computes them as PyTorch's regular
    path does. The other positions agree."""
    cases, results, fast = parity
    name = "post_norm_batch_first_final_norm_padding"
    _, out = results[name]
    padded = ENCODER_CASES[name][3]["src_key_padding_mask"]
    out, expected = np.asarray(out), fast[name]
    assert padded.any()
    np.testing.assert_allclose(out[~padded], expected[~padded], atol=1e-5)
    # torch's fast path zeroes the padded positions before the final norm, whose
    # output at 0 is its bias
    norm_bias = np.asarray(cases[name][1][0]["norm.bias"])
    np.testing.assert_allclose(expected[padded], np.broadcast_to(norm_bias, (padded.sum(), D)))
    assert not np.allclose(out[padded], expected[padded])
    np.testing.assert_allclose(
        np.asarray(results["pre_norm_gelu_seq_first_causal"][1]),
        fast["pre_norm_gelu_seq_first_causal"],
        atol=1e-5,
    )


# ---------------------------------------------------------------- structure


def test_encoder_layer_tree_layout_matches_torch_names():
    tree, config = abstract_module(lambda: TransformerEncoderLayer(D, NHEAD, FF, rng=0))
    assert config == {"train_mode": True}
    assert tree["apply"] is transformer_encoder_layer_apply
    assert list(tree["submodules"]) == [
        "self_attn", "linear1", "dropout", "linear2", "norm1", "norm2", "dropout1", "dropout2"
    ]  # fmt: skip
    assert tree["aux"] == {"activation": "relu", "norm_first": False}
    assert tree["params"] == {} and tree["buffers"] == {}
    attn = tree["submodules"]["self_attn"]
    assert attn["aux"]["dropout"] == 0.1 and attn["aux"]["batch_first"] is False
    assert tree["submodules"]["dropout"]["aux"] == {"p": 0.1}
    assert tree["submodules"]["norm1"]["aux"]["eps"] == 1e-5
    for kwargs in ({}, {"bias": False, "dim_feedforward": 4}):
        torch_layer = torch.nn.TransformerEncoderLayer(
            D, NHEAD, **{"dim_feedforward": FF, **kwargs}
        )
        tree, _ = abstract_module(
            lambda kw=kwargs: TransformerEncoderLayer(
                D, NHEAD, **{"dim_feedforward": FF, **kw}, dtype=jnp.bfloat16, rng=0
            )
        )
        found = {
            torch_name(name): (leaf.shape, leaf.dtype)
            for name, leaf in hax.named_leaves(tree)
            if "/params/" in name
        }
        expected = {k: (tuple(v.shape), jnp.bfloat16) for k, v in torch_layer.state_dict().items()}
        assert found == expected


def test_encoder_layer_init_and_dropout_keys():
    """Each submodule is initialised as PyTorch's (the bounds), and the four dropout
    keys differ. (Built in one jitted program: eager init compiles per param shape.)"""

    def build():
        return hax.bind_module(*TransformerEncoderLayer(D, NHEAD, FF, rng=0))[0]

    state = jax.jit(build, compiler_options=FAST_COMPILE)()
    keys = {
        str(jax.random.key_data(state[f"{name}/buffers/rng"]))
        for name in ("self_attn", "dropout", "dropout1", "dropout2")
    }
    assert len(keys) == 4
    bounds = {
        "self_attn/params/in_proj_weight": math.sqrt(6 / (4 * D)),
        "self_attn/out_proj/params/weight": 1 / math.sqrt(D),
        "linear1/params/weight": 1 / math.sqrt(D),
        "linear1/params/bias": 1 / math.sqrt(D),
        "linear2/params/weight": 1 / math.sqrt(FF),
    }
    for name, bound in bounds.items():
        values = np.abs(np.asarray(state[name]))
        assert values.max() <= bound and values.max() > 0.5 * bound, name
    for name in (
        "self_attn/params/in_proj_bias",
        "self_attn/out_proj/params/bias",
        "norm1/params/bias",
    ):
        np.testing.assert_array_equal(np.asarray(state[name]), 0.0, name)
    np.testing.assert_array_equal(np.asarray(state["norm2/params/weight"]), 1.0)


@pytest.mark.debug_off
def test_encoder_tree_layout_matches_torch_names():
    tree, config = abstract_module(lambda: make_encoder({}, 3, final_norm=True))
    assert config == {"train_mode": True}
    assert tree["apply"] is transformer_encoder_apply
    assert list(tree["submodules"]) == ["layers", "norm"]
    layers = tree["submodules"]["layers"]
    assert list(layers["submodules"]) == ["0", "1", "2"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch_encoder = torch.nn.TransformerEncoder(
            torch.nn.TransformerEncoderLayer(D, NHEAD, FF), 3, torch.nn.LayerNorm(D)
        )
    found = {
        torch_name(name): leaf.shape for name, leaf in hax.named_leaves(tree) if "/params/" in name
    }
    assert found == {k: tuple(v.shape) for k, v in torch_encoder.state_dict().items()}
    tree, _ = abstract_module(lambda: make_encoder({}, 2, final_norm=False))
    assert list(tree["submodules"]) == ["layers"]
    with pytest.raises(TypeError, match="list of layers"):
        hax.apply_tree(layers, config, jnp.ones((L, N, D)))


def test_encoder_takes_torch_positional_arguments():
    # torch.nn.TransformerEncoder(encoder_layer, num_layers, norm, enable_nested_tensor,
    # mask_check): the same positional call builds a HAX encoder
    norm = LayerNorm(D)
    tree, _ = TransformerEncoder(hax.nn.Dropout(0.5, rng=0), 2, norm, False, False)
    assert list(tree["submodules"]) == ["layers", "norm"]


def test_encoder_clones_weights_and_folds_keys():
    """Like torch's deep copies, every layer starts with the layer's weights; each
    copy's PRNG keys are folded with its index, so the layers drop different elements."""
    norm, _ = LayerNorm(D)
    norm = {**norm, "params": {"weight": jnp.arange(D, dtype=jnp.float32), "bias": jnp.ones(D)}}
    tree, _ = TransformerEncoder((norm, {}), 3)
    for i in "012":
        copy = tree["submodules"]["layers"]["submodules"][i]
        assert copy is not norm and copy["params"] is not norm["params"]
        np.testing.assert_array_equal(np.asarray(copy["params"]["weight"]), np.arange(D))
        np.testing.assert_array_equal(np.asarray(copy["params"]["bias"]), 1)
    tree, config = TransformerEncoder(hax.nn.Dropout(0.5, rng=0), 3)
    assert config == {"train_mode": True}
    keys = {
        str(jax.random.key_data(layer["buffers"]["rng"]))
        for layer in tree["submodules"]["layers"]["submodules"].values()
    }
    assert len(keys) == 3


def test_validate_reports_wrong_shapes_with_paths():
    torch_encoder = torch.nn.TransformerEncoder(
        torch_encoder_layer(0), 2, enable_nested_tensor=False
    )
    tree, config = hax_module(lambda: make_encoder({}, 2, final_norm=False), torch_encoder)
    assert hax.validate(tree, config) is tree
    attn = hax.get_subtree(tree, "layers/1/self_attn")
    bad_attn = {**attn, "params": {**attn["params"], "in_proj_weight": jnp.ones((3 * D, D + 1))}}
    bad = hax.set_subtree(tree, "layers/1/self_attn", bad_attn)
    with pytest.raises(hax.ValidationError) as err:
        hax.validate(bad)
    assert {(p.path, p.key) for p in err.value.errors} == {
        ("layers/1/self_attn", "params.in_proj_weight")
    }
    with pytest.raises(hax.ValidationError, match="train_mode"):
        hax.validate(tree, {})


# ---------------------------------------------------------------- training


def test_train_mode_dropout_advances_every_key():
    torch_encoder = torch.nn.TransformerEncoder(
        torch_encoder_layer(0, batch_first=True), 2, enable_nested_tensor=False
    )
    tree, config = hax_module(
        lambda: make_encoder({"dropout": 0.5, "batch_first": True}, 2, final_norm=False),
        torch_encoder,
    )
    x = np.random.default_rng(1).normal(size=(N, L, D)).astype(np.float32)
    state, apply = hax.bind_module(tree, config)
    evaluate = apply.bind_global_config(EVAL)

    def run(state, x):
        new_state, y = apply(state, x)
        state_eval, y_eval = evaluate(state, x)
        return new_state, y, state_eval, y_eval

    run = jax.jit(run, compiler_options=FAST_COMPILE)
    state1, y1, state_eval, y_eval = run(state, x)
    state2, y2, _, _ = run(state1, x)
    key_names = [k for k in state if k.endswith("buffers/rng")]
    assert len(key_names) == 8  # self_attn, dropout, dropout1, dropout2 in 2 layers
    for name in key_names:
        k0, k1, k2 = (jax.random.key_data(s[name]) for s in (state, state1, state2))
        assert not np.array_equal(k0, k1) and not np.array_equal(k1, k2), name
        np.testing.assert_array_equal(jax.random.key_data(state_eval[name]), k0)
    assert np.isfinite(np.asarray(y1)).all()
    assert not np.allclose(np.asarray(y1), np.asarray(y2))
    assert not np.allclose(np.asarray(y1), np.asarray(y_eval))
    with torch.no_grad():  # evaluation: the same as torch's
        expected = torch_encoder.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.asarray(y_eval), expected, atol=1e-5)


def test_train_mode_without_dropout_equals_eval():
    torch_layer = torch_encoder_layer(0, dropout=0.0, norm_first=True)
    tree, config = hax_module(
        lambda: TransformerEncoderLayer(D, NHEAD, FF, dropout=0.0, norm_first=True, rng=0),
        torch_layer,
    )
    x = np.random.default_rng(1).normal(size=(L, N, D)).astype(np.float32)

    def both(x):
        _, y_train = hax.apply_tree(tree, config, x)
        _, y_eval = hax.apply_tree(tree, EVAL, x)
        return y_train, y_eval

    y_train, y_eval = jax.jit(both, compiler_options=FAST_COMPILE)(x)
    np.testing.assert_array_equal(np.asarray(y_train), np.asarray(y_eval))
    expected = torch_layer(torch.from_numpy(x)).detach().numpy()  # torch in training mode
    np.testing.assert_allclose(np.asarray(y_train), expected, atol=1e-5)


def test_under_debug():
    """The apply functions' annotations hold and every node checks out (while tracing)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch_encoder = torch.nn.TransformerEncoder(
            torch_encoder_layer(0), 2, torch.nn.LayerNorm(D)
        )
    tree, config = hax_module(lambda: make_encoder({}, 2, final_norm=True), torch_encoder)
    layer = hax.get_subtree(tree, "layers/0")
    mask = jnp.asarray(causal(L))
    with hax.debug():
        out = jax.eval_shape(
            lambda x: hax.apply_tree(tree, config, x, mask=mask, is_causal=True)[1],
            jnp.zeros((L, N, D)),
        )
        assert out.shape == (L, N, D)
        out = jax.eval_shape(lambda x: hax.apply_tree(layer, config, x)[1], jnp.zeros((L, D)))
        assert out.shape == (L, D)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "make, error, match",
    [
        pytest.param(
            lambda: TransformerEncoderLayer(D, NHEAD, activation=jax.nn.relu, rng=0),
            TypeError,
            "aux",
            marks=pytest.mark.wrong_types,
        ),
        (lambda: TransformerEncoderLayer(D, NHEAD, activation="tanh", rng=0), ValueError, "relu"),
        (lambda: TransformerEncoderLayer(D, 3, rng=0), ValueError, "divisible"),
        (lambda: TransformerEncoderLayer(D, NHEAD, dropout=2.0, rng=0), ValueError, "dropout"),
        (lambda: TransformerEncoder("layer", 2), TypeError, "encoder_layer"),
        (lambda: TransformerEncoder(LayerNorm(D), -1), ValueError, "num_layers"),
        (lambda: TransformerEncoder(LayerNorm(D), 1, norm=3), TypeError, "norm"),
    ],
)
def test_constructor_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.debug_off
def test_is_causal_needs_a_mask():
    tree, config = abstract_module(lambda: make_encoder({}, 1, final_norm=False))
    with pytest.raises(ValueError, match="needs attn_mask"):
        hax.apply_tree(tree, config, jnp.ones((L, N, D)), is_causal=True)
