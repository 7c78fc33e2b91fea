"""Hugging Face T5, and mT5 (built from copies of T5's classes), convert with no user
code: encoder-decoder, LM and encoder-only outputs match torch with padding on both
sides; the relative position buckets are torch's; the shared embedding is one leaf
tied across encoder, decoder and LM head, and trains as torch's; attention dropout
draws from the attention node's key."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hf_cases import import_transformers, torch_run

import hax
from hax.interop import convert, to_torch
from hax.interop._families._t5 import relative_position_bucket

RNG = np.random.default_rng(0)
IDS = RNG.integers(0, 100, (3, 9))
MASK = np.ones((3, 9), np.int64)
MASK[1, 6:] = 0
MASK[2, :2] = 0  # the encoder attends both ways: padding may sit on either side
DECODER_IDS = RNG.integers(0, 100, (3, 5))
DECODER_MASK = np.ones((3, 5), np.int64)
DECODER_MASK[0, 4:] = 0


@pytest.fixture(scope="module")
def tf():
    return import_transformers()


def t5_config(tf, family="T5", **overrides):
    settings = dict(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
    return getattr(tf, f"{family}Config")(**{**settings, **overrides})


CASES = [
    ("T5", "ForConditionalGeneration", {}, "logits"),
    ("T5", "Model", dict(feed_forward_proj="gated-gelu"), "last_hidden_state"),
    ("T5", "EncoderModel", {}, "last_hidden_state"),
    ("MT5", "ForConditionalGeneration", {}, "logits"),
]


@pytest.mark.parametrize("family, kind, settings, field", CASES)
def test_t5_models_match_torch_with_padding(tf, family, kind, settings, field):
    torch.manual_seed(0)
    model = getattr(tf, family + kind)(t5_config(tf, family, **settings)).eval()
    tree, config = convert(model)
    inputs = dict(input_ids=IDS, attention_mask=MASK)
    if kind != "EncoderModel":
        inputs.update(decoder_input_ids=DECODER_IDS, decoder_attention_mask=DECODER_MASK)
    out = hax.apply_tree(tree, config, **inputs)[1]
    for attn in ("sdpa", "eager"):
        model.set_attn_implementation(attn)
        expected = torch_run(model, **inputs)
        np.testing.assert_allclose(
            out[field], getattr(expected, field).numpy(), rtol=1e-5, atol=1e-5, err_msg=attn
        )
        if kind != "EncoderModel":
            np.testing.assert_allclose(
                out["encoder_last_hidden_state"],
                expected.encoder_last_hidden_state.numpy(),
                rtol=1e-5,
                atol=1e-5,
            )
    model.load_state_dict(to_torch(tree), strict=True)


def test_relative_position_buckets_are_torchs(tf):
    attention = tf.models.t5.modeling_t5.T5Attention
    relative = np.arange(-600, 600)[None, :] - np.arange(3)[:, None]
    for bidirectional in (True, False):
        for num_buckets, max_distance in ((32, 128), (16, 64), (64, 256), (8, 20)):
            expected = attention._relative_position_bucket(
                torch.as_tensor(relative), bidirectional, num_buckets, max_distance
            )
            got = relative_position_bucket(relative, bidirectional, num_buckets, max_distance)
            np.testing.assert_array_equal(got, expected.numpy())


def test_t5_v1_1_head_labels_and_tied_gradients_match_torch(tf):
    """T5 v1.1 (tie_word_embeddings=False in its config) does not rescale the decoder
    output; labels give the decoder inputs (shifted right) and the loss; the shared
    embedding gets the gradients of its three uses, as in torch."""
    torch.manual_seed(1)
    settings = dict(tie_word_embeddings=False, dropout_rate=0.0, decoder_start_token_id=0)
    model = tf.T5ForConditionalGeneration(t5_config(tf, **settings)).train()
    tree, config = convert(model)
    assert tree["aux"]["scale_decoder_outputs"] is False
    names = [name for name, _ in hax.named_leaves(tree)]
    assert "shared/params/weight" in names
    for user in ("encoder/embed_tokens", "decoder/embed_tokens", "lm_head"):
        assert f"{user}/params/weight" not in names
        node = tree
        for name in user.split("/"):
            node = node["submodules"][name]
        assert node["aux"]["tied"] == ("weight",)
    labels = DECODER_IDS.copy()
    labels[0, 3:] = -100

    params, rest = hax.split_tree(tree, ["params"])

    def loss(params):
        inputs = dict(attention_mask=MASK, labels=labels)
        out = hax.apply_tree(hax.merge_trees(params, rest), config, IDS, **inputs)[1]
        return out["loss"], (out["logits"], out["encoder_last_hidden_state"])

    (value, (logits, encoded)), grads = jax.value_and_grad(loss, has_aux=True)(params)
    out = model(
        torch.as_tensor(IDS), attention_mask=torch.as_tensor(MASK), labels=torch.as_tensor(labels)
    )
    out.loss.backward()
    np.testing.assert_allclose(value, out.loss.item(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits, out.logits.detach().numpy(), rtol=1e-5, atol=1e-5)
    grad_state = to_torch(hax.merge_trees(grads, rest))
    for name, param in model.named_parameters():
        np.testing.assert_allclose(
            grad_state[name], param.grad.numpy(), rtol=1e-5, atol=1e-5, err_msg=name
        )
    # precomputed encoder outputs skip the encoder
    reused = hax.apply_tree(
        tree, config, attention_mask=MASK, encoder_outputs=(encoded,), labels=labels
    )[1]
    np.testing.assert_allclose(reused["logits"], logits, rtol=1e-6, atol=1e-6)


def test_t5_rejects_what_it_does_not_run(tf):
    model = tf.T5ForConditionalGeneration(t5_config(tf))
    tree, config = convert(model)
    for option in ("past_key_values", "use_cache", "output_attentions"):
        with pytest.raises(ValueError, match=f"T5ForConditionalGeneration: {option} is not"):
            hax.apply_tree(tree, config, IDS, decoder_input_ids=DECODER_IDS, **{option: True})
    with pytest.raises(ValueError, match="decoder_start_token_id"):
        hax.apply_tree(tree, config, IDS, labels=DECODER_IDS)


def test_t5_attention_dropout_draws_from_the_attention_key_at_the_configured_rate(tf):
    p = 0.3
    model = tf.T5EncoderModel(t5_config(tf, dropout_rate=p)).train()
    attention = model.encoder.block[0].layer[0].SelfAttention
    with torch.no_grad():  # values and outputs pass through: the output is the weights
        attention.v.weight.copy_(torch.eye(32))
        attention.o.weight.copy_(torch.eye(32))
    tree, config = convert(model, rng=3)
    assert config == {"train_mode": True}
    node = tree["submodules"]["encoder"]["submodules"]["block"]["submodules"]["0"]
    node = node["submodules"]["layer"]["submodules"]["0"]["submodules"]["SelfAttention"]
    # One token: each head's single weight is 1, dropped to 0 or kept as 1 / (1 - p).
    hidden = jnp.ones((1000, 1, 32))
    new_node, (out, _) = hax.apply_tree(node, config, hidden)
    assert abs(float(jnp.mean(out == 0)) - p) < 0.03
    np.testing.assert_allclose(out[out != 0], 1 / (1 - p), rtol=1e-6)
    old_key, new_key = node["buffers"]["rng"], new_node["buffers"]["rng"]
    assert not np.array_equal(jax.random.key_data(old_key), jax.random.key_data(new_key))
    _, (out, _) = hax.apply_tree(node, {**config, "train_mode": False}, hidden)
    np.testing.assert_allclose(out, 1.0, rtol=1e-6)
