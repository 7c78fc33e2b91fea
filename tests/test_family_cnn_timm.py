"""timm's ResNet, ConvNeXt, EfficientNet and MobileNetV3 families convert with no user
code, match torch's logits in eval mode and go back with `to_torch`; their dropout and
drop-path drop at their configured rates in training."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cnn_cases import assert_converts_and_matches, images, randomize, skip_while_hax_nn_lacks
from conftest import import_torchvision

import hax
from hax.interop import convert

import_torchvision()  # timm imports it
timm = pytest.importorskip("timm")
resnet = pytest.importorskip("timm.models.resnet")
convnext = pytest.importorskip("timm.models.convnext")
efficientnet = pytest.importorskip("timm.models.efficientnet")
builder = pytest.importorskip("timm.models._efficientnet_builder")
BlurPool2d = pytest.importorskip("timm.layers").BlurPool2d


def _create(name: str, **kwargs: object) -> object:
    return timm.create_model(name, pretrained=False, num_classes=10, **kwargs)


def _efficientnet_blocks() -> object:
    """An EfficientNet of every block kind: ConvBnAct with skip, EdgeResidual (V2's
    FusedMBConv), InvertedResidual with SqueezeExcite, DepthwiseSeparableConv; with
    drop-path and head dropout."""
    arch = [
        ["cn_r1_k3_s1_e1_c16_skip"],
        ["er_r2_k3_s2_e4_c24"],
        ["ir_r2_k3_s2_e4_c32_se0.25"],
        ["ds_r1_k3_s1_e1_c32"],
    ]
    return efficientnet.EfficientNet(
        builder.decode_arch_def(arch),
        num_classes=10,
        stem_size=16,
        num_features=64,
        drop_rate=0.2,
        drop_path_rate=0.1,
    )


MODELS = {
    "resnet18": functools.partial(_create, "resnet18"),
    "convnext_atto": functools.partial(_create, "convnext_atto"),
    # Bottleneck, deep stem, average-pool downsampling (resnet26d), ECA attention,
    # anti-aliasing, drop-path
    "resnet_d_eca_blur": functools.partial(
        resnet.ResNet,
        resnet.Bottleneck,
        [1, 1, 1, 1],
        num_classes=10,
        stem_width=16,
        stem_type="deep",
        avg_down=True,
        channels=(16, 32, 48, 64),
        aa_layer=BlurPool2d,
        block_args={"attn_layer": "eca"},
        drop_path_rate=0.1,
        drop_rate=0.2,
    ),
    # BasicBlock with squeeze-excitation (seresnet18), max global pooling
    "seresnet_basic": functools.partial(
        resnet.ResNet,
        resnet.BasicBlock,
        [1, 1, 1, 1],
        num_classes=10,
        channels=(16, 32, 48, 64),
        block_args={"attn_layer": "se"},
        global_pool="fast_max",
    ),
    # ConvNeXt-V2: GlobalResponseNormMlp
    "convnextv2_atto": functools.partial(_create, "convnextv2_atto"),
    # 1x1-conv MLP with channels-first norms, head norm first (ClassifierHead),
    # RMS norms, the overlapping stem
    "convnext_conv_mlp": functools.partial(
        convnext.ConvNeXt,
        num_classes=10,
        depths=(1, 1, 2, 1),
        dims=(16, 24, 32, 48),
        conv_mlp=True,
        head_norm_first=True,
        norm_layer="rmsnorm2d",
        stem_type="overlap_act",
        drop_path_rate=0.1,
    ),
    "efficientnet_b0": functools.partial(_create, "efficientnet_b0"),
    # Conv2dSame: TensorFlow's 'SAME' padding, from the input size
    "tf_efficientnet_b0": functools.partial(_create, "tf_efficientnet_b0"),
    "efficientnet_blocks": _efficientnet_blocks,
    "mobilenetv3_small_050": functools.partial(_create, "mobilenetv3_small_050"),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_converts_with_no_user_code_and_matches_torch(name):
    x = images(2, 32)
    model = randomize(MODELS[name](), x)
    if name.startswith("mobilenetv3"):
        skip_while_hax_nn_lacks(model, {"Hardswish", "Hardsigmoid"})
    error = assert_converts_and_matches(model, x)
    assert error < 1e-5


def test_drop_path_drops_samples_at_its_rate():
    model = _create("convnext_atto", drop_path_rate=0.5)
    tree, config = convert(model)
    assert config == {"train_mode": True}
    node = hax.get_subtree(tree, "stages/3/blocks/1/drop_path")
    p = node["aux"]["drop_prob"]
    assert p == pytest.approx(0.5)
    x = jnp.ones((4000, 2, 1, 1))
    new, y = hax.apply_tree(node, config, x)
    dropped = np.asarray(y[:, 0, 0, 0] == 0)
    assert abs(dropped.mean() - p) < 0.03
    assert np.all(np.asarray(y)[~dropped] == pytest.approx(1 / (1 - p)))
    assert np.all(np.asarray(y)[dropped] == 0)
    assert not np.array_equal(
        jax.random.key_data(new["buffers"]["rng"]), jax.random.key_data(node["buffers"]["rng"])
    )
    _, y = hax.apply_tree(node, {"train_mode": False}, x)
    assert np.array_equal(y, x)


def test_resnet_head_dropout_drops_features_at_drop_rate():
    # no classifier (num_classes=0): the output is the pooled features after dropout
    model = resnet.ResNet(
        resnet.BasicBlock, [1, 1, 1, 1], num_classes=0, channels=(8, 8, 16, 512), drop_rate=0.25
    )
    tree, config = convert(model)
    assert tree["aux"]["drop_rate"] == 0.25 and "rng" in tree["buffers"]
    x = images(4, 32)
    without = {**tree, "aux": {**tree["aux"], "drop_rate": 0.0}}
    _, features = hax.apply_tree(without, config, x)
    new, y = hax.apply_tree(tree, config, x)
    y, features = np.asarray(y), np.asarray(features)
    live, kept = features != 0, y != 0  # some pooled ReLU features are 0 already
    assert live.sum() > 1000 and not np.any(kept & ~live)
    assert abs(1 - kept[live].mean() - 0.25) < 0.03
    np.testing.assert_allclose(y[kept], features[kept] / 0.75, rtol=1e-6)
    assert not np.array_equal(
        jax.random.key_data(new["buffers"]["rng"]), jax.random.key_data(tree["buffers"]["rng"])
    )
    _, y = hax.apply_tree(tree, {"train_mode": False}, x)
    _, features = hax.apply_tree(without, {"train_mode": False}, x)
    assert np.array_equal(y, features)
