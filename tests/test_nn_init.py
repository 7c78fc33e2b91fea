"""`hax.nn`'s initialisers: the values of `jax.random`, with few compiled programs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hax
from hax import nn
from hax.nn import _init

SHAPES = [(0,), (3,), (7, 5), (4, 3, 2, 2), (1 << 16,), ((1 << 16) + 1,), (300, 300)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_draws_equal_jax_random_eagerly_and_traced(shape, dtype):
    key = jax.random.key(7)
    want_u = jax.random.uniform(key, shape, dtype, -0.3, 0.3)
    want_n = jax.random.normal(key, shape, dtype)
    got_u = _init.uniform(key, shape, dtype, -0.3, 0.3)
    got_n = _init.normal(key, shape, dtype)
    traced_u = jax.jit(lambda k: _init.uniform(k, shape, dtype, -0.3, 0.3))(key)
    traced_n = jax.jit(lambda k: _init.normal(k, shape, dtype))(key)
    for got in (got_u, traced_u):
        assert got.shape == shape and got.dtype == dtype
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want_u))
    for got in (got_n, traced_n):
        assert got.shape == shape and got.dtype == dtype
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want_n))


def test_normal_pieces_are_one_draw_cut_and_scaled():
    key = jax.random.key(3)
    shapes, stds = [(2, 3), (4,), (1, 1, 5)], [0.5, 2.0, 1.0]
    flat = np.asarray(jax.random.normal(key, (15,), jnp.float32))
    pieces = _init.normal_pieces(key, shapes, stds)
    traced = jax.jit(lambda k: _init.normal_pieces(k, shapes, stds))(key)
    offsets = [0, 6, 10, 15]
    for got in (pieces, traced):
        for i, (shape, std) in enumerate(zip(shapes, stds, strict=True)):
            want = (np.float32(std) * flat[offsets[i] : offsets[i + 1]]).reshape(shape)
            np.testing.assert_array_equal(np.asarray(got[i]), want)


def test_layers_of_many_shapes_share_one_compiled_draw():
    # Every one of these weights and biases has fewer than 2**16 values.
    sizes = [(3, 5), (7, 2), (16, 9), (33, 31), (100, 10), (11, 64)]
    with hax.rng_context(0):
        nn.Linear(2, 2)  # the size class's program exists from here on
        before = _init._uniform_flat._cache_size()
        layers = [nn.Linear(i, o) for i, o in sizes]
        convs = [nn.Conv2d(3, c, k) for c, k in [(4, 3), (6, 5), (8, 1)]]
    assert _init._uniform_flat._cache_size() == before
    weight = layers[3][0]["params"]["weight"]
    bound = 1 / np.sqrt(33)
    assert weight.shape == (31, 33) and float(jnp.abs(weight).max()) <= bound
    assert convs[1][0]["params"]["weight"].shape == (6, 3, 5, 5)
