"""Hugging Face Llama, and Mistral and Qwen2 (built from copies of Llama's classes),
convert with no user code: outputs match torch with grouped-query attention, padding,
sliding windows and packed sequences; rotary embeddings come from the model's
non-persistent `inv_freq`; attention dropout draws from the attention node's key."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hf_cases import IDS, assert_logits_match_torch_with_padding, import_transformers, torch_run

import hax
from hax.interop import convert, to_torch

# (config class, extra settings): Mistral with a sliding window on every layer, Qwen2
# with full attention on its first layer and a sliding window on the second.
FAMILIES = {
    "Llama": {},
    "Mistral": dict(sliding_window=4),
    "Qwen2": dict(use_sliding_window=True, sliding_window=3, max_window_layers=1),
}


@pytest.fixture(scope="module")
def tf():
    return import_transformers()


def decoder_config(tf, family, **overrides):
    settings = dict(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention: 2 query heads per key head
        max_position_embeddings=64,
    )
    config_class = getattr(tf, f"{family}Config")
    return config_class(**{**settings, **FAMILIES[family], **overrides})


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_causal_lm_matches_torch_with_and_without_padding(tf, family):
    torch.manual_seed(0)
    model = getattr(tf, f"{family}ForCausalLM")(decoder_config(tf, family)).eval()
    tree, config = convert(model)
    assert_logits_match_torch_with_padding(model, tree, config)
    state = to_torch(tree)
    assert not any("inv_freq" in name for name in state)  # non-persistent, as in torch
    model.load_state_dict(state, strict=True)


def test_llama_model_packed_sequences_labels_and_scaled_rope_match_torch(tf):
    torch.manual_seed(1)
    rope = {"rope_type": "linear", "factor": 2.0, "rope_theta": 500.0}
    settings = dict(rope_parameters=rope, attn_implementation="eager")
    model = tf.LlamaModel(decoder_config(tf, "Llama", **settings)).eval()
    tree, config = convert(model)
    rotary = tree["submodules"]["rotary_emb"]
    assert rotary["aux"]["non_persistent"] == ("inv_freq", "original_inv_freq")
    np.testing.assert_array_equal(rotary["buffers"]["inv_freq"], model.rotary_emb.inv_freq.numpy())
    # Positions that restart mark packed sequences, which must not see each other when
    # the model runs without a cache (use_cache=False; by default config.use_cache).
    positions = np.array([[0, 1, 2, 3, 0, 1, 2, 0, 1, 2]] * 3)
    for use_cache in (None, False):
        inputs = dict(input_ids=IDS, position_ids=positions, use_cache=use_cache)
        expected = torch_run(model, **inputs).last_hidden_state.numpy()
        out = hax.apply_tree(tree, config, **inputs)[1]
        assert set(out) == {"last_hidden_state"}
        np.testing.assert_allclose(out["last_hidden_state"], expected, rtol=1e-5, atol=1e-5)
    model.load_state_dict(to_torch(tree), strict=True)

    lm = tf.LlamaForCausalLM(decoder_config(tf, "Llama", **settings)).eval()
    lm_tree, lm_config = convert(lm)
    labels = IDS.copy()
    labels[:, :2] = -100
    expected = torch_run(lm, input_ids=IDS, labels=labels, logits_to_keep=0).loss.item()
    out = hax.apply_tree(lm_tree, lm_config, IDS, labels=labels)[1]
    np.testing.assert_allclose(out["loss"], expected, rtol=1e-5, atol=1e-5)


def test_decoder_rejects_what_it_does_not_run(tf):
    model = tf.LlamaForCausalLM(decoder_config(tf, "Llama"))
    tree, config = convert(model)
    for option in ("past_key_values", "output_attentions", "use_cache", "cache_position"):
        with pytest.raises(ValueError, match=f"decoder model: {option} is not supported"):
            hax.apply_tree(tree, config, IDS, **{option: True})
    dynamic = {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0}
    model = tf.LlamaModel(decoder_config(tf, "Llama", rope_parameters=dynamic))
    tree, config = convert(model)
    with pytest.raises(ValueError, match="rope_type 'dynamic' recomputes its frequencies"):
        hax.apply_tree(tree, config, IDS)


def test_attention_dropout_draws_from_the_attention_key_at_the_configured_rate(tf):
    p = 0.25
    model = tf.LlamaForCausalLM(
        decoder_config(tf, "Llama", attention_dropout=p, num_key_value_heads=4)
    ).train()
    attention = model.model.layers[0].self_attn
    with torch.no_grad():  # values and outputs pass through: the output is the weights
        attention.v_proj.weight.copy_(torch.eye(32))
        attention.o_proj.weight.copy_(torch.eye(32))
    tree, config = convert(model, rng=7)
    assert config == {"train_mode": True}
    node = tree["submodules"]["model"]["submodules"]["layers"]["submodules"]["0"]
    node = node["submodules"]["self_attn"]
    assert jnp.issubdtype(node["buffers"]["rng"].dtype, jax.dtypes.prng_key)
    assert "model.layers.0.self_attn.rng" not in to_torch(tree)  # torch has no key
    # One token: each head's single weight is 1, dropped to 0 or kept as 1 / (1 - p).
    hidden = jnp.ones((1000, 1, 32))
    rotary = (jnp.ones((1000, 1, 8)), jnp.zeros((1000, 1, 8)))
    new_node, out = hax.apply_tree(node, config, hidden, position_embeddings=rotary)
    assert abs(float(jnp.mean(out == 0)) - p) < 0.03
    np.testing.assert_allclose(out[out != 0], 1 / (1 - p), rtol=1e-6)
    old_key, new_key = node["buffers"]["rng"], new_node["buffers"]["rng"]
    assert not np.array_equal(jax.random.key_data(old_key), jax.random.key_data(new_key))
    eval_config = {**config, "train_mode": False}
    _, out = hax.apply_tree(node, eval_config, hidden, position_embeddings=rotary)
    np.testing.assert_allclose(out, 1.0, rtol=1e-6)
