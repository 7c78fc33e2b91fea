"""Linear, Bilinear and Embedding: PyTorch weights loaded with `hax.interop.from_torch`,
then forward outputs and input/param gradients compared with PyTorch's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import hax
from hax import nn
from hax.interop import from_torch

FAST = {"compiler_options": {"xla_backend_optimization_level": 0}}


def compare(torch_layer, hax_module, inputs, differentiable):
    """Outputs and the gradients of `sum(out * r)` for the `differentiable` inputs and
    every param, HAX (weights from torch via from_torch) against torch."""
    tree, config = hax_module
    tree = from_torch(torch_layer, like=tree)
    torch_inputs = [
        torch.from_numpy(x).requires_grad_(d) for x, d in zip(inputs, differentiable, strict=True)
    ]
    y_torch = torch_layer(*torch_inputs)
    r = np.random.default_rng(1).normal(size=tuple(y_torch.shape)).astype(np.float32)
    (y_torch * torch.from_numpy(r)).sum().backward()

    def loss(params, *xs):
        _, y = hax.apply_tree({**tree, "params": params}, config, *xs)
        return jnp.sum(y * r), y

    argnums = (0, *[i + 1 for i, d in enumerate(differentiable) if d])
    grads, y = jax.jit(jax.grad(loss, argnums=argnums, has_aux=True), **FAST)(
        tree["params"], *map(jnp.asarray, inputs)
    )
    scale = max(1.0, float(np.abs(y_torch.detach().numpy()).max()))
    np.testing.assert_allclose(y, y_torch.detach().numpy(), atol=1e-5 * scale, rtol=1e-5)
    for name, p in torch_layer.named_parameters():
        np.testing.assert_allclose(
            grads[0][name], p.grad.numpy(), atol=1e-4, rtol=1e-4, err_msg=name
        )
    differentiated = [t for t, d in zip(torch_inputs, differentiable, strict=True) if d]
    for g, t in zip(grads[1:], differentiated, strict=True):
        np.testing.assert_allclose(g, t.grad.numpy(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 7), (7,)])
def test_linear(bias, shape):
    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    compare(torch.nn.Linear(7, 4, bias=bias), nn.Linear(7, 4, bias=bias, rng=0), [x], [True])


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch", [(5,), (2, 3)])
def test_bilinear(bias, batch):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x1 = rng.normal(size=(*batch, 3)).astype(np.float32)
    x2 = rng.normal(size=(*batch, 4)).astype(np.float32)
    compare(
        torch.nn.Bilinear(3, 4, 2, bias=bias),
        nn.Bilinear(3, 4, 2, bias=bias, rng=0),
        [x1, x2],
        [True, True],
    )


@pytest.mark.parametrize("padding_idx", [None, 2, -1])
@pytest.mark.parametrize("shape", [(6,), (2, 5)])
def test_embedding(padding_idx, shape):
    torch.manual_seed(0)
    idx = np.random.default_rng(0).integers(0, 8, size=shape)
    idx.flat[0] = 2  # the padding row is used, so its zero gradient is checked
    compare(
        torch.nn.Embedding(8, 3, padding_idx=padding_idx),
        nn.Embedding(8, 3, padding_idx=padding_idx, rng=0),
        [idx.astype(np.int64)],
        [False],
    )


def test_dropout_eval_and_train_p0_match_torch():
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    torch_layer = torch.nn.Dropout(0.3).eval()
    tree, _ = nn.Dropout(0.3, rng=0)
    tree = from_torch(torch_layer, like=tree)  # no torch state: the key stays HAX's
    _, y = hax.apply_tree(tree, {"train_mode": False}, jnp.asarray(x))
    np.testing.assert_array_equal(y, torch_layer(torch.from_numpy(x)).numpy())
