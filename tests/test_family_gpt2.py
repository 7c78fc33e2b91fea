"""Hugging Face GPT-2 converts with no user code: outputs match torch (padding, packed
sequences, token types, cross-attention), the LM head stays one leaf tied to `wte`,
three Adam steps train as torch's, dropout draws at the configured rates, and a model
fine-tuned in HAX loads back into torch."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from hf_cases import (
    IDS,
    RIGHT,
    RNG,
    assert_logits_match_torch_with_padding,
    import_transformers,
    torch_run,
)

import hax
from hax.interop import convert, to_torch


@pytest.fixture(scope="module")
def tf():
    return import_transformers()


def gpt2_config(tf, **overrides):
    settings = dict(vocab_size=100, n_positions=32, n_embd=32, n_layer=2, n_head=4)
    return tf.GPT2Config(**settings, bos_token_id=1, eos_token_id=1, **overrides)


@pytest.fixture(scope="module")
def lm(tf):
    """A `GPT2LMHeadModel` in eval mode and its conversion."""
    torch.manual_seed(0)
    model = tf.GPT2LMHeadModel(gpt2_config(tf)).eval()
    return model, *convert(model)


def test_gpt2_lm_head_model_matches_torch_with_and_without_padding(lm):
    model, tree, config = lm
    assert_logits_match_torch_with_padding(model, tree, config)
    model.load_state_dict(to_torch(tree), strict=True)


@pytest.mark.parametrize("use_cache", [None, False])
def test_gpt2_packed_sequences_token_types_and_logits_to_keep_match_torch(lm, use_cache):
    model, tree, config = lm
    model.set_attn_implementation("eager")
    # Positions that restart mark packed sequences, which must not see each other when
    # the model runs without a cache (use_cache=False; by default config.use_cache).
    positions = np.array([[0, 1, 2, 3, 0, 1, 2, 0, 1, 2]] * 3)
    types = RNG.integers(0, 100, IDS.shape)
    inputs = dict(input_ids=IDS, position_ids=positions, token_type_ids=types, use_cache=use_cache)
    for keep in (0, 4, np.array([0, 5, 9])):
        expected = torch_run(model, **inputs, logits_to_keep=keep).logits.numpy()
        out = hax.apply_tree(tree, config, **inputs, logits_to_keep=keep)[1]["logits"]
        assert out.shape == expected.shape
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_gpt2_model_with_cross_attention_matches_torch(tf):
    torch.manual_seed(2)
    model = tf.GPT2Model(gpt2_config(tf, add_cross_attention=True)).eval()
    tree, config = convert(model)
    encoder = RNG.normal(size=(3, 6, 32)).astype(np.float32)
    encoder_mask = np.ones((3, 6), np.int64)
    encoder_mask[0, 4:] = 0
    for extra in ({}, dict(encoder_hidden_states=encoder, encoder_attention_mask=encoder_mask)):
        inputs = dict(input_ids=IDS, attention_mask=RIGHT, **extra)
        expected = torch_run(model, **inputs).last_hidden_state.numpy()
        out = hax.apply_tree(tree, config, **inputs)[1]
        assert set(out) == {"last_hidden_state"}
        np.testing.assert_allclose(out["last_hidden_state"], expected, rtol=1e-5, atol=1e-5)
    model.load_state_dict(to_torch(tree), strict=True)


def test_gpt2_rejects_what_it_does_not_run(lm):
    _, tree, config = lm
    for option in ("past_key_values", "output_attentions", "use_cache", "output_hidden_states"):
        with pytest.raises(ValueError, match=f"GPT2Model: {option} is not supported"):
            hax.apply_tree(tree, config, IDS, **{option: True})
    with pytest.raises(ValueError, match="add_cross_attention"):
        hax.apply_tree(tree, config, IDS, encoder_hidden_states=jnp.zeros((3, 2, 32)))


def lm_loss(config):
    def loss(tree, ids):
        new_tree, out = hax.apply_tree(tree, config, ids, labels=ids)
        return out["loss"], new_tree

    return loss


@pytest.fixture(scope="module")
def trained(tf):
    """A `GPT2LMHeadModel` with every dropout probability 0, in train mode, and three
    Adam steps taken on it in HAX (from its conversion) and in torch."""
    torch.manual_seed(3)
    no_dropout = dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = tf.GPT2LMHeadModel(gpt2_config(tf, **no_dropout)).train()
    tree, config = convert(model)
    # lr 1e-3: the key bias gets a gradient that is zero but for rounding, which Adam
    # scales up to about lr in both frameworks, differently.
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(hax.optim.params_of(tree))
    step = hax.jit(hax.optim.train_step(lm_loss(config), optimizer))
    torch_optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    ids = RNG.integers(0, 100, (4, 12))
    losses = []
    for _ in range(3):
        tree, opt_state, metrics = step(tree, opt_state, ids)
        torch_optimizer.zero_grad()
        loss = model(torch.as_tensor(ids), labels=torch.as_tensor(ids)).loss
        loss.backward()
        torch_optimizer.step()
        losses.append((float(metrics["loss"]), loss.item()))
    return model, tree, config, losses


def test_gpt2_three_adam_steps_train_as_torch_with_the_tied_head(trained):
    model, tree, config, losses = trained
    assert config == {"train_mode": True}
    names = [name for name, _ in hax.named_leaves(tree)]
    assert "lm_head/params/weight" not in names
    assert tree["submodules"]["lm_head"]["aux"]["tied"] == ("weight",)
    hax_losses, torch_losses = zip(*losses, strict=True)
    np.testing.assert_allclose(hax_losses, torch_losses, rtol=1e-5, atol=1e-5)
    assert hax_losses[-1] < hax_losses[0]
    state = to_torch(tree)
    assert state["lm_head.weight"] is state["transformer.wte.weight"]
    assert model.lm_head.weight is model.transformer.wte.weight
    for name, value in model.state_dict().items():
        np.testing.assert_allclose(state[name], value.numpy(), rtol=1e-5, atol=1e-5, err_msg=name)


def test_gpt2_fine_tuned_in_hax_loads_back_into_torch(tf, trained):
    _, tree, config, _ = trained
    fresh = tf.GPT2LMHeadModel(gpt2_config(tf)).eval()
    fresh.load_state_dict(to_torch(tree), strict=True)
    assert fresh.lm_head.weight is fresh.transformer.wte.weight
    eval_config = {**config, "train_mode": False}
    logits = hax.apply_tree(tree, eval_config, IDS, attention_mask=RIGHT)[1]["logits"]
    expected = torch_run(fresh, input_ids=IDS, attention_mask=RIGHT).logits.numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_gpt2_dropout_draws_the_configured_rates_from_buffer_keys(tf):
    rates = dict(embd_pdrop=0.2, resid_pdrop=0.3, attn_pdrop=0.4)
    model = tf.GPT2LMHeadModel(gpt2_config(tf, **rates)).train()
    tree, config = convert(model, rng=5)
    paths = [
        "transformer/drop",
        "transformer/h/*/attn/resid_dropout",
        "transformer/h/*/attn/attn_dropout",
    ]
    ids = RNG.integers(0, 100, (8, 16))
    capture = hax.jit(lambda tree, config, ids: hax.surgery.intermediates(tree, config, paths, ids))
    new_tree, _, acts = capture(tree, config, ids)
    (embedded,) = acts["transformer/drop"]
    assert abs(float(jnp.mean(embedded == 0)) - 0.2) < 0.03
    causal = np.tril(np.ones((16, 16), bool))  # masked weights are 0 before dropout
    for i in range(2):
        (resid,) = acts[f"transformer/h/{i}/attn/resid_dropout"]
        assert abs(float(jnp.mean(resid == 0)) - 0.3) < 0.03
        (weights,) = acts[f"transformer/h/{i}/attn/attn_dropout"]
        assert abs(float(jnp.mean(weights[..., causal] == 0)) - 0.4) < 0.03
    # the keys live in buffers and advance; evaluation draws nothing
    key = tree["submodules"]["transformer"]["submodules"]["drop"]["buffers"]["rng"]
    new_key = new_tree["submodules"]["transformer"]["submodules"]["drop"]["buffers"]["rng"]
    assert not np.array_equal(jax.random.key_data(key), jax.random.key_data(new_key))
    _, _, acts = capture(tree, {**config, "train_mode": False}, ids)
    assert float(jnp.mean(acts["transformer/drop"][0] == 0)) == 0.0
