"""Tests for the rotary position embedding helpers of `hax.nn.functional`, against a
direct torch transcription of Hugging Face's Llama formulas (`LlamaRotaryEmbedding`,
`rotate_half`, `apply_rotary_pos_emb`) and GPT-NeoX's partial rotary."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from hax.nn import functional as F

# ---------------------------------------------------------------- the reference


def hf_cos_sin(position_ids, dim, base=10000.0, factor=1.0, dtype=torch.float32):
    """`LlamaRotaryEmbedding.forward` for `position_ids` of shape (batch, seq)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    inv_freq = inv_freq / factor  # the "linear" rope_type
    inv_freq_expanded = inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
    position_ids_expanded = position_ids[:, None, :].float()
    freqs = (inv_freq_expanded @ position_ids_expanded).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def hf_rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def hf_apply(q, k, cos, sin, unsqueeze_dim=1):
    cos = cos.unsqueeze(unsqueeze_dim)
    sin = sin.unsqueeze(unsqueeze_dim)
    return (q * cos) + (hf_rotate_half(q) * sin), (k * cos) + (hf_rotate_half(k) * sin)


def neox_partial_apply(q, cos, sin, unsqueeze_dim=1):
    """GPT-NeoX/Phi: rotate the first `cos.shape[-1]` features, pass the rest."""
    rotary_dim = cos.shape[-1]
    q_rot, q_pass = q[..., :rotary_dim], q[..., rotary_dim:]
    cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
    return torch.cat([(q_rot * cos) + (hf_rotate_half(q_rot) * sin), q_pass], dim=-1)


def normal(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# ---------------------------------------------------------------- the tables


@pytest.mark.parametrize(
    "dim, base, factor",
    [(16, 10000.0, 1.0), (64, 500000.0, 1.0), (8, 10000.0, 4.0), (2, 100.0, 1.0)],
)
def test_tables_match_hugging_face(dim, base, factor):
    position_ids = np.array([[0, 1, 2, 3, 7, 100], [5, 6, 7, 8, 2047, 4095]])
    cos_t, sin_t = hf_cos_sin(torch.from_numpy(position_ids), dim, base, factor)
    cos, sin = F.rotary_embedding(position_ids, dim, base, scaling_factor=factor)
    assert cos.shape == sin.shape == (2, 6, dim) and cos.dtype == jnp.float32
    # float32 angles of large positions: one ulp of the angle, as in torch
    np.testing.assert_allclose(np.asarray(cos), cos_t.numpy(), atol=2e-4, rtol=0)
    np.testing.assert_allclose(np.asarray(sin), sin_t.numpy(), atol=2e-4, rtol=0)
    small = position_ids < 200
    np.testing.assert_allclose(np.asarray(cos)[small], cos_t.numpy()[small], atol=2e-6)
    np.testing.assert_allclose(np.asarray(sin)[small], sin_t.numpy()[small], atol=2e-6)


def test_tables_of_one_dimensional_positions_and_dtype():
    cos, sin = F.rotary_embedding(jnp.arange(5), 8, dtype=jnp.bfloat16)
    assert cos.shape == (5, 8) and cos.dtype == sin.dtype == jnp.bfloat16
    cos_t, _ = hf_cos_sin(torch.arange(5)[None], 8, dtype=torch.bfloat16)
    np.testing.assert_array_equal(np.asarray(cos, np.float32), cos_t[0].float().numpy())
    np.testing.assert_array_equal(np.asarray(cos)[0], 1)  # position 0: no rotation
    np.testing.assert_array_equal(np.asarray(sin)[0], 0)


@pytest.mark.parametrize("dim", [0, 7, -2, pytest.param(4.0, marks=pytest.mark.wrong_types), True])
def test_tables_need_a_positive_even_dim(dim):
    with pytest.raises(ValueError, match="dim must be a positive even int"):
        F.rotary_embedding(jnp.arange(3), dim)


# ---------------------------------------------------------------- the rotation


def test_apply_matches_hugging_face_values_and_gradients():
    batch, heads, seq, head_dim = 2, 3, 5, 8
    q, k = normal((batch, heads, seq, head_dim), 0), normal((batch, heads, seq, head_dim), 1)
    g = normal(q.shape, 2)
    position_ids = np.array([[0, 1, 2, 3, 4], [3, 4, 5, 6, 7]])
    cos_t, sin_t = hf_cos_sin(torch.from_numpy(position_ids), head_dim)
    q_t, k_t = (torch.from_numpy(a).requires_grad_(True) for a in (q, k))
    q_embed_t, k_embed_t = hf_apply(q_t, k_t, cos_t, sin_t)
    ((q_embed_t + k_embed_t) * torch.from_numpy(g)).sum().backward()
    cos, sin = F.rotary_embedding(position_ids, head_dim)

    def loss(q, k):
        q_embed = F.apply_rotary_embedding(q, cos, sin, unsqueeze_dim=1)
        k_embed = F.apply_rotary_embedding(k, cos, sin, unsqueeze_dim=1)
        return jnp.sum((q_embed + k_embed) * g), (q_embed, k_embed)

    (g_q, g_k), (q_embed, k_embed) = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))(q, k)
    np.testing.assert_allclose(np.asarray(q_embed), q_embed_t.detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(np.asarray(k_embed), k_embed_t.detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(np.asarray(g_q), q_t.grad.numpy(), atol=1e-6)
    np.testing.assert_allclose(np.asarray(g_k), k_t.grad.numpy(), atol=1e-6)


def test_apply_broadcasts_tables_without_unsqueeze_and_keeps_the_dtype():
    q = normal((2, 4, 6, 8), 3)  # (batch, heads, seq, head_dim)
    cos, sin = F.rotary_embedding(jnp.arange(6), 8)  # (seq, head_dim)
    out = F.apply_rotary_embedding(q, cos, sin)
    cos_t, sin_t = hf_cos_sin(torch.arange(6)[None], 8)
    expected, _ = hf_apply(torch.from_numpy(q), torch.from_numpy(q), cos_t, sin_t)
    np.testing.assert_allclose(np.asarray(out), expected.numpy(), atol=1e-6)
    half = F.apply_rotary_embedding(jnp.asarray(q, jnp.bfloat16), cos, sin)
    assert half.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(half, np.float32), expected.numpy(), atol=5e-2)
    np.testing.assert_array_equal(
        np.asarray(F.rotate_half(q)), hf_rotate_half(torch.from_numpy(q)).numpy()
    )


def test_partial_rotary_matches_gpt_neox():
    q = normal((2, 3, 5, 10), 4)
    cos_t, sin_t = hf_cos_sin(torch.arange(5)[None].expand(2, 5), 4)
    cos, sin = F.rotary_embedding(jnp.broadcast_to(jnp.arange(5), (2, 5)), 4)
    out = F.apply_rotary_embedding(q, cos, sin, unsqueeze_dim=1)
    expected = neox_partial_apply(torch.from_numpy(q), cos_t, sin_t)
    np.testing.assert_allclose(np.asarray(out), expected.numpy(), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(out)[..., 4:], q[..., 4:])


def test_scores_depend_only_on_relative_positions():
    """The point of RoPE: <rot(q, m), rot(k, n)> is a function of m - n."""
    q, k = normal((16,), 5), normal((16,), 6)
    cos, sin = F.rotary_embedding(jnp.arange(40), 16)

    def score(m, n):
        rq = F.apply_rotary_embedding(q, cos[m], sin[m])
        rk = F.apply_rotary_embedding(k, cos[n], sin[n])
        return float(jnp.dot(rq, rk))

    np.testing.assert_allclose(score(3, 1), score(30, 28), rtol=1e-4)
    np.testing.assert_allclose(score(0, 0), float(np.dot(q, k)), rtol=1e-5)
    assert abs(score(3, 1) - score(3, 2)) > 1e-3


def test_apply_errors_name_the_shapes():
    x = jnp.ones((2, 5, 8))
    cos, sin = F.rotary_embedding(jnp.arange(5), 8)
    with pytest.raises(ValueError, match=r"one shape, found \(5, 8\) and \(5, 4\)"):
        F.apply_rotary_embedding(x, cos, sin[:, :4])
    with pytest.raises(ValueError, match=r"at most x's last axis \(6\)"):
        F.apply_rotary_embedding(x[..., :6], cos, sin)
    with pytest.raises(ValueError, match=r"last axis \(3\) must be even"):
        F.apply_rotary_embedding(x, cos[:, :3], sin[:, :3])
