"""Hugging Face BERT-like encoders convert with no user code (`hax.interop.convert(model)`),
match torch, train as torch does, drop out at the configured rate and go back with
`to_torch`. ELECTRA, RoBERTa, XLM-RoBERTa and Data2VecText run the same registered
applies; DistilBERT has its own."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from conftest import import_torchvision

import hax
from hax.interop import convert, to_torch

import_torchvision()  # transformers imports it
transformers = pytest.importorskip("transformers")

SMALL = dict(
    vocab_size=50,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=40,
    type_vocab_size=2,
    num_labels=3,
)
DISTILBERT = dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64)
RNG = np.random.default_rng(0)
IDS = RNG.integers(3, 50, (3, 12))
MASK = np.ones((3, 12), np.int64)
MASK[1, 8:] = 0
MASK[2, 4:] = 0
IDS[MASK == 0] = 1  # the padding token (RoBERTa's pad_token_id)
TYPES = (np.arange(12) >= 6).astype(np.int64)[None].repeat(3, 0)


def build(cls, config_cls=None, **overrides):
    torch.manual_seed(0)
    config_cls = config_cls or transformers.BertConfig
    return cls(config_cls(**{**SMALL, **overrides})).eval()


def torch_out(model, **inputs):
    with torch.no_grad():
        return model(**{k: torch.from_numpy(v) for k, v in inputs.items()})


def assert_close(ours, theirs):
    theirs = theirs.detach().numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))


def assert_goes_back(model, tree):
    model.load_state_dict(to_torch(tree), strict=True)


def test_bert_model_matches_torch_with_padding_token_types_and_packed_positions():
    model = build(transformers.BertModel)
    tree, config = convert(model)
    embeddings = tree["submodules"]["embeddings"]
    assert embeddings["aux"]["non_persistent"] == ("position_ids", "token_type_ids")
    assert set(embeddings["buffers"]) == {"position_ids", "token_type_ids"}
    assert not any("position_ids" in k or "token_type_ids" in k for k in to_torch(tree))
    packed = np.concatenate([np.arange(5), np.arange(7)])[None].repeat(3, 0)
    for inputs in (
        {"input_ids": IDS, "attention_mask": MASK, "token_type_ids": TYPES},
        {"input_ids": IDS},  # token types from the buffer, no mask
        {"input_ids": IDS, "position_ids": packed},  # two sequences in each row
    ):
        expected = torch_out(model, **inputs)
        out = hax.apply_tree(tree, config, **inputs)[1]
        assert set(out) == {"last_hidden_state", "pooler_output"}
        assert_close(out["last_hidden_state"], expected.last_hidden_state)
        assert_close(out["pooler_output"], expected.pooler_output)
    assert_goes_back(model, tree)


def test_bert_for_sequence_classification_logits_and_loss_match_torch():
    model = build(transformers.BertForSequenceClassification)
    tree, config = convert(model)
    labels = np.array([0, 2, 1])
    expected = torch_out(model, input_ids=IDS, attention_mask=MASK, labels=labels)
    out = hax.apply_tree(tree, config, IDS, attention_mask=MASK, labels=labels)[1]
    assert set(out) == {"loss", "logits"}
    assert_close(out["logits"], expected.logits)
    assert_close(out["loss"], expected.loss)
    assert_goes_back(model, tree)


@pytest.mark.parametrize(
    "cls, config_cls",
    [
        ("BertForTokenClassification", "BertConfig"),
        ("BertForMaskedLM", "BertConfig"),  # decoder tied to the word embeddings
        ("RobertaForSequenceClassification", "RobertaConfig"),
        ("RobertaForMaskedLM", "RobertaConfig"),
        ("XLMRobertaModel", "XLMRobertaConfig"),
        ("Data2VecTextForSequenceClassification", "Data2VecTextConfig"),
        ("ElectraForSequenceClassification", "ElectraConfig"),  # embeddings projected
        ("DistilBertForSequenceClassification", "DistilBertConfig"),  # its own classes
        ("DistilBertModel", "DistilBertConfig"),
    ],
)
def test_heads_and_families_that_copy_bert_match_torch(cls, config_cls):
    overrides = {"ElectraConfig": {"embedding_size": 16}, "DistilBertConfig": DISTILBERT}
    model = build(
        getattr(transformers, cls),
        getattr(transformers, config_cls),
        **overrides.get(config_cls, {}),
    )
    tree, config = convert(model)
    expected = torch_out(model, input_ids=IDS, attention_mask=MASK)
    out = hax.apply_tree(tree, config, input_ids=IDS, attention_mask=MASK)[1]
    key = "last_hidden_state" if cls.endswith("Model") else "logits"
    assert_close(out[key], getattr(expected, key))
    assert_goes_back(model, tree)


def test_roberta_positions_count_from_the_padding_index():
    model = build(transformers.RobertaModel, transformers.RobertaConfig)
    tree, config = convert(model)
    for inputs in ({"input_ids": IDS}, {"inputs_embeds": RNG.normal(size=(3, 12, 32))}):
        inputs = {k: v.astype(np.float32) if k == "inputs_embeds" else v for k, v in inputs.items()}
        expected = torch_out(model, **inputs)
        out = hax.apply_tree(tree, config, **inputs)[1]
        assert_close(out["last_hidden_state"], expected.last_hidden_state)


def test_unsupported_options_are_named():
    model = build(transformers.BertForSequenceClassification)
    tree, config = convert(model)
    with pytest.raises(ValueError, match=r"does not support output_attentions=True"):
        hax.apply_tree(tree, config, IDS, output_attentions=True)
    with pytest.raises(ValueError, match=r"head_mask="):
        hax.apply_tree(tree, config, IDS, head_mask=np.ones(2))
    with pytest.raises(ValueError, match="exactly one of input_ids or inputs_embeds"):
        hax.apply_tree(tree, config)
    out = hax.apply_tree(tree, config, IDS, output_attentions=False, return_dict=True)[1]
    assert set(out) == {"logits"}


def test_bert_trains_as_torch_with_dropout_off():
    model = build(
        transformers.BertForSequenceClassification,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    ).train()
    tree, config = convert(model)
    assert config == {"train_mode": True}
    labels = np.array([0, 2, 1])

    def loss_fn(tree, batch):
        ids, mask, labels = batch
        new_tree, out = hax.apply_tree(tree, config, ids, attention_mask=mask)
        return optax.softmax_cross_entropy_with_integer_labels(
            out["logits"], labels
        ).mean(), new_tree

    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(hax.optim.params_of(tree))
    step = hax.jit(hax.optim.train_step(loss_fn, optimizer))
    torch_opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(3):
        tree, opt_state, metrics = step(tree, opt_state, (IDS, MASK, labels))
        torch_opt.zero_grad()
        out = model(torch.from_numpy(IDS), attention_mask=torch.from_numpy(MASK))
        loss = torch.nn.functional.cross_entropy(out.logits, torch.from_numpy(labels))
        loss.backward()
        torch_opt.step()
        np.testing.assert_allclose(metrics["loss"], loss.item(), rtol=1e-5, atol=1e-6)
    ours = to_torch(tree)
    for name, value in model.state_dict().items():
        np.testing.assert_allclose(ours[name], value.numpy(), rtol=1e-5, atol=1e-5, err_msg=name)


def test_bert_dropout_draws_from_buffer_keys_at_the_configured_rate():
    model = build(
        transformers.BertModel, hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.2
    ).train()
    tree, config = convert(model, rng=1)
    assert config == {"train_mode": True}
    ids = RNG.integers(3, 50, (16, 32))
    paths = ["embeddings/dropout", "encoder/layer/0/attention/self/dropout"]
    new_tree, _, acts = hax.surgery.intermediates(tree, config, paths, ids)
    ((embedded,), (weights,)) = acts[paths[0]], acts[paths[1]]
    assert abs(float(jnp.mean(embedded == 0)) - 0.3) < 0.02
    assert abs(float(jnp.mean(weights == 0)) - 0.2) < 0.02
    key = tree["submodules"]["embeddings"]["submodules"]["dropout"]["buffers"]["rng"]
    new_key = new_tree["submodules"]["embeddings"]["submodules"]["dropout"]["buffers"]["rng"]
    assert not np.array_equal(jax.random.key_data(key), jax.random.key_data(new_key))
    evaluated = hax.apply_tree(tree, {"train_mode": False}, ids)[1]["last_hidden_state"]
    expected = torch_out(model.eval(), input_ids=ids).last_hidden_state
    assert_close(evaluated, expected)
