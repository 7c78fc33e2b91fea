"""Shared fixtures and helpers for the HAX test suite.

`jax_numpy_rank_promotion="raise"` is deliberately *not* set: `Linear` adds a
`(out_features,)` bias to a `(..., out_features)` result, which is implicit rank
promotion, exactly as in PyTorch.

Float32 matmuls and convolutions run at full precision: on GPUs JAX otherwise uses
TF32, which is ~1e-3 off PyTorch's CPU results that the parity tests compare to
1e-5. On CPUs this is JAX's default anyway.
"""

import os
from typing import Any

# `HAX_TYPECHECK=1`: every function of `hax` checked against its annotations at each call
# (jaxtyping's import hook with beartype, reading `float` as admitting an `int` as type
# checkers and debug mode do). Tests marked `wrong_types`, which pass wrong types on
# purpose to test HAX's own messages, are deselected in that run.
if os.environ.get("HAX_TYPECHECK"):
    import jaxtyping

    jaxtyping.install_import_hook(
        "hax", "beartype.beartype(conf=beartype.BeartypeConf(is_pep484_tower=True))"
    )

import jax
import numpy as np
import pytest

jax.config.update("jax_default_matmul_precision", "highest")

ARRAY_TYPES = (jax.Array, np.ndarray, np.generic)


@pytest.fixture
def key() -> jax.Array:
    return jax.random.key(0)


def _is_key_array(x: Any) -> bool:
    return isinstance(x, jax.Array) and jax.numpy.issubdtype(x.dtype, jax.dtypes.prng_key)


def assert_leaves_equal(a: Any, b: Any, where: str = "") -> None:
    """Two pytree leaves are equal: arrays by shape, dtype and values; callables by
    identity; anything else by type and `==`."""
    if isinstance(a, ARRAY_TYPES) or isinstance(b, ARRAY_TYPES):
        assert isinstance(a, ARRAY_TYPES) and isinstance(b, ARRAY_TYPES), (
            f"{where}: array vs non-array: {type(a).__name__} vs {type(b).__name__}"
        )
        assert np.shape(a) == np.shape(b), f"{where}: shapes {np.shape(a)} vs {np.shape(b)}"
        assert a.dtype == b.dtype, f"{where}: dtypes {a.dtype} vs {b.dtype}"
        if _is_key_array(a):
            assert _is_key_array(b), f"{where}: key array vs plain array"
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=where)
    elif callable(a) or callable(b):
        assert a is b, f"{where}: different callables {a!r} and {b!r}"
    else:
        assert type(a) is type(b), f"{where}: types {type(a).__name__} vs {type(b).__name__}"
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_trees_equal(a: Any, b: Any) -> None:
    """`a` and `b` have the same pytree structure (dict keys, tuples vs lists, None)
    and equal leaves in the sense of `assert_leaves_equal`."""
    leaves_a, tdef_a = jax.tree_util.tree_flatten_with_path(a)
    leaves_b, tdef_b = jax.tree_util.tree_flatten_with_path(b)
    assert tdef_a == tdef_b, f"different structures:\n{tdef_a}\nvs\n{tdef_b}"
    for (path, leaf_a), (_, leaf_b) in zip(leaves_a, leaves_b, strict=True):
        assert_leaves_equal(leaf_a, leaf_b, jax.tree_util.keystr(path))


def import_torchvision() -> Any:
    """`torchvision`, for its models (pure Python), or a skip saying why not (of the
    whole module when a test module calls it as it is imported).

    The registry's torchvision 0.28 wheel (the release for torch 2.13) is built for
    CUDA torch: its compiled ops cannot load beside the CPU torch the tests use, and
    its import then fails registering fake kernels for two of them (`nms`, `qnms`).
    The classification models HAX converts never call those ops, so their schemas are
    declared first (calling them would still fail: they have no kernel).
    """
    import torch

    schema = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
    for name in ("nms", "qnms"):
        try:
            torch.library.define(f"torchvision::{name}", schema)
        except RuntimeError:  # already defined: a working torchvision, or declared before
            pass
    try:
        import torchvision
    except ImportError as err:
        msg = f"torchvision does not import beside this torch: {err}"
        pytest.skip(msg, allow_module_level=True)
    return torchvision
