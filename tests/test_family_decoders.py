"""Decoder-only LLM families besides Llama convert with no user code: Qwen3, Gemma,
Phi3, OLMo, OLMo2, Granite, SmolLM3, Helium, GLM, Arcee, Jais2, Ministral, CWM,
Starcoder2, Seed-OSS, StableLM, Cohere and Qwen3-MoE run Llama's applies with their
knobs (and applies of their own for the classes that differ), GPT-NeoX and OPT their
own. With every weight random (norms included), the eager logits under padding match
torch's, the tree loads back into torch, and the LM head stays one leaf where torch
ties it. Dropout draws from the nodes' keys in train mode. A family that differs from
what it would run refuses, naming what differs."""

import jax
import numpy as np
import pytest
import torch
from hf_cases import IDS, assert_eager_logits_match_torch, import_transformers, randomize, torch_run

import hax
from hax.interop import ConversionError, convert, to_torch
from hax.interop._families._llama import llama_attention_apply

LLAMA_LIKE = dict(
    vocab_size=100,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,  # grouped-query attention
    head_dim=8,
    max_position_embeddings=64,
    pad_token_id=0,
)
SMALL = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4)
PARTIAL_ROPE = {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}

# (config class prefix, settings): each case turns on what its family does differently.
CASES = {
    "Qwen3": ("Qwen3", LLAMA_LIKE),  # q_norm/k_norm on each head
    "Gemma": ("Gemma", LLAMA_LIKE),  # scaled embedding, 1 + weight RMSNorm, tied head
    "Phi3": ("Phi3", {**LLAMA_LIKE, "rope_parameters": PARTIAL_ROPE}),  # fused projections
    "Olmo": ("Olmo", {**LLAMA_LIKE, "clip_qkv": 0.3}),  # weightless LayerNorm, clipping
    "Olmo2": ("Olmo2", LLAMA_LIKE),  # norms after each branch, q_norm on the projection
    "Granite": (
        "Granite",
        dict(
            LLAMA_LIKE,
            embedding_multiplier=2.0,
            attention_multiplier=0.3,
            residual_multiplier=0.5,
            logits_scaling=4.0,
        ),
    ),
    "SmolLM3": ("SmolLM3", {**LLAMA_LIKE, "no_rope_layers": [1, 0]}),  # a NoPE layer
    "Helium": ("Helium", LLAMA_LIKE),  # interleaved rotary pairs
    "Glm": ("Glm", LLAMA_LIKE),  # interleaved partial rotary, fused gate_up_proj
    "Arcee": ("Arcee", LLAMA_LIKE),  # ReLU^2 MLP without a gate
    "Ministral": (
        "Ministral",
        {**LLAMA_LIKE, "sliding_window": 4, "layer_types": ["sliding_attention"] * 2},
    ),
    "Starcoder2": ("Starcoder2", {**LLAMA_LIKE, "sliding_window": 4}),  # LayerNorm, biases
    "Cwm": ("Cwm", {**LLAMA_LIKE, "sliding_window": 4}),  # Llama's, with layer_types
    "Jais2": ("Jais2", LLAMA_LIKE),  # LayerNorm, MLP without a gate
    "SeedOss": ("SeedOss", {**LLAMA_LIKE, "attention_bias": True, "attention_out_bias": True}),
    "StableLm": ("StableLm", {**LLAMA_LIKE, "qk_layernorm": True}),  # parallel, per head
    "StableLm-sequential": ("StableLm", {**LLAMA_LIKE, "use_parallel_residual": False}),
    "Cohere": ("Cohere", {**LLAMA_LIKE, "use_qk_norm": True, "logit_scale": 0.5}),
    "Qwen3Moe": (  # a sparse mixture of experts, and a dense MLP in its second layer
        "Qwen3Moe",
        dict(
            LLAMA_LIKE,
            moe_intermediate_size=16,
            num_experts=6,
            num_experts_per_tok=2,
            mlp_only_layers=[1],
        ),
    ),
    "GPTNeoX": ("GPTNeoX", {**SMALL, "intermediate_size": 64}),  # parallel residual
    "GPTNeoX-sequential": (
        "GPTNeoX",
        {**SMALL, "intermediate_size": 64, "use_parallel_residual": False},
    ),
    "OPT": ("OPT", {**SMALL, "ffn_dim": 64}),  # norms before each block (OPT-125m)
    "OPT-350m": (  # norms after each block, projections around the layers
        "OPT",
        {**SMALL, "ffn_dim": 64, "do_layer_norm_before": False, "word_embed_proj_dim": 16},
    ),
}


@pytest.fixture(scope="module")
def tf():
    return import_transformers()


def causal_lm(tf, case, **overrides):
    """The case's `...ForCausalLM`, every weight random, in eval mode."""
    family, settings = CASES[case]
    torch.manual_seed(0)
    config = getattr(tf, f"{family}Config")(**{**settings, **overrides})
    return randomize(getattr(tf, f"{family}ForCausalLM")(config)).eval()


@pytest.mark.parametrize("case", list(CASES))
def test_causal_lm_converts_with_no_user_code_and_matches_torch(tf, case):
    model = causal_lm(tf, case)
    tree, config = convert(model)
    assert_eager_logits_match_torch(model, tree, config)
    model.load_state_dict(to_torch(tree), strict=True)
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert tree["submodules"]["lm_head"]["aux"].get("tied") == (("weight",) if tied else None)


def test_gemma_embedding_scale_is_a_non_persistent_buffer(tf):
    model = causal_lm(tf, "Gemma")
    tree, _ = convert(model)
    embed = tree["submodules"]["model"]["submodules"]["embed_tokens"]
    assert embed["aux"]["non_persistent"] == ("embed_scale",)
    np.testing.assert_allclose(embed["buffers"]["embed_scale"], 32**0.5, rtol=1e-6)


def test_opt_layerdrop_skips_layers_in_train_mode(tf):
    """With `layerdrop=1` every layer is skipped in train mode, in torch and in HAX."""
    model = causal_lm(tf, "OPT", layerdrop=1.0, dropout=0.0, attention_dropout=0.0).train()
    tree, config = convert(model)
    assert config["train_mode"]
    expected = torch_run(model, input_ids=IDS).logits.numpy()
    got = hax.apply_tree(tree, config, IDS)[1]["logits"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("case", ["Starcoder2", "SeedOss"])
def test_residual_dropout_draws_from_the_nodes_keys_in_train_mode(tf, case):
    model = causal_lm(tf, case, residual_dropout=0.5).train()
    tree, config = convert(model)
    new_tree, out = hax.apply_tree(tree, config, IDS)
    _, eval_out = hax.apply_tree(tree, {**config, "train_mode": False}, IDS)
    assert not np.allclose(out["logits"], eval_out["logits"])
    mlp = ("model", "layers", "0", "mlp")
    keys = [hax.get_subtree(t, mlp)["buffers"]["rng"] for t in (tree, new_tree)]
    assert not np.array_equal(*(jax.random.key_data(k) for k in keys))


def test_what_a_family_does_not_run_is_refused_by_name(tf):
    model = causal_lm(tf, "Gemma", use_bidirectional_attention=True)
    tree, config = convert(model)
    with pytest.raises(ValueError, match="use_bidirectional_attention"):
        hax.apply_tree(tree, config, IDS)
    # Qwen3's attention without the knob that says where its q_norm acts.
    model = causal_lm(tf, "Qwen3")
    attention_class = type(model.model.layers[0].self_attn)
    tree, config = convert(model, applies={attention_class: llama_attention_apply})
    with pytest.raises(ValueError, match="qk_norm='head'"):
        hax.apply_tree(tree, config, IDS)
    model = causal_lm(tf, "Qwen3Moe", output_router_logits=True)
    tree, config = convert(model)
    with pytest.raises(ValueError, match="output_router_logits=True"):
        hax.apply_tree(tree, config, IDS)
    # Gemma2 copies much of Gemma but caps its logits and adds norms: not registered.
    gemma2 = tf.Gemma2ForCausalLM(tf.Gemma2Config(**LLAMA_LIKE))
    with pytest.raises(ConversionError, match="Gemma2DecoderLayer"):
        convert(gemma2)


@pytest.mark.parametrize("case", ["Qwen3", "GPTNeoX", "OPT"])
def test_a_decoder_made_bidirectional_by_its_config_is_refused(tf, case):
    """`config.is_causal = False` makes transformers build bidirectional masks; HAX's
    decoders build causal ones, so convert refuses rather than compute something else."""
    model = causal_lm(tf, case)
    model.config.is_causal = False
    with pytest.raises(ConversionError, match="is_causal is False"):
        convert(model)


def test_gpt2_made_bidirectional_by_its_config_is_refused(tf):
    model = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=100, n_embd=32, n_layer=1, n_head=4))
    model.config.is_causal = False
    with pytest.raises(ConversionError, match="is_causal is False"):
        convert(model)
    model.config.is_causal = True
    convert(model)
