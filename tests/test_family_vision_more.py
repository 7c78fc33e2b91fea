"""More vision families convert with no user code, match torch's logits in eval mode and
go back with `to_torch`: Hugging Face's CNNs (ResNet, RegNet, ConvNeXt V1/V2,
MobileNetV2, EfficientNet) and Swin, torchvision's GoogLeNet, Inception3 (block by block), Swin
(V1, V2) and MaxViT, timm's RegNet, DenseNet, ByobNet, CspNet and MLP-Mixer family. In
train mode, batch norm statistics update as torch's, drop-path draws from the node's
key, and the auxiliary classifiers run."""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from cnn_cases import assert_converts_and_matches, images, randomize
from conftest import import_torchvision

import hax
from hax.interop import convert, to_torch

tv = import_torchvision()
transformers = pytest.importorskip("transformers")
timm = pytest.importorskip("timm")
swin = tv.models.swin_transformer

# ---------------------------------------------------------------- Hugging Face

_STAGES = {"hidden_sizes": [8, 16], "depths": [2, 1], "num_labels": 5}
HF_MODELS: dict[str, Any] = {
    "resnet": ("ResNet", {**_STAGES, "embedding_size": 8}),
    "regnet_y": ("RegNet", {**_STAGES, "embedding_size": 8, "groups_width": 8}),
    "convnext": ("ConvNext", {**_STAGES, "num_stages": 2}),
    "convnextv2": ("ConvNextV2", {**_STAGES, "num_stages": 2}),
    "mobilenet_v2": ("MobileNetV2", {"depth_multiplier": 0.35, "num_labels": 5}),
    "swin": (
        "Swin",
        {
            **{"image_size": 32, "embed_dim": 16, "depths": [2, 2], "num_heads": [2, 4]},
            **{"window_size": 3, "num_labels": 5},
        },
    ),
    "efficientnet": (
        "EfficientNet",
        {"width_coefficient": 0.2, "depth_coefficient": 0.2, "hidden_dim": 256, "num_labels": 5},
    ),
}


def _hf_model(name: str) -> Any:
    prefix, fields = HF_MODELS[name]
    config = getattr(transformers, prefix + "Config")(**fields)
    model = getattr(transformers, prefix + "ForImageClassification")(config).eval()
    return randomize(_LogitsOf(model), images(2, 32)).model


class _LogitsOf(torch.nn.Module):
    """A Hugging Face head as a function to its logits (for `randomize`)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(x).logits
        return logits


@pytest.mark.parametrize("name", list(HF_MODELS))
def test_hugging_face_cnns_match_torch(name):
    model = _hf_model(name)
    x = images(2, 33)  # odd: MobileNetV2's 'SAME' padding differs on each side; Swin pads
    labels = np.array([1, 3])
    tree, config = convert(model)
    with torch.no_grad():
        ref = model(torch.from_numpy(x), labels=torch.from_numpy(labels))
    run = hax.jit(lambda t, v, y: hax.apply_tree(t, config, v, labels=y)[1])
    out = run(tree, x, labels)
    logits = ref.logits.numpy()
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-5, atol=1e-5 * np.abs(logits).max())
    np.testing.assert_allclose(out["loss"], ref.loss.numpy(), rtol=1e-5)
    model.load_state_dict(to_torch(tree), strict=True)
    with pytest.raises(ValueError, match="output_hidden_states"):
        hax.apply_tree(tree, config, x, output_hidden_states=True)


def test_hugging_face_resnet_batch_norm_trains_as_torch():
    model = _hf_model("resnet").train()
    x = images(4, 32, seed=1)
    tree, config = convert(model)
    assert config == {"train_mode": True}
    new, out = hax.jit(lambda t, v: hax.apply_tree(t, config, v))(tree, x)
    ref = model(torch.from_numpy(x)).logits.detach().numpy()  # batch statistics
    np.testing.assert_allclose(out["logits"], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    state = to_torch(new)
    for name, tensor in model.state_dict().items():
        if "running" in name:
            np.testing.assert_allclose(state[name].numpy(), tensor.numpy(), rtol=1e-5, atol=1e-6)


def test_hugging_face_convnext_drop_path_draws_from_the_node_key():
    config = transformers.ConvNextConfig(**{**_STAGES, "num_stages": 2, "drop_path_rate": 0.9})
    model = transformers.ConvNextForImageClassification(config)
    tree, hconfig = convert(model)
    node = hax.get_subtree(tree, "convnext/encoder/stages/1/layers/0/drop_path")
    p = node["aux"]["drop_prob"]
    assert p == pytest.approx(0.9)
    new, y = hax.apply_tree(node, hconfig, jnp.ones((2000, 3)))
    dropped = np.asarray(y[:, 0] == 0)
    assert abs(dropped.mean() - p) < 0.04
    assert np.allclose(np.asarray(y)[~dropped], 1 / (1 - p))
    assert not np.array_equal(
        jax.random.key_data(new["buffers"]["rng"]), jax.random.key_data(node["buffers"]["rng"])
    )


# ---------------------------------------------------------------- torchvision and timm


def _swin(v2: bool) -> Any:
    """A two-stage Swin whose 10x10 map is padded to 3x3 windows, shifted in every second
    block."""
    extra: dict[str, Any] = {}
    if v2:
        extra = {"block": swin.SwinTransformerBlockV2, "downsample_layer": swin.PatchMergingV2}
    return swin.SwinTransformer([4, 4], 16, [2, 2], [2, 4], [3, 3], num_classes=7, **extra)


def _byobnet(kind: str, **block: Any) -> Any:
    cfg = timm.models.byobnet.ByoModelCfg(
        blocks=(
            timm.models.byobnet.ByoBlockCfg(type=kind, d=2, c=16, s=1, **block),
            timm.models.byobnet.ByoBlockCfg(type=kind, d=1, c=32, s=2, **block),
        ),
        stem_chs=16,
        stem_type="tiered",
        num_features=48,
    )
    return timm.models.byobnet.ByobNet(cfg, num_classes=10)


def _cspnet(stage_type: str, block_type: str, **stages: Any) -> Any:
    cfg = timm.models.cspnet.CspModelCfg(
        stem=timm.models.cspnet.CspStemCfg(out_chs=16, stride=4, pool="max"),
        stages=timm.models.cspnet.CspStagesCfg(
            depth=(1, 2), out_chs=(32, 64), stage_type=stage_type, block_type=block_type, **stages
        ),
    )
    return timm.models.cspnet.CspNet(cfg, num_classes=10)


def _mixer(**kwargs: Any) -> Any:
    mixer = timm.models.mlp_mixer
    return mixer.MlpMixer(10, 32, patch_size=8, num_blocks=2, embed_dim=24, mlp_ratio=2, **kwargs)


_REGNET = timm.models.regnet
TORCH_MODELS: dict[str, tuple[Any, int]] = {
    "tv_googlenet_transform_input": (
        functools.partial(
            tv.models.GoogLeNet,
            num_classes=7,
            aux_logits=False,
            transform_input=True,
            init_weights=False,
        ),
        32,
    ),
    "tv_swin": (functools.partial(_swin, False), 40),
    "tv_swin_v2": (functools.partial(_swin, True), 40),
    "tv_maxvit": (
        functools.partial(tv.models.maxvit.MaxVit, (32, 32), 8, 2, [16, 32], [1, 2], 8, 0.1),
        32,
    ),
    "timm_regnety": (
        functools.partial(
            _REGNET.RegNet,
            _REGNET.RegNetCfg(depth=6, w0=8, wa=8, wm=2, group_size=8, se_ratio=0.25, stem_width=8),
        ),
        32,
    ),
    "timm_densenet": (
        functools.partial(
            timm.models.densenet.DenseNet, 8, (2, 2), num_classes=10, proj_drop_rate=0.1
        ),
        32,
    ),
    "timm_byobnet_bottle": (functools.partial(_byobnet, "bottle", gs=8, br=0.5), 32),
    "timm_repvgg": (functools.partial(_byobnet, "rep"), 32),
    "timm_mobileone": (functools.partial(_byobnet, "one"), 32),
    "timm_cspresnet": (
        functools.partial(_cspnet, "csp", "bottle", expand_ratio=2.0, bottle_ratio=0.5),
        32,
    ),
    "timm_cspdarknet": (functools.partial(_cspnet, "cs3", "dark", block_ratio=0.5), 32),
    "timm_mixer": (_mixer, 32),
    "timm_resmlp": (
        functools.partial(
            _mixer,
            block_layer=timm.models.mlp_mixer.ResBlock,
            norm_layer=timm.models.mlp_mixer.Affine,
        ),
        32,
    ),
    "timm_gmlp": (
        functools.partial(
            _mixer,
            block_layer=timm.models.mlp_mixer.SpatialGatingBlock,
            mlp_layer=timm.layers.GatedMlp,
        ),
        32,
    ),
}


@pytest.mark.parametrize("name", list(TORCH_MODELS))
def test_torchvision_and_timm_models_match_torch(name):
    make, size = TORCH_MODELS[name]
    x = images(2, size)
    model = randomize(make(), x)
    assert assert_converts_and_matches(model, x) < 1e-5


_INCEPTION = tv.models.inception
INCEPTION3_BLOCKS: dict[str, tuple[Any, int]] = {
    "A": (functools.partial(_INCEPTION.InceptionA, 8, pool_features=4), 9),
    "B": (functools.partial(_INCEPTION.InceptionB, 8), 9),
    "C": (functools.partial(_INCEPTION.InceptionC, 8, channels_7x7=4), 9),
    "D": (functools.partial(_INCEPTION.InceptionD, 8), 9),
    "E": (functools.partial(_INCEPTION.InceptionE, 8), 5),
    "Aux": (functools.partial(_INCEPTION.InceptionAux, 8, 7), 17),
}


@pytest.mark.parametrize("name", list(INCEPTION3_BLOCKS))
def test_inception3_blocks_match_torch(name):
    """Each block of Inception3 at 8 input channels (the whole model compiles slowly;
    it matched torch within 1e-6 of its largest logit when these applies were written)."""
    make, size = INCEPTION3_BLOCKS[name]
    x = np.random.default_rng(0).normal(size=(2, 8, size, size)).astype(np.float32)
    model = randomize(make(), x)
    assert assert_converts_and_matches(model, x) < 1e-5


def test_inception3_runs_with_the_input_transform_and_its_auxiliary_classifier():
    model = tv.models.Inception3(num_classes=7, transform_input=True, init_weights=False)
    tree, config = convert(model)
    x = images(2, 299)  # traced abstractly: the auxiliary classifier needs this size
    out = jax.eval_shape(lambda: hax.apply_tree(tree, config, x)[1])
    assert isinstance(out, tuple) and [o.shape for o in out] == [(2, 7)] * 2
    out = jax.eval_shape(lambda: hax.apply_tree(tree, {"train_mode": False}, x)[1])
    assert out.shape == (2, 7)


def test_googlenet_runs_its_auxiliary_classifiers_in_train_mode():
    model = tv.models.GoogLeNet(num_classes=7, aux_logits=True, init_weights=False)
    tree, config = convert(model)
    assert config == {"train_mode": True}
    x = images(2, 32)
    out = jax.eval_shape(lambda: hax.apply_tree(tree, config, x)[1])
    assert isinstance(out, tuple) and [o.shape for o in out] == [(2, 7)] * 3
    out = jax.eval_shape(lambda: hax.apply_tree(tree, {"train_mode": False}, x)[1])
    assert out.shape == (2, 7)
