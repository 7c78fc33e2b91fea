"""Tests for `hax.rng_context` and how constructors take their keys."""

import jax
import numpy as np
import pytest

import hax


def weight(module):
    return np.asarray(module[0]["params"]["weight"])


def test_consecutive_constructors_get_distinct_keys():
    with hax.rng_context(0):
        a, b = hax.nn.Linear(8, 8), hax.nn.Linear(8, 8)
    assert not np.array_equal(weight(a), weight(b))
    assert not np.array_equal(
        np.asarray(a[0]["params"]["bias"]), np.asarray(b[0]["params"]["bias"])
    )


def test_distinct_keys_for_dropout_too():
    with hax.rng_context(0):
        d1, d2 = hax.nn.Dropout(), hax.nn.Dropout()
    k1 = jax.random.key_data(d1[0]["buffers"]["rng"])
    k2 = jax.random.key_data(d2[0]["buffers"]["rng"])
    assert not np.array_equal(k1, k2)


def test_deterministic_for_same_seed():
    def build(seed):
        with hax.rng_context(seed):
            return [weight(hax.nn.Linear(4, 4)) for _ in range(3)]

    first, again, other = build(0), build(0), build(1)
    for w1, w2 in zip(first, again, strict=True):
        np.testing.assert_array_equal(w1, w2)
    assert not np.array_equal(first[0], other[0])


def test_nests_and_restores():
    with hax.rng_context(0):
        ref = [weight(hax.nn.Linear(4, 4)) for _ in range(2)]
    with hax.rng_context(1):
        inner_ref = weight(hax.nn.Linear(4, 4))

    with hax.rng_context(0):
        first = weight(hax.nn.Linear(4, 4))
        with hax.rng_context(1):
            inner = weight(hax.nn.Linear(4, 4))
        second = weight(hax.nn.Linear(4, 4))
    np.testing.assert_array_equal(first, ref[0])
    np.testing.assert_array_equal(inner, inner_ref)
    # the outer context continues where it left off, unaffected by the inner one
    np.testing.assert_array_equal(second, ref[1])
    with pytest.raises(ValueError, match="rng_context"):
        hax.nn.Linear(4, 4)


def test_context_restored_after_exception():
    with pytest.raises(RuntimeError):
        with hax.rng_context(0):
            raise RuntimeError("boom")
    with pytest.raises(ValueError, match="rng_context"):
        hax.nn.Linear(2, 2)


def test_accepts_typed_legacy_and_int_keys():
    with hax.rng_context(0):
        from_int = weight(hax.nn.Linear(4, 4))
    with hax.rng_context(jax.random.key(0)):
        from_key = weight(hax.nn.Linear(4, 4))
    with hax.rng_context(jax.random.PRNGKey(0)):
        from_legacy = weight(hax.nn.Linear(4, 4))
    # key(0) and PRNGKey(0) hold the same key data: all three agree
    np.testing.assert_array_equal(from_int, from_key)
    np.testing.assert_array_equal(from_int, from_legacy)


def test_explicit_rng_forms():
    a = weight(hax.nn.Linear(4, 4, rng=3))
    b = weight(hax.nn.Linear(4, 4, rng=jax.random.key(3)))
    c = weight(hax.nn.Linear(4, 4, rng=jax.random.PRNGKey(3)))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, weight(hax.nn.Linear(4, 4, rng=4)))


@pytest.mark.parametrize(
    "seed", [np.int64(3), np.arange(5)[3], np.uint32(3), jax.numpy.asarray(3)], ids=repr
)
def test_integer_scalar_seeds_act_like_ints(seed):
    expected = weight(hax.nn.Linear(4, 4, rng=3))
    np.testing.assert_array_equal(weight(hax.nn.Linear(4, 4, rng=seed)), expected)
    with hax.rng_context(seed):
        from_context = weight(hax.nn.Linear(4, 4))
    with hax.rng_context(3):
        np.testing.assert_array_equal(from_context, weight(hax.nn.Linear(4, 4)))


@pytest.mark.parametrize(
    "build", [lambda: hax.nn.Linear(2, 2), lambda: hax.nn.Dropout(0.5)], ids=["Linear", "Dropout"]
)
def test_no_context_no_rng_raises(build):
    with pytest.raises(ValueError, match="rng_context"):
        build()


def test_explicit_rng_overrides_context():
    outside = weight(hax.nn.Linear(4, 4, rng=7))
    with hax.rng_context(0):
        inside = weight(hax.nn.Linear(4, 4, rng=7))
        from_context = weight(hax.nn.Linear(4, 4))
    np.testing.assert_array_equal(inside, outside)
    assert not np.array_equal(from_context, outside)


def test_next_rng_key():
    with hax.rng_context(0):
        k1, k2 = hax.next_rng_key(), hax.next_rng_key()
    assert jax.numpy.issubdtype(k1.dtype, jax.dtypes.prng_key)
    assert not np.array_equal(jax.random.key_data(k1), jax.random.key_data(k2))
    with pytest.raises(ValueError, match="MyLayer"):
        hax.next_rng_key("MyLayer")


@pytest.mark.parametrize(
    "transform", [jax.jit, lambda f: lambda: jax.eval_shape(f)], ids=["jit", "eval_shape"]
)
def test_building_under_a_transform_keeps_the_context_usable(transform):
    """A constructor traced inside the context (e.g. by `hax.sharding.init`) takes the
    next key like any other, and later constructors still work."""

    def linear_weight():  # a new function per test: jax caches traces by function
        return hax.nn.Linear(4, 4)[0]["params"]["weight"]

    with hax.rng_context(0):
        first, second = np.asarray(linear_weight()), np.asarray(linear_weight())
    with hax.rng_context(0):
        built = transform(linear_weight)()
        after = np.asarray(linear_weight())
    np.testing.assert_array_equal(after, second)
    if transform is jax.jit:
        np.testing.assert_array_equal(built, first)
