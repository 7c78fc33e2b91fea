"""Tests for `TransformerDecoderLayer`, `TransformerDecoder` and `Transformer`, with
PyTorch as the reference (the helpers and sizes are test_nn_transformer's: the parity
cases run as ONE jitted program, layers holding torch's params are built abstractly)."""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from test_nn_transformer import (
    EVAL,
    FAST_COMPILE,
    FF,
    NHEAD,
    D,
    abstract_module,
    causal,
    compare,
    hax_module,
    padding,
    prepare,
    run_cases,
    torch_name,
)

import hax
from hax.nn import (
    LayerNorm,
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
    transformer_apply,
    transformer_decoder_apply,
    transformer_decoder_layer_apply,
)

T, S, N = 4, 6, 3  # target and source lengths differ, so a swapped mask cannot pass


def normal(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


LAYER_CASES = {
    # name: (constructor kwargs, tgt shape, memory shape, masks, call kwargs)
    "post_norm_relu_seq_first_causal": (
        {},
        (T, N, D),
        (S, N, D),
        {"tgt_mask": causal(T)},
        {"tgt_is_causal": True},
    ),
    "pre_norm_gelu_batch_first_padding": (
        {"norm_first": True, "activation": "gelu", "batch_first": True},
        (N, T, D),
        (N, S, D),
        {"tgt_key_padding_mask": padding(N, T), "memory_key_padding_mask": padding(N, S, 3)},
        {},
    ),
    "unbatched_no_bias_bool_and_float_masks": (
        {"bias": False, "layer_norm_eps": 1e-3},
        (T, D),
        (S, D),
        {"tgt_mask": causal(T, as_bool=True), "memory_mask": normal((T, S), 4)},
        {},
    ),
}

DECODER_CASES = {
    # name: (layer kwargs, final norm, tgt shape, memory shape, masks, call kwargs)
    "post_norm_batch_first_final_norm_memory_padding": (
        {"batch_first": True},
        True,
        (N, T, D),
        (N, S, D),
        {"tgt_mask": causal(T), "memory_key_padding_mask": padding(N, S, 5)},
        {},
    ),
    "pre_norm_gelu_seq_first_causal": (
        {"norm_first": True, "activation": "gelu"},
        False,
        (T, N, D),
        (S, N, D),
        {"tgt_mask": causal(T)},
        {"tgt_is_causal": True},
    ),
}

TRANSFORMER_CASES = {
    # name: (constructor kwargs, src shape, tgt shape, masks, call kwargs); one or two
    # layers each (the stacks have their own cases above)
    "post_norm_seq_first_causal_padding": (
        {"num_encoder_layers": 2},
        (S, N, D),
        (T, N, D),
        {
            "tgt_mask": causal(T),
            "src_key_padding_mask": padding(N, S, 6),
            "memory_key_padding_mask": padding(N, S, 6),
        },
        {"tgt_is_causal": True},
    ),
    "pre_norm_gelu_batch_first_float_masks": (
        {"norm_first": True, "activation": "gelu", "batch_first": True, "num_decoder_layers": 2},
        (N, S, D),
        (N, T, D),
        {"src_mask": normal((S, S), 7), "memory_mask": normal((T, S), 8)},
        {},
    ),
    "unbatched_no_bias": (
        {"bias": False},
        (S, D),
        (T, D),
        {"tgt_mask": causal(T, as_bool=True)},
        {},
    ),
}


def torch_seeded(seed, make):
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's note that the nested-tensor path is off
        return make()


def make_decoder(layer_kwargs, num_layers, final_norm):
    layer = TransformerDecoderLayer(D, NHEAD, FF, **layer_kwargs, rng=0)
    return TransformerDecoder(layer, num_layers, LayerNorm(D) if final_norm else None)


def make_transformer(**kwargs):
    layers = {"num_encoder_layers": 1, "num_decoder_layers": 1}
    return Transformer(D, NHEAD, dim_feedforward=FF, **{**layers, **kwargs}, rng=0)


def torch_transformer(**kwargs):
    layers = {"num_encoder_layers": 1, "num_decoder_layers": 1}
    return torch.nn.Transformer(D, NHEAD, dim_feedforward=FF, **{**layers, **kwargs})


@pytest.fixture(scope="module")
def parity():
    cases = {}
    for name, (kwargs, tgt, memory, masks, call) in LAYER_CASES.items():
        torch_layer = torch_seeded(
            len(cases), lambda kw=kwargs: torch.nn.TransformerDecoderLayer(D, NHEAD, FF, **kw)
        ).eval()
        tree, _ = hax_module(
            lambda kw=kwargs: TransformerDecoderLayer(D, NHEAD, FF, **kw, rng=0), torch_layer
        )
        arrays = [normal(tgt, 10 + len(cases)), normal(memory, 20 + len(cases))]
        cases[name] = prepare(torch_layer, tree, arrays, masks, call)
    for name, (kwargs, final_norm, tgt, memory, masks, call) in DECODER_CASES.items():

        def make_torch(kw=kwargs, n=final_norm):
            layer = torch.nn.TransformerDecoderLayer(D, NHEAD, FF, **kw)
            return torch.nn.TransformerDecoder(layer, 2, torch.nn.LayerNorm(D) if n else None)

        torch_decoder = torch_seeded(len(cases), make_torch).eval()
        tree, _ = hax_module(lambda kw=kwargs, n=final_norm: make_decoder(kw, 2, n), torch_decoder)
        arrays = [normal(tgt, 10 + len(cases)), normal(memory, 20 + len(cases))]
        cases[name] = prepare(torch_decoder, tree, arrays, masks, call)
    for name, (kwargs, src, tgt, masks, call) in TRANSFORMER_CASES.items():
        torch_model = torch_seeded(len(cases), lambda kw=kwargs: torch_transformer(**kw)).eval()
        tree, _ = hax_module(lambda kw=kwargs: make_transformer(**kw), torch_model)
        arrays = [normal(src, 10 + len(cases)), normal(tgt, 20 + len(cases))]
        cases[name] = prepare(torch_model, tree, arrays, masks, call)
    return cases, run_cases(cases)


@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_decoder_layer_matches_torch_eval(case, parity):
    cases, results = parity
    compare(results[case], cases[case][2])


@pytest.mark.parametrize("case", list(DECODER_CASES))
def test_decoder_matches_torch_eval(case, parity):
    cases, results = parity
    compare(results[case], cases[case][2])


@pytest.mark.parametrize("case", list(TRANSFORMER_CASES))
def test_transformer_matches_torch_eval(case, parity):
    cases, results = parity
    compare(results[case], cases[case][2])


# ---------------------------------------------------------------- structure


def test_decoder_layer_tree_layout_matches_torch_names():
    tree, config = abstract_module(lambda: TransformerDecoderLayer(D, NHEAD, FF, rng=0))
    assert config == {"train_mode": True}
    assert tree["apply"] is transformer_decoder_layer_apply
    assert list(tree["submodules"]) == [
        "self_attn", "multihead_attn", "linear1", "dropout", "linear2",
        "norm1", "norm2", "norm3", "dropout1", "dropout2", "dropout3",
    ]  # fmt: skip
    assert tree["aux"] == {"activation": "relu", "norm_first": False}
    assert tree["params"] == {} and tree["buffers"] == {}
    for kwargs in ({}, {"bias": False, "dim_feedforward": 4, "batch_first": True}):
        torch_layer = torch.nn.TransformerDecoderLayer(
            D, NHEAD, **{"dim_feedforward": FF, **kwargs}
        )
        tree, _ = abstract_module(
            lambda kw=kwargs: TransformerDecoderLayer(
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


def test_decoder_layer_init_and_dropout_keys():
    """Each submodule is initialised as PyTorch's, and the six dropout keys differ.
    (Built in one jitted program: eager init compiles per param shape.)"""
    build = jax.jit(
        lambda: hax.bind_module(*TransformerDecoderLayer(D, NHEAD, FF, rng=0))[0],
        compiler_options=FAST_COMPILE,
    )
    state = build()
    names = ("self_attn", "multihead_attn", "dropout", "dropout1", "dropout2", "dropout3")
    keys = {str(jax.random.key_data(state[f"{name}/buffers/rng"])) for name in names}
    assert len(keys) == 6
    xavier = math.sqrt(6 / (4 * D))
    for name in ("self_attn/params/in_proj_weight", "multihead_attn/params/in_proj_weight"):
        values = np.abs(np.asarray(state[name]))
        assert xavier >= values.max() > 0.5 * xavier, name
    assert not np.allclose(
        state["self_attn/params/in_proj_weight"], state["multihead_attn/params/in_proj_weight"]
    )
    for name, bound in (
        ("linear1/params/weight", 1 / math.sqrt(D)),
        ("linear2/params/weight", 1 / math.sqrt(FF)),
    ):
        values = np.abs(np.asarray(state[name]))
        assert bound >= values.max() > 0.5 * bound, name
    np.testing.assert_array_equal(np.asarray(state["multihead_attn/params/in_proj_bias"]), 0.0)
    np.testing.assert_array_equal(np.asarray(state["norm3/params/weight"]), 1.0)


def test_decoder_tree_layout_matches_torch_names_and_positional_arguments():
    tree, config = abstract_module(lambda: make_decoder({}, 3, final_norm=True))
    assert config == {"train_mode": True} and tree["apply"] is transformer_decoder_apply
    assert list(tree["submodules"]) == ["layers", "norm"]
    assert list(tree["submodules"]["layers"]["submodules"]) == ["0", "1", "2"]
    torch_decoder = torch.nn.TransformerDecoder(
        torch.nn.TransformerDecoderLayer(D, NHEAD, FF), 3, torch.nn.LayerNorm(D)
    )
    found = {
        torch_name(name): leaf.shape for name, leaf in hax.named_leaves(tree) if "/params/" in name
    }
    assert found == {k: tuple(v.shape) for k, v in torch_decoder.state_dict().items()}
    tree, _ = TransformerDecoder(hax.nn.Dropout(0.5, rng=0), 2, LayerNorm(D))  # torch's order
    assert list(tree["submodules"]) == ["layers", "norm"]
    keys = {
        str(jax.random.key_data(layer["buffers"]["rng"]))
        for layer in tree["submodules"]["layers"]["submodules"].values()
    }
    assert len(keys) == 2  # each copy folds its keys with its index


def test_transformer_tree_layout_matches_torch_names():
    two = {"num_encoder_layers": 2, "num_decoder_layers": 2}
    tree, config = abstract_module(lambda: make_transformer(bias=False, **two))
    assert config == {"train_mode": True} and tree["apply"] is transformer_apply
    assert tree["aux"] == {"d_model": D, "nhead": NHEAD, "batch_first": False}
    assert list(tree["submodules"]) == ["encoder", "decoder"]
    torch_model = torch_seeded(0, lambda: torch_transformer(bias=False, **two))
    found = {
        torch_name(name): leaf.shape for name, leaf in hax.named_leaves(tree) if "/params/" in name
    }
    assert found == {k: tuple(v.shape) for k, v in torch_model.state_dict().items()}


def test_transformer_redraws_every_matrix_xavier_uniform_like_torch():
    """torch's `_reset_parameters`: the copies of a layer get their own weights, each
    matrix xavier-uniform for its own fans; vectors keep their layers' init."""
    state = jax.jit(
        lambda: hax.bind_module(*make_transformer(num_encoder_layers=2, num_decoder_layers=2))[0],
        compiler_options=FAST_COMPILE,
    )()
    torch_model = torch_seeded(0, lambda: torch.nn.Transformer(D, NHEAD, 2, 2, FF))
    torch_state = torch_model.state_dict()
    for torch_key, value in torch_state.items():
        node, _, name = torch_key.rpartition(".")
        ours = np.asarray(state[f"{node.replace('.', '/')}/params/{name}"])
        if value.ndim > 1:
            fan_out, fan_in = value.shape
            bound = math.sqrt(6 / (fan_in + fan_out))
            assert bound >= np.abs(ours).max() > 0.6 * bound, torch_key
            assert bound >= np.abs(value.numpy()).max() > 0.6 * bound, torch_key
        elif "norm" in torch_key:
            expected = 0.0 if name == "bias" else 1.0
            np.testing.assert_array_equal(ours, expected, torch_key)
            np.testing.assert_array_equal(value.numpy(), expected, torch_key)
        elif name == "in_proj_bias" or node.endswith("out_proj"):
            np.testing.assert_array_equal(ours, 0.0, torch_key)
            np.testing.assert_array_equal(value.numpy(), 0.0, torch_key)
        else:  # the linear layers' biases keep Linear's init: U(+-1/sqrt(fan_in))
            bound = 1 / math.sqrt(state[f"{node.replace('.', '/')}/params/weight"].shape[1])
            assert bound >= np.abs(ours).max() > 0.3 * bound, torch_key
    for part in ("encoder", "decoder"):
        first = state[f"{part}/layers/0/linear1/params/weight"]
        assert not np.allclose(first, state[f"{part}/layers/1/linear1/params/weight"])


def test_transformer_takes_custom_parts():
    encoder = TransformerEncoder(TransformerEncoderLayer(D, NHEAD, FF, rng=1), 1)
    decoder = TransformerDecoder(TransformerDecoderLayer(D, NHEAD, FF, rng=2), 3)
    tree, config = abstract_module(
        lambda: Transformer(D, NHEAD, custom_encoder=encoder, custom_decoder=decoder, rng=0)
    )
    assert config == {"train_mode": True}
    assert list(tree["submodules"]["encoder"]["submodules"]) == ["layers"]  # no final norm
    assert list(tree["submodules"]["decoder"]["submodules"]["layers"]["submodules"]) == [
        "0",
        "1",
        "2",
    ]


# ---------------------------------------------------------------- training


def test_transformer_train_mode_dropout_and_eval():
    torch_model = torch_seeded(0, lambda: torch.nn.Transformer(D, NHEAD, 1, 1, FF, dropout=0.5))
    tree, config = hax_module(
        lambda: Transformer(D, NHEAD, 1, 1, FF, dropout=0.5, rng=0), torch_model
    )
    src, tgt = normal((S, N, D), 1), normal((T, N, D), 2)
    state, apply = hax.bind_module(tree, config)
    evaluate = apply.bind_global_config(EVAL)

    def run(state):
        new_state, y = apply(state, src, tgt)
        _, y_eval = evaluate(state, src, tgt)
        return new_state, y, y_eval

    new_state, y, y_eval = jax.jit(run, compiler_options=FAST_COMPILE)(state)
    key_names = [k for k in state if k.endswith("buffers/rng")]
    assert len(key_names) == 4 + 6  # encoder layer: 4 keys, decoder layer: 6
    for name in key_names:
        assert not np.array_equal(
            jax.random.key_data(state[name]), jax.random.key_data(new_state[name])
        ), name
    assert not np.allclose(np.asarray(y), np.asarray(y_eval))
    with torch.no_grad():
        expected = torch_model.eval()(torch.from_numpy(src), torch.from_numpy(tgt)).numpy()
    np.testing.assert_allclose(np.asarray(y_eval), expected, atol=1e-5)


def test_decoder_train_mode_without_dropout_equals_torch_training():
    torch_layer = torch_seeded(
        0, lambda: torch.nn.TransformerDecoderLayer(D, NHEAD, FF, dropout=0.0, norm_first=True)
    )
    tree, config = hax_module(
        lambda: TransformerDecoderLayer(D, NHEAD, FF, dropout=0.0, norm_first=True, rng=0),
        torch_layer,
    )
    tgt, memory = normal((T, N, D), 3), normal((S, N, D), 4)
    run = jax.jit(lambda t, m: hax.apply_tree(tree, config, t, m)[1], compiler_options=FAST_COMPILE)
    y = run(tgt, memory)
    expected = torch_layer(torch.from_numpy(tgt), torch.from_numpy(memory)).detach().numpy()
    np.testing.assert_allclose(np.asarray(y), expected, atol=1e-5)


# ---------------------------------------------------------------- conversion


def test_transformer_converts_from_torch():
    torch_model = torch_seeded(
        3, lambda: torch.nn.Transformer(D, NHEAD, 2, 1, FF, batch_first=True, norm_first=True)
    ).eval()
    tree, config = hax.interop.convert(torch_model)
    assert tree["apply"] is transformer_apply and config == EVAL  # torch's model is in eval
    assert tree["aux"] == {"d_model": D, "nhead": NHEAD, "batch_first": True}
    layer = hax.get_subtree(tree, "decoder/layers/0")
    assert layer["apply"] is transformer_decoder_layer_apply
    assert layer["aux"] == {"activation": "relu", "norm_first": True}
    src, tgt = normal((N, S, D), 5), normal((N, T, D), 6)
    mask = hax.nn.generate_square_subsequent_mask(T)
    np.testing.assert_array_equal(
        np.asarray(mask), torch.nn.Transformer.generate_square_subsequent_mask(T).numpy()
    )
    with torch.no_grad():
        expected = torch_model(
            torch.from_numpy(src),
            torch.from_numpy(tgt),
            tgt_mask=torch.from_numpy(np.array(mask)),
        ).numpy()
    run = jax.jit(
        lambda s, t: hax.apply_tree(tree, EVAL, s, t, tgt_mask=mask)[1],
        compiler_options=FAST_COMPILE,
    )
    np.testing.assert_allclose(np.asarray(run(src, tgt)), expected, atol=1e-5)


def test_decoder_with_differing_layers_does_not_convert():
    layers = [
        torch.nn.TransformerDecoderLayer(D, NHEAD, FF),
        torch.nn.TransformerDecoderLayer(D, NHEAD, FF // 2),
    ]
    torch_decoder = torch.nn.TransformerDecoder(layers[0], 2)
    torch_decoder.layers[1] = layers[1]
    with pytest.raises(hax.interop.ConversionError, match="layers/1 differs from layers/0"):
        hax.interop.convert(torch_decoder)


def test_callable_activation_does_not_convert():
    layer = torch.nn.TransformerDecoderLayer(D, NHEAD, FF, activation=torch.nn.functional.silu)
    with pytest.raises(hax.interop.ConversionError, match="TransformerDecoderLayer takes 'relu'"):
        hax.interop.convert(layer)


# ---------------------------------------------------------------- debug and errors


def test_under_debug():
    torch_model = torch_seeded(0, lambda: torch_transformer(batch_first=True))
    tree, config = hax_module(lambda: make_transformer(batch_first=True), torch_model)
    with hax.debug():
        out = jax.eval_shape(
            lambda s, t: hax.apply_tree(tree, config, s, t, tgt_mask=jnp.zeros((T, T)))[1],
            jnp.zeros((N, S, D)),
            jnp.zeros((N, T, D)),
        )
        assert out.shape == (N, T, D)
        layer = hax.get_subtree(tree, "decoder/layers/0")
        out = jax.eval_shape(
            lambda t, m: hax.apply_tree(layer, config, t, m)[1],
            jnp.zeros((T, D)),
            jnp.zeros((S, D)),
        )
        assert out.shape == (T, D)


@pytest.mark.parametrize(
    "make, error, match",
    [
        pytest.param(
            lambda: TransformerDecoderLayer(D, NHEAD, activation=jax.nn.relu, rng=0),
            TypeError,
            "TransformerDecoderLayer: activation must be 'relu' or 'gelu'",
            marks=pytest.mark.wrong_types,
        ),
        (lambda: TransformerDecoderLayer(D, NHEAD, activation="tanh", rng=0), ValueError, "relu"),
        (lambda: TransformerDecoderLayer(D, 3, rng=0), ValueError, "divisible"),
        pytest.param(
            lambda: TransformerDecoder("layer", 2),
            TypeError,
            "decoder_layer is a str",
            marks=pytest.mark.wrong_types,
        ),
        (lambda: TransformerDecoder(LayerNorm(D), -1), ValueError, "num_layers"),
        (lambda: Transformer(D, NHEAD, custom_encoder=3, rng=0), TypeError, "custom_encoder"),
        (lambda: Transformer(D, NHEAD, activation="swish", rng=0), ValueError, "relu"),
    ],
)
def test_constructor_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.debug_off
@pytest.mark.wrong_types
def test_apply_errors_name_the_shapes():
    tree, config = abstract_module(lambda: make_transformer())
    with pytest.raises(ValueError, match=r"batch sizes of src \(6, 3, 8\) and tgt \(4, 2, 8\)"):
        hax.apply_tree(tree, config, jnp.ones((S, N, D)), jnp.ones((T, 2, D)))
    with pytest.raises(ValueError, match="must be d_model=8"):
        hax.apply_tree(tree, config, jnp.ones((S, N, D)), jnp.ones((T, N, D + 1)))
    state, apply = hax.bind_module(
        *abstract_module(lambda: TransformerDecoderLayer(D, NHEAD, FF, rng=0))
    )
    with pytest.raises(ValueError, match="needs attn_mask"):
        jax.eval_shape(
            lambda state, t, m: apply(state, t, m, memory_is_causal=True),
            state,
            jnp.ones((T, N, D)),
            jnp.ones((S, N, D)),
        )
