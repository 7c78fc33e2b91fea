"""Every activation class Hugging Face models pick by `config.hidden_act` converts with no
user code and matches torch (values and gradients)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import hax

activations = pytest.importorskip("transformers.activations")

X = np.linspace(-6, 6, 97, dtype=np.float32).reshape(1, 97)


@pytest.mark.parametrize("name", sorted(activations.ACT2CLS))
def test_every_hidden_act_converts_and_matches_torch(name):
    torch.manual_seed(0)
    module = activations.ACT2CLS[name]
    module = module[0](**module[1]) if isinstance(module, tuple) else module()
    tree, config = hax.interop.convert(module)
    x = torch.from_numpy(X).requires_grad_(True)
    y = module(x)
    y.sum().backward()
    grad = jax.grad(lambda v: hax.apply_tree(tree, config, v)[1].sum())(jnp.asarray(X))
    np.testing.assert_allclose(
        hax.apply_tree(tree, config, X)[1], y.detach().numpy(), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(grad, x.grad.numpy(), rtol=1e-4, atol=1e-5)
