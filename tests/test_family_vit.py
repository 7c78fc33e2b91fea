"""Vision transformers from Hugging Face (ViT, DeiT, DINOv2), torchvision and timm convert with
no user code (`hax.interop.convert(model)`), match torch, go back with `to_torch`, and
draw dropout and drop-path from keys in their buffers at the configured rate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import import_torchvision

import hax
from hax.interop import convert, to_torch

torchvision = import_torchvision()  # transformers imports it too
transformers = pytest.importorskip("transformers")
timm = pytest.importorskip("timm")

IMAGES = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
HF_SMALL = dict(
    image_size=32,
    patch_size=8,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    num_labels=10,
)
TIMM_SMALL = dict(img_size=32, patch_size=8, depth=2, num_classes=10)


def torch_out(model, *args, **kwargs):
    with torch.no_grad():
        return model(*(torch.from_numpy(a) for a in args), **kwargs)


def assert_close(ours, theirs):
    theirs = theirs.detach().numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))


def convert_and_check(model, *inputs):
    """Convert `model` (eval mode), compare its output with torch's, load it back."""
    tree, config = convert(model.eval())
    assert config == {"train_mode": False}
    expected = torch_out(model, *inputs)
    out = hax.apply_tree(tree, config, *inputs)[1]
    model.load_state_dict(to_torch(tree), strict=True)
    return tree, config, out, expected


@pytest.mark.parametrize(
    "cls, config_cls, fields",
    [
        ("ViTModel", "ViTConfig", ("last_hidden_state", "pooler_output")),
        ("ViTForImageClassification", "ViTConfig", ("logits",)),
        ("DeiTModel", "DeiTConfig", ("last_hidden_state", "pooler_output")),
        (
            "DeiTForImageClassificationWithTeacher",
            "DeiTConfig",
            ("logits", "cls_logits", "distillation_logits"),
        ),
        ("Dinov2Model", "Dinov2Config", ("last_hidden_state", "pooler_output")),
        ("Dinov2ForImageClassification", "Dinov2Config", ("logits",)),
    ],
)
def test_hugging_face_vit_deit_and_dinov2_match_torch(cls, config_cls, fields):
    torch.manual_seed(0)
    overrides = {"use_swiglu_ffn": True, "drop_path_rate": 0.1} if "Classification" in cls else {}
    config = getattr(transformers, config_cls)(**HF_SMALL, **overrides)
    model = getattr(transformers, cls)(config)
    for name, param in model.named_parameters():
        if name.endswith("lambda1"):  # DINOv2's layer scale, 1.0 at init
            torch.nn.init.uniform_(param, 0.5, 1.5)
    _, _, out, expected = convert_and_check(model, IMAGES)
    assert tuple(out) == fields
    for field in fields:
        assert_close(out[field], getattr(expected, field))


def test_hugging_face_vit_loss_masked_patches_and_unsupported_options():
    torch.manual_seed(1)
    config = transformers.ViTConfig(**HF_SMALL)
    model = transformers.ViTForImageClassification(config).eval()
    tree, hax_config = convert(model)
    labels = np.array([3, 7])
    expected = torch_out(model, IMAGES, labels=torch.from_numpy(labels))
    out = hax.apply_tree(tree, hax_config, IMAGES, labels=labels)[1]
    assert_close(out["loss"], expected.loss)
    masked = transformers.ViTModel(config, use_mask_token=True).eval()
    torch.nn.init.normal_(masked.embeddings.mask_token)
    tree, hax_config = convert(masked)
    positions = np.random.default_rng(1).random((2, 16)) < 0.5
    expected = torch_out(masked, IMAGES, bool_masked_pos=torch.from_numpy(positions))
    out = hax.apply_tree(tree, hax_config, IMAGES, bool_masked_pos=positions)[1]
    assert_close(out["last_hidden_state"], expected.last_hidden_state)
    with pytest.raises(ValueError, match="output_hidden_states=True"):
        hax.apply_tree(tree, hax_config, IMAGES, output_hidden_states=True)
    with pytest.raises(ValueError, match="interpolate_pos_encoding=True"):
        hax.apply_tree(
            tree, hax_config, np.zeros((1, 3, 48, 48), np.float32), interpolate_pos_encoding=True
        )


def test_hugging_face_vit_attention_dropout_draws_from_the_attention_key():
    torch.manual_seed(2)
    config = transformers.ViTConfig(**{**HF_SMALL, "attention_probs_dropout_prob": 0.25})
    tree, hax_config = convert(transformers.ViTModel(config).train(), rng=0)
    assert hax_config == {"train_mode": True}
    path = "layers/0/attention"
    key = tree["submodules"]["layers"]["submodules"]["0"]["submodules"]["attention"]["buffers"][
        "rng"
    ]
    assert jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    images = np.random.default_rng(2).normal(size=(16, 3, 32, 32)).astype(np.float32)
    new_tree, _, acts = hax.surgery.intermediates(tree, hax_config, path, images)
    ((_, weights),) = acts[path]
    assert abs(float(jnp.mean(weights == 0)) - 0.25) < 0.02
    new_key = hax.surgery.get(new_tree, path)["buffers"]["rng"]
    assert not np.array_equal(jax.random.key_data(new_key), jax.random.key_data(key))


def test_torchvision_vit_matches_torch():
    torch.manual_seed(3)
    model = torchvision.models.VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=64,
        num_classes=10,
    )
    torch.nn.init.normal_(model.heads.head.weight)  # torchvision starts it at zero
    tree, _, out, expected = convert_and_check(model, IMAGES)
    assert hax.surgery.get(tree, "encoder/layers/encoder_layer_0/self_attention")["apply"] is (
        hax.nn.multihead_attention_apply
    )
    assert_close(out, expected)


def _randomize_layer_scales(model):
    for module in model.modules():
        if isinstance(module, timm.layers.LayerScale):
            torch.nn.init.uniform_(module.gamma, 0.5, 1.5)
    return model


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("vit_tiny_patch16_224", {}),
        ("deit3_small_patch16_224", {"embed_dim": 48, "num_heads": 3}),  # LayerScale
        ("deit_tiny_distilled_patch16_224", {"embed_dim": 48, "num_heads": 3}),
        (
            "vit_tiny_patch16_224",
            {"global_pool": "avg", "reg_tokens": 2, "qk_norm": True, "class_token": False},
        ),
        (
            "vit_tiny_patch16_224",
            {"dynamic_img_size": True, "no_embed_class": True, "pre_norm": True},
        ),
    ],
)
def test_timm_vits_match_torch(name, overrides):
    torch.manual_seed(4)
    model = timm.create_model(name, pretrained=False, **TIMM_SMALL, **overrides)
    _, _, out, expected = convert_and_check(_randomize_layer_scales(model), IMAGES)
    assert_close(out, expected)


def test_timm_drop_path_and_dropout_draw_from_buffer_keys_at_the_configured_rate():
    torch.manual_seed(5)
    model = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        **TIMM_SMALL,
        embed_dim=24,
        num_heads=2,
        drop_path_rate=0.6,  # 0.0 in block 0, 0.6 in block 1
        proj_drop_rate=0.2,
    ).train()
    tree, config = convert(model, rng=0)
    assert config == {"train_mode": True}
    node = hax.surgery.get(tree, "blocks/1/drop_path1")
    assert node["aux"]["drop_prob"] == pytest.approx(0.6)
    assert jnp.issubdtype(node["buffers"]["rng"].dtype, jax.dtypes.prng_key)
    images = np.random.default_rng(5).normal(size=(200, 3, 32, 32)).astype(np.float32)
    paths = ["blocks/1/ls1", "blocks/1/drop_path1", "blocks/0/mlp/drop2"]
    new_tree, _, acts = hax.surgery.intermediates(tree, config, paths, images)
    ((branch,), (dropped,), (mlp_out,)) = (acts[p] for p in paths)
    kept = jnp.any(dropped != 0, axis=(1, 2))
    assert abs(float(jnp.mean(~kept)) - 0.6) < 0.1  # whole samples are dropped
    np.testing.assert_allclose(dropped[kept], branch[kept] / 0.4, rtol=1e-5, atol=1e-6)
    assert abs(float(jnp.mean(mlp_out == 0)) - 0.2) < 0.02
    new_key = hax.surgery.get(new_tree, "blocks/1/drop_path1")["buffers"]["rng"]
    assert not np.array_equal(
        jax.random.key_data(new_key), jax.random.key_data(node["buffers"]["rng"])
    )
    evaluated = hax.apply_tree(tree, {"train_mode": False}, IMAGES)[1]
    assert_close(evaluated, torch_out(model.eval(), IMAGES))
