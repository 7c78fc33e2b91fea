"""Shared checks for the library CNN families (tests/test_family_cnn_*.py): a torch
model converted with no other argument runs as torch does, and goes back.

Library inits leave some models with vanishing activations in eval mode (torchvision's
EfficientNet initialises depthwise convolutions over their fan-out, so the logits of
`efficientnet_b0` come out near 1e-20), which would make any absolute tolerance
vacuous. `randomize` draws weights that keep activations of order one instead, and
scales the classifier so that the logits are too: `atol=1e-5` is then a bound
relative to the logits.
"""

from collections import OrderedDict

import numpy as np
import pytest
import torch

import hax
from hax.interop import ConversionError, convert, to_torch


def images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3, size, size)).astype(np.float32)


def randomize(model: torch.nn.Module, x: np.ndarray, seed: int = 0) -> torch.nn.Module:
    """`model` in eval mode with He-normal conv and linear weights over the fan-in,
    biases N(0, 0.1), other params (norm and layer scales) U(0.5, 1.5), running
    means N(0, 0.1) and variances U(0.5, 1.5), and its last linear layer scaled so that
    the logits of `x` have unit RMS."""
    gen = torch.Generator().manual_seed(seed)

    def draw(t: torch.Tensor, scale: float) -> None:
        t.copy_(scale * torch.randn(t.shape, generator=gen))

    layers = torch.nn.Conv1d | torch.nn.Conv2d | torch.nn.Linear
    model.eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                draw(m.running_mean, 0.1)
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))
            for name, param in m.named_parameters(recurse=False):
                if isinstance(m, layers) and name == "weight":
                    draw(param, (2.0 / param[0].numel()) ** 0.5)
                elif name == "bias":
                    draw(param, 0.1)
                else:  # a norm's scale, a layer scale
                    param.copy_(0.5 + torch.rand(param.shape, generator=gen))
        heads = [m for m in model.modules() if isinstance(m, torch.nn.Linear)] or [
            m for m in model.modules() if isinstance(m, torch.nn.Conv2d)
        ]  # SqueezeNet classifies with a conv
        last = heads[-1]
        rms = model(torch.from_numpy(x)).square().mean().sqrt()
        last.weight /= rms
        last.bias /= rms
    return model


def hax_logits(tree: hax.StructureTree, config: hax.GlobalConfig, x: np.ndarray) -> np.ndarray:
    return np.asarray(hax.jit(lambda t, v: hax.apply_tree(t, config, v)[1])(tree, x))


def assert_converts_and_matches(
    model: torch.nn.Module, x: np.ndarray, *, versioned: bool = False
) -> float:
    """`convert(model)` (no other argument) gives torch's eval logits within 1e-5, and
    its `to_torch` state loads strictly and holds the same tensors. Returns the largest
    error relative to the largest logit. `versioned`: the model refuses a `state_dict`
    without torch's version metadata (MNASNet), which is added before loading."""
    tree, config = convert(model)
    assert config.get("train_mode", False) is False
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    out = hax_logits(tree, config, x)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    state = to_torch(tree)
    original = model.state_dict()
    if versioned:
        state = OrderedDict(state)
        state._metadata = original._metadata
    model.load_state_dict(state, strict=True)
    for name, tensor in original.items():
        assert torch.equal(state[name], tensor), name
    return float(np.abs(out - ref).max() / np.abs(ref).max())


def skip_while_hax_nn_lacks(model: torch.nn.Module, layers: set[str]) -> None:
    """Skip while `layers` (torch classes `hax.nn` is still to gain, such as MobileNetV3's
    `Hardswish`) are the only classes of `model` that `convert` does not know."""
    try:
        convert(model)
    except ConversionError as err:
        missing = {cls.__name__ for _, cls in err.unknown}
        if missing and missing <= layers and not err.failed:
            pytest.skip(f"hax.nn has no {sorted(missing)} yet")
        raise
