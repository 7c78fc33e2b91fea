"""`Wrapped`: the apply of a wrapped node, static and compared by value under `jit`."""

import abc
from collections.abc import Callable, Iterator
from typing import Any

from .._types import ApplyFn, GlobalConfig, StructureTree
from ..schema import LayerSpec, spec_of

WrapFn = Callable[..., tuple[StructureTree, Any]]
"""`fn(inner_apply, tree, global_config, *args, **kwargs) -> (new_tree, out)`."""


class WrapperApply(abc.ABC):
    """Base of the applies that run another apply, `inner` (a wrap, a tie, a precision
    policy): surgery, `select(kind=...)`, `config_of` and `unwrapped` see through it
    (`__hax_wraps__`), and its node keeps `inner`'s layer spec (`__hax_spec__`), so
    `hax.validate` checks the node as before it was wrapped."""

    __slots__ = ()
    inner: ApplyFn

    @abc.abstractmethod
    def __call__(
        self, tree: StructureTree, global_config: GlobalConfig, /, *args: Any, **kwargs: Any
    ) -> tuple[StructureTree, Any]: ...

    @property
    def __hax_wraps__(self) -> ApplyFn:
        return self.inner

    @property
    def __hax_spec__(self) -> LayerSpec | None:
        return spec_of(self.inner)

    def owned(self, node: StructureTree) -> StructureTree:
        """`node` with this apply as its apply (what `inner` returned names `inner`)."""
        return node if node["apply"] is self else {**node, "apply": self}


class Wrapped(WrapperApply):
    """The apply of a wrapped node: `Wrapped(fn, inner)(tree, config, *args, **kwargs)`
    is `fn(inner, tree, config, *args, **kwargs)`, and the returned node keeps this
    apply whatever `fn` put there.

    Two `Wrapped` compare equal (and hash alike) when their `fn` and `inner` are
    equal, so rebuilding the same wrap with a module-level `fn` reuses the code that
    `hax.jit` compiled; a `fn` created anew (a lambda, a closure) forces a retrace.
    The node keeps the layer spec of `inner`, so `hax.validate` checks it as before.
    """

    __slots__ = ("__weakref__", "fn", "inner")

    def __init__(self, fn: WrapFn, inner: ApplyFn) -> None:
        if not callable(fn):
            raise TypeError(
                "hax.surgery.wrap: fn must be a callable fn(inner_apply, tree, config, *args, "
                f"**kwargs) -> (tree, out), found {type(fn).__name__}"
            )
        self.fn: WrapFn = fn
        self.inner: ApplyFn = inner

    def __call__(
        self, tree: StructureTree, global_config: GlobalConfig, /, *args: Any, **kwargs: Any
    ) -> tuple[StructureTree, Any]:
        new_tree, out = self.fn(self.inner, tree, global_config, *args, **kwargs)
        return self.owned(new_tree), out

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Wrapped)
            and bool(self.fn == other.fn)
            and bool(self.inner == other.inner)
        )

    def __hash__(self) -> int:
        return hash((Wrapped, self.fn, self.inner))

    def __repr__(self) -> str:
        return f"Wrapped({fn_name(self.fn)}, {fn_name(self.inner)})"


def fn_name(fn: Any) -> str:
    """A function's qualified name, for kinds and messages."""
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn))


def unwrapped(apply: Any) -> Iterator[Any]:
    """`apply`, then the apply it wraps, and so on down to the layer's own apply. An
    apply wraps another when it names it as `__hax_wraps__`: a `Wrapped`, or the root
    apply that `hax.precision.mixed_precision` puts around a model's own."""
    while apply is not None:
        yield apply
        apply = getattr(apply, "__hax_wraps__", None)
