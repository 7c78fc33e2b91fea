"""`Layer`: everything HAX knows about one kind of layer, declared once with `layer(...)`.

A record holds the layer's apply, its spec (what `hax.validate` checks), the torch
classes it converts from and the function that converts them (what
`hax.interop.convert` uses), and whether it computes in float32 under a
mixed-precision policy (what `hax.precision` uses). Those tables are read from one
registry, keyed by kind, so a layer is one declaration in its own file.
"""

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeAlias

from .._types import ApplyFn, AuxValue, Module, StructureTree
from ..schema import LayerSpec, layer_spec, register_spec

ConvertChild: TypeAlias = Callable[[str, Any], Module]
"""`convert_child(name, torch_child) -> (tree, config)`: converts a child module with
the same registry and `applies`; `name` (`"norm"`, or `"layers/0"` for a grandchild)
places it for error messages."""

Converter: TypeAlias = Callable[[Any, ConvertChild], Module]
"""`converter(torch_module, convert_child) -> (tree, config)`: builds the HAX module of
one torch module (its weights are loaded afterwards by `convert`)."""


def from_attributes(constructor: Callable[..., Module], *names: str) -> Converter:
    """The converter of a layer whose torch attributes `names` are, in order, its
    constructor's arguments (`from_attributes(LeakyReLU, "negative_slope", "inplace")`)."""

    def convert(m: Any, convert_child: ConvertChild) -> Module:
        return constructor(*(getattr(m, name) for name in names))

    convert.__qualname__ = f"from_attributes({constructor.__name__})"
    return convert


@dataclass(frozen=True, eq=False)
class Layer:
    """One kind of layer, as `layer(...)` declared it.

    - `kind`: its name (`"Linear"`), unique in the registry; also the spec's kind.
    - `apply`: its apply function, which carries `spec` (`hax.schema.spec_of`).
    - `spec`: the params, buffers, aux and config keys `hax.validate` checks.
    - `torch`: the dotted paths of the torch classes it converts from
      (`"torch.nn.Linear"`), resolved only when converting.
    - `converter`: `converter(torch_module, convert_child) -> (tree, config)`.
    - `float32`: computes in float32 under a `hax.precision.Policy` (norms, softmaxes).
    """

    kind: str
    apply: ApplyFn
    spec: LayerSpec
    torch: tuple[str, ...] = ()
    converter: Converter | None = None
    float32: bool = False

    def node(
        self,
        params: Mapping[str, Any] | None = None,
        buffers: Mapping[str, Any] | None = None,
        submodules: Mapping[str, StructureTree] | None = None,
        /,
        **aux: AuxValue,
    ) -> StructureTree:
        """A node of this layer. `aux` must be exactly the keys the spec declares (in the
        order given), so a constructor that forgets or adds one raises `TypeError`."""
        declared = self.spec.aux
        if aux.keys() != declared.keys():
            missing = [key for key in declared if key not in aux]
            extra = [key for key in aux if key not in declared]
            raise TypeError(
                f"{self.kind}.node: aux must be exactly the declared keys {list(declared)}; "
                f"missing {missing}, not declared {extra}"
            )
        return {
            "params": dict(params or {}),
            "buffers": dict(buffers or {}),
            "aux": aux,
            "apply": self.apply,
            "submodules": dict(submodules or {}),
        }

    def torch_classes(self) -> tuple[type, ...]:
        """The classes that `torch` names, imported (torch must be installed); a path
        that the installed release lacks is left out."""
        classes = []
        for path in self.torch:
            module_name, _, name = path.rpartition(".")
            cls = getattr(importlib.import_module(module_name), name, None)
            if isinstance(cls, type):
                classes.append(cls)
        return tuple(classes)


_LAYERS: dict[str, Layer] = {}


def _origin(apply: Any) -> tuple[str, str]:
    return getattr(apply, "__module__", ""), getattr(apply, "__qualname__", repr(apply))


def layer(
    kind: str,
    apply: ApplyFn,
    *,
    params: Any = None,
    buffers: Any = None,
    aux: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    present_if: Mapping[str, str | tuple[str, ...]] | None = None,
    torch: str | Sequence[str] = (),
    converter: Converter | None = None,
    float32: bool = False,
) -> Layer:
    """Declare a kind of layer: attach its spec to `apply` and register the record.

    `params`, `buffers`, `aux`, `config` and `present_if` are
    `hax.schema.layer_spec`'s. `torch`
    names the torch classes (by dotted path, so torch is not imported) that
    `hax.interop.convert` turns into this layer with `converter`; `float32=True`
    keeps it in float32 under `hax.precision.mixed_precision`. Running the same
    declaration again (same kind, same apply name) replaces the record; another
    apply under a registered kind, or one apply under two kinds, raises `ValueError`.

    **Example:**
    ```python
    SCALE = hax.nn.layer("Scale", scale_apply, params=ScaleParams, aux={"size": int})

    def Scale(size):
        return hax.validate(SCALE.node({"weight": jnp.ones(size)}, size=size)), {}
    ```
    """
    paths = (torch,) if isinstance(torch, str) else tuple(torch)
    if bool(paths) != (converter is not None):
        raise ValueError(
            f"layer {kind!r}: torch classes need a converter and a converter needs torch "
            f"classes; found torch={paths} and converter={converter!r}"
        )
    old = _LAYERS.get(kind)
    if old is not None and _origin(old.apply) != _origin(apply):
        raise ValueError(
            f"layer kind {kind!r} is already registered, for {'.'.join(_origin(old.apply))}; "
            "give this layer another kind"
        )
    for other in _LAYERS.values():
        if other.apply is apply and other.kind != kind:
            raise ValueError(f"layer {kind!r}: its apply is already the {other.kind}'s")
    spec = layer_spec(
        kind, params=params, buffers=buffers, aux=aux, config=config, present_if=present_if
    )
    record = Layer(kind, register_spec(apply, spec), spec, paths, converter, float32)
    _LAYERS[kind] = record
    return record


def registered_layers() -> Mapping[str, Layer]:
    """Every declared layer, by kind (a read-only view that follows new declarations)."""
    return MappingProxyType(_LAYERS)
