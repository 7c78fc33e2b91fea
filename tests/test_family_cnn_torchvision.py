"""torchvision's classification CNNs convert with no user code, match torch's logits in
eval mode and go back with `to_torch`; their stochastic depth drops at its rate.

Not covered: GoogLeNet and Inception3 (auxiliary classifiers, input transform), and
the transformers (ViT, Swin, MaxViT)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from cnn_cases import assert_converts_and_matches, images, randomize, skip_while_hax_nn_lacks
from conftest import import_torchvision

import hax
from hax.interop import convert

tv = import_torchvision()
models = tv.models
efficientnet = models.efficientnet


def _resnext() -> object:
    """The Bottleneck ResNet of resnet50/resnext/wide_resnet, one block per stage,
    grouped (ResNeXt) and narrow."""
    return models.resnet.ResNet(
        models.resnet.Bottleneck, [1, 1, 1, 1], num_classes=10, groups=4, width_per_group=8
    )


def _efficientnet_v2() -> object:
    """EfficientNetV2's layout (FusedMBConv then MBConv stages, residuals), small."""
    setting = [
        efficientnet.FusedMBConvConfig(1, 3, 1, 16, 16, 2),
        efficientnet.FusedMBConvConfig(4, 3, 2, 16, 24, 2),
        efficientnet.MBConvConfig(4, 3, 2, 24, 32, 2),
    ]
    return efficientnet.EfficientNet(setting, dropout=0.2, num_classes=10, last_channel=64)


def _convnext() -> object:
    """torchvision's ConvNeXt (CNBlock, LayerNorm2d, Permute, StochasticDepth), small."""
    setting = [models.convnext.CNBlockConfig(16, 32, 2), models.convnext.CNBlockConfig(32, None, 2)]
    return models.convnext.ConvNeXt(setting, stochastic_depth_prob=0.1, num_classes=10)


def _vgg() -> object:
    """VGG with batch norm: small features, and a classifier for them (torchvision's is
    fixed at 512 * 7 * 7 -> 4096 -> 4096 inputs, 120M params)."""
    model = models.vgg.VGG(models.vgg.make_layers([8, "M", 16, "M"], batch_norm=True))
    nn = torch.nn
    model.classifier = nn.Sequential(
        nn.Linear(16 * 7 * 7, 32), nn.ReLU(True), nn.Dropout(), nn.Linear(32, 10)
    )
    return model


MODELS = {
    "resnet18": functools.partial(models.resnet18, num_classes=10),
    "resnext_bottleneck": _resnext,
    "mobilenet_v2": functools.partial(models.mobilenet_v2, num_classes=10, width_mult=0.25),
    "mobilenet_v3_small": functools.partial(models.mobilenet_v3_small, num_classes=10),
    "efficientnet_b0": functools.partial(models.efficientnet_b0, num_classes=10),
    "efficientnet_v2_layout": _efficientnet_v2,
    "convnext": _convnext,
    "regnet_y_400mf": functools.partial(models.regnet_y_400mf, num_classes=10),
    "densenet": functools.partial(
        models.densenet.DenseNet, 8, (2, 2, 2, 2), 16, bn_size=2, num_classes=10
    ),
    "vgg_bn": _vgg,
    "squeezenet1_1": functools.partial(models.squeezenet1_1, num_classes=10),
    "shufflenet_v2_x0_5": functools.partial(models.shufflenet_v2_x0_5, num_classes=10),
    "mnasnet0_5": functools.partial(models.mnasnet0_5, num_classes=10),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_converts_with_no_user_code_and_matches_torch(name):
    x = images(2, 32)
    model = randomize(MODELS[name](), x)
    if name == "mobilenet_v3_small":
        skip_while_hax_nn_lacks(model, {"Hardswish", "Hardsigmoid"})
    error = assert_converts_and_matches(model, x, versioned=name.startswith("mnasnet"))
    assert error < 1e-5


def test_stochastic_depth_drops_samples_at_its_rate():
    model = efficientnet.EfficientNet(
        [efficientnet.MBConvConfig(1, 3, 1, 8, 8, 2)], dropout=0.3, stochastic_depth_prob=0.8
    )
    tree, config = convert(model)  # a torch model is in training mode
    assert config == {"train_mode": True}
    node = hax.get_subtree(tree, "features/1/1/stochastic_depth")
    p = node["aux"]["p"]
    assert p == pytest.approx(0.4) and node["aux"]["mode"] == "row"
    x = jnp.ones((4000, 2, 1, 1))
    new, y = hax.apply_tree(node, config, x)
    dropped = np.asarray(y[:, 0, 0, 0] == 0)
    assert abs(dropped.mean() - p) < 0.03
    assert np.all(np.asarray(y)[~dropped] == pytest.approx(1 / (1 - p)))
    assert np.all(np.asarray(y)[dropped] == 0)  # whole samples
    assert not np.array_equal(
        jax.random.key_data(new["buffers"]["rng"]), jax.random.key_data(node["buffers"]["rng"])
    )
    # mode "batch": the whole batch is dropped or kept, at the same rate
    batch = {**node, "aux": {**node["aux"], "mode": "batch"}}

    def run(key):
        tree = {**batch, "buffers": {"rng": key}}
        return hax.apply_tree(tree, config, jnp.ones((3, 2, 1, 1)))[1]

    ys = np.asarray(jax.vmap(run)(jax.random.split(jax.random.key(0), 4000)))
    dropped = ys.max(axis=(1, 2, 3, 4)) == 0
    assert abs(dropped.mean() - p) < 0.03
    assert np.all(ys[~dropped] == pytest.approx(1 / (1 - p)))
    _, y = hax.apply_tree(node, {"train_mode": False}, x)
    assert np.array_equal(y, x)


def test_dense_layer_dropout_drops_at_drop_rate():
    model = models.densenet.DenseNet(8, (2, 2), 16, bn_size=2, drop_rate=0.3, num_classes=10)
    tree, config = convert(model)
    node = hax.get_subtree(tree, "features/denseblock1/denselayer2")
    assert node["aux"]["drop_rate"] == 0.3 and config == {"train_mode": True}
    x = jax.random.normal(jax.random.key(1), (8, 24, 8, 8))
    without = {**node, "aux": {**node["aux"], "drop_rate": 0.0}}
    _, features = hax.apply_tree(without, config, [x])
    _, y = hax.apply_tree(node, config, [x])
    y, features = np.asarray(y), np.asarray(features)
    kept = y != 0
    assert abs(1 - kept.mean() - 0.3) < 0.02
    np.testing.assert_allclose(y[kept], features[kept] / 0.7, rtol=1e-5)
