"""Mixed precision: params stored in one dtype, computed in another, per-node overrides."""

import dataclasses
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp

from .._tree import structure_tree_map
from .._types import ApplyFn, GlobalConfig, StructureTree
from ..nn import (
    batch_norm1d_apply,
    batch_norm2d_apply,
    group_norm_apply,
    layer_norm_apply,
    log_softmax_apply,
    rms_norm_apply,
    softmax_apply,
)

AUX_KEY = "compute_dtype"
"""A node whose `aux` has this key (a dtype name such as `"float32"`) computes in
that dtype whatever the policy says."""

FLOAT32_APPLIES: frozenset[Any] = frozenset(
    {
        batch_norm1d_apply,
        batch_norm2d_apply,
        group_norm_apply,
        layer_norm_apply,
        rms_norm_apply,
        softmax_apply,
        log_softmax_apply,
    }
)
"""Layers kept in float32 by default: normalisations and softmaxes, whose reductions
lose too much in 16-bit floats."""


def _dtype_name(dtype: Any) -> str:
    return str(jnp.dtype(dtype).name)


@dataclasses.dataclass(frozen=True)
class Policy:
    """Which dtype params are kept in, computed in, and returned in.

    The usual choice is `Policy(compute_dtype="bfloat16")` (or `"float16"` with
    dynamic loss scaling, `hax.optim.dynamic_loss_scale`): float32 params (the
    optimizer updates them in full precision), 16-bit activations and matmuls,
    float32 outputs so the loss is computed in float32.
    """

    param_dtype: str = "float32"
    compute_dtype: str = "float32"
    output_dtype: str = "float32"

    def __post_init__(self) -> None:
        for field in ("param_dtype", "compute_dtype", "output_dtype"):
            value = getattr(self, field)
            try:
                name = _dtype_name(value)
            except TypeError:
                raise TypeError(f"Policy: {field}={value!r} is not a dtype") from None
            if not jnp.issubdtype(name, jnp.floating):
                raise TypeError(f"Policy: {field} must be a floating dtype, found {name}")
            object.__setattr__(self, field, name)  # a name: hashable, JSON-like, comparable


def _is_float(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.floating)


def cast_floating(tree: Any, dtype: Any) -> Any:
    """Cast the floating-point arrays of a pytree to `dtype`; leave the rest alone."""
    return jax.tree.map(lambda x: x.astype(dtype) if _is_float(x) else x, tree)


@dataclasses.dataclass(frozen=True)
class NodeDtype:
    """A node's apply, run in `dtype`: floating inputs cast to it, floating outputs
    cast back to `outer` (the dtype around it)."""

    inner: ApplyFn
    dtype: str
    outer: str

    def __call__(
        self, tree: StructureTree, global_config: GlobalConfig, /, *args: Any, **kwargs: Any
    ) -> tuple[StructureTree, Any]:
        args, kwargs = cast_floating((args, kwargs), self.dtype)
        new_tree, out = self.inner(tree, global_config, *args, **kwargs)
        return new_tree, cast_floating(out, self.outer)


@dataclasses.dataclass(frozen=True)
class PolicyApply:
    """The root apply of a tree under a `Policy` (see `mixed_precision`). A frozen
    dataclass, so rebuilding the same policy does not retrace under `hax.jit`."""

    inner: ApplyFn
    policy: Policy
    float32_applies: frozenset[Any]

    def _node_dtype(self, node: StructureTree, outer: str) -> str:
        name = node["aux"].get(AUX_KEY)
        if name is not None:
            return _dtype_name(name)
        if node["apply"] in self.float32_applies:
            return "float32"
        return outer

    def _for_compute(self, node: StructureTree, outer: str) -> StructureTree:
        dtype = self._node_dtype(node, outer)
        apply = self.inner if node["apply"] is self else node["apply"]
        return {
            **node,
            "params": cast_floating(node["params"], dtype),
            "apply": apply if dtype == outer else NodeDtype(apply, dtype, outer),
            "submodules": {
                name: self._for_compute(child, dtype) for name, child in node["submodules"].items()
            },
        }

    def __call__(
        self, tree: StructureTree, global_config: GlobalConfig, /, *args: Any, **kwargs: Any
    ) -> tuple[StructureTree, Any]:
        compute = self.policy.compute_dtype
        cast = self._for_compute(tree, compute)
        args, kwargs = cast_floating((args, kwargs), compute)
        new_cast, out = cast["apply"](cast, global_config, *args, **kwargs)

        def restore(new: Any, old: Any, path: tuple[str, ...]) -> Any:
            # Params go back to their stored dtypes; applies to the originals.
            params = jax.tree.map(
                lambda n, o: n.astype(o.dtype) if _is_float(n) else n, new["params"], old["params"]
            )
            return {**new, "params": params, "apply": old["apply"]}

        new_tree = structure_tree_map(restore, new_cast, tree)
        return new_tree, cast_floating(out, self.policy.output_dtype)


def mixed_precision(
    tree: StructureTree,
    policy: Policy,
    *,
    float32_applies: Iterable[Any] = FLOAT32_APPLIES,
) -> StructureTree:
    """The same model, run under `policy`.

    Floating params are cast to `policy.param_dtype` now (stored); at every call they
    are cast to `policy.compute_dtype`, floating inputs too, and floating outputs to
    `policy.output_dtype`. Buffers are never cast (BatchNorm statistics accumulate in
    their own dtype). Nodes whose apply is in `float32_applies` (normalisations and
    softmaxes by default) compute in float32, and any node with
    `aux["compute_dtype"] = "float32"` (or another dtype name) computes in that dtype:
    its floating inputs are cast to it and its outputs back. Gradients flow through
    every cast, so `jax.grad` gives float32 gradients for float32 params.

    The root's apply becomes a `PolicyApply` wrapping the old one; calling
    `mixed_precision` again replaces the policy.
    """
    root = tree["apply"]
    inner = root.inner if isinstance(root, PolicyApply) else root
    stored = structure_tree_map(
        lambda n, path: {**n, "params": cast_floating(n["params"], policy.param_dtype)}, tree
    )
    wrapped = PolicyApply(inner, policy, frozenset(float32_applies))
    return {**stored, "apply": wrapped}  # type: ignore[typeddict-item]  # structure_tree_map returns Any
