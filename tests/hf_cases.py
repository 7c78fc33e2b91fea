"""Shared by the Hugging Face family tests: the `transformers` import, torch runs on
NumPy inputs, and the comparison of a converted causal LM with torch on padded batches."""

from typing import Any

import numpy as np
import pytest
import torch
from conftest import import_torchvision

import hax

RNG = np.random.default_rng(0)
IDS = RNG.integers(0, 100, (3, 10))
RIGHT = np.ones((3, 10), np.int64)
RIGHT[1, 7:] = 0
RIGHT[2, 9:] = 0
LEFT = RIGHT[:, ::-1].copy()


def import_transformers() -> Any:
    """`transformers` (which imports torchvision when it is installed), or a skip."""
    import_torchvision()
    return pytest.importorskip("transformers")


def torch_run(model: Any, **inputs: Any) -> Any:
    """`model(**inputs)` without gradients, NumPy arrays given as tensors."""
    with torch.no_grad():
        return model(
            **{k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in inputs.items()}
        )


def assert_logits_match_torch_with_padding(model: Any, tree: Any, config: Any) -> None:
    """The logits of `IDS` without a mask and with right and left padding match torch's,
    with its sdpa and its eager attention."""
    run = hax.jit(lambda tree, ids, mask: hax.apply_tree(tree, config, ids, attention_mask=mask)[1])
    for mask in (None, RIGHT, LEFT):
        out = run(tree, IDS, mask)
        assert set(out) == {"logits"}
        for attn in ("sdpa", "eager"):
            model.set_attn_implementation(attn)
            got = np.asarray(out["logits"])
            expected = torch_run(model, input_ids=IDS, attention_mask=mask).logits.numpy()
            if mask is not None and attn == "sdpa":
                # A padding query may see no key (left padding, sliding windows): torch's
                # sdpa gives it zeros, eager attention (which HAX runs) a uniform
                # average. Only real tokens are defined.
                got, expected = got[mask == 1], expected[mask == 1]
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=attn)


def randomize(model: Any, std: float = 0.3) -> Any:
    """`model` with every parameter drawn from `N(0, std)` (norm weights included, so a
    norm's `1 + weight` or a clipped projection shows), as `model` (tied ones stay tied)."""
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, std)
    return model


def assert_eager_logits_match_torch(model: Any, tree: Any, config: Any, mask: Any = LEFT) -> float:
    """The logits of `IDS` under `mask` match torch's eager attention's, within 1e-5 of
    their largest magnitude at every position (padding queries included); returns the
    largest difference relative to that magnitude."""
    model.set_attn_implementation("eager")
    expected = torch_run(model, input_ids=IDS, attention_mask=mask).logits.numpy()
    got = np.asarray(hax.apply_tree(tree, config, IDS, attention_mask=mask)[1]["logits"])
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * scale)
    return float(np.abs(got - expected).max() / scale)
