"""Mixed precision: params stored in one dtype, computed in another, per-node overrides."""

import dataclasses
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from .._tree import structure_tree_map
from .._types import ApplyFn, GlobalConfig, StructureTree
from ..nn import registered_layers
from ..surgery._wrap import WrapperApply, unwrapped

AUX_KEY = "compute_dtype"
"""A node whose `aux` has this key (a dtype name such as `"float32"`) computes in
that dtype whatever the policy says."""


def _float32_applies() -> frozenset[Any]:
    return frozenset(r.apply for r in registered_layers().values() if r.float32)


FLOAT32_APPLIES: frozenset[Any] = _float32_applies()
"""The `hax.nn` layers kept in float32 (declared with `float32=True`): normalisations
and softmaxes, whose reductions lose too much in 16-bit floats."""


def _dtype_name(dtype: DTypeLike) -> str:
    return str(jnp.dtype(dtype).name)


@dataclasses.dataclass(frozen=True, init=False)
class Policy:
    """Which dtype params are kept in, computed in, and returned in.

    The usual choice is `Policy(compute_dtype="bfloat16")` (or `"float16"` with
    dynamic loss scaling, `hax.optim.dynamic_loss_scale`): float32 params (the
    optimizer updates them in full precision), 16-bit activations and matmuls,
    float32 outputs so the loss is computed in float32. Each argument is any dtype
    (`jnp.bfloat16`, `"bfloat16"`, a `np.dtype`); the fields hold its name, so a
    policy is hashable, JSON-like and compared by value.
    """

    param_dtype: str
    compute_dtype: str
    output_dtype: str

    def __init__(
        self,
        param_dtype: DTypeLike = "float32",
        compute_dtype: DTypeLike = "float32",
        output_dtype: DTypeLike = "float32",
    ) -> None:
        given = {
            "param_dtype": param_dtype,
            "compute_dtype": compute_dtype,
            "output_dtype": output_dtype,
        }
        for field, value in given.items():
            try:
                name = _dtype_name(value)
            except TypeError:
                raise TypeError(f"Policy: {field}={value!r} is not a dtype") from None
            if not jnp.issubdtype(name, jnp.floating):
                raise TypeError(f"Policy: {field} must be a floating dtype, found {name}")
            object.__setattr__(self, field, name)


def _is_float(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.floating)


def cast_floating(tree: Any, dtype: Any) -> Any:
    """Cast the floating-point arrays of a pytree to `dtype`; leave the rest alone."""
    return jax.tree.map(lambda x: x.astype(dtype) if _is_float(x) else x, tree)


@dataclasses.dataclass(frozen=True)
class NodeDtype(WrapperApply):
    """A node's apply, run in `dtype`: floating inputs cast to it, floating outputs
    cast back to `outer` (the dtype around it). The node it returns keeps this apply,
    whatever `inner` put there (a `hax.surgery.wrap` returns its own)."""

    inner: ApplyFn
    dtype: str
    outer: str

    def __call__(
        self, tree: StructureTree, global_config: GlobalConfig, /, *args: Any, **kwargs: Any
    ) -> tuple[StructureTree, Any]:
        args, kwargs = cast_floating((args, kwargs), self.dtype)
        new_tree, out = self.inner(tree, global_config, *args, **kwargs)
        return self.owned(new_tree), cast_floating(out, self.outer)


@dataclasses.dataclass(frozen=True)
class PolicyApply(WrapperApply):
    """The root apply of a tree under a `Policy` (see `mixed_precision`). A frozen
    dataclass, so rebuilding the same policy does not retrace under `hax.jit`."""

    inner: ApplyFn
    policy: Policy
    float32_applies: frozenset[Any]

    def _node_dtype(self, node: StructureTree, outer: str) -> str:
        aux: dict[str, Any] = node["aux"]
        name = aux.get(AUX_KEY)
        if name is not None:
            return _dtype_name(name)
        if any(a in self.float32_applies for a in unwrapped(node["apply"])):  # wraps too
            return "float32"
        return outer

    def _compute_apply(self, apply: ApplyFn) -> ApplyFn:
        """The apply to run a node with. At the root, the policy itself (possibly under
        wraps, e.g. `hax.surgery.intermediates` of the root) is already running, so
        the root runs the apply the policy wraps."""
        if any(a is self for a in unwrapped(apply)):
            return self.inner
        return apply

    def _for_compute(self, node: StructureTree, outer: str) -> StructureTree:
        dtype = self._node_dtype(node, outer)
        apply = self._compute_apply(node["apply"])
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

        def param(new: Any, cast: Any, old: Any) -> Any:
            if new is cast:  # unchanged by apply: the stored value, not a rounded copy
                return old
            return new.astype(old.dtype) if _is_float(new) else new

        def restore(new: Any, cast: Any, old: Any, path: tuple[str, ...]) -> Any:
            # Params go back to their stored values and dtypes; applies to the originals.
            params = jax.tree.map(param, new["params"], cast["params"], old["params"])
            return {**new, "params": params, "apply": old["apply"]}

        new_tree = structure_tree_map(restore, new_cast, cast, tree)
        return new_tree, cast_floating(out, self.policy.output_dtype)


def mixed_precision(
    tree: StructureTree,
    policy: Policy,
    *,
    float32_applies: Iterable[Any] | None = None,
) -> StructureTree:
    """The same model, run under `policy`.

    Floating params are cast to `policy.param_dtype` now (stored); at every call they
    are cast to `policy.compute_dtype`, floating inputs too, and floating outputs to
    `policy.output_dtype`. Buffers are never cast (BatchNorm statistics accumulate in
    their own dtype). Nodes whose apply is in `float32_applies` compute in float32 (by
    default the layers declared with `hax.nn.layer(..., float32=True)`: `hax.nn`'s
    normalisations and softmaxes, `FLOAT32_APPLIES`, and yours), and any node with
    `aux["compute_dtype"] = "float32"` (or another dtype name) computes in that dtype:
    its floating inputs are cast to it and its outputs back. A node wrapped by
    `hax.surgery.wrap` (or captured by `hax.surgery.intermediates`) keeps its dtype.
    Gradients flow through every cast, so `jax.grad` gives float32 gradients for
    float32 params. The tree that apply returns holds the stored params themselves
    (not copies rounded through the compute dtype) unless apply changed them.

    The root's apply becomes a `PolicyApply` wrapping the old one; calling
    `mixed_precision` again replaces the policy. Surgery sees through it; a node that
    surgery adds later computes in the policy's dtypes but keeps its params' own
    dtype until `mixed_precision` is called again, which casts them.
    """
    root = tree["apply"]
    inner = root.inner if isinstance(root, PolicyApply) else root
    stored = structure_tree_map(
        lambda n, path: {**n, "params": cast_floating(n["params"], policy.param_dtype)}, tree
    )
    if float32_applies is None:
        float32_applies = _float32_applies()
    wrapped = PolicyApply(inner, policy, frozenset(float32_applies))
    return {**stored, "apply": wrapped}
