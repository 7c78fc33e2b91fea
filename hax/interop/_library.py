"""What `convert` knows about torch classes, and how a class finds what applies to it.

Two kinds of knowledge, both registered by class or by dotted class path (so that
`transformers`, `timm` and `torchvision` are imported only by the models that use
them):

- a *converter* builds the HAX module of a torch module (the `hax.nn` layers, and
  library classes that are one of them under another name);
- an *apply* runs a module converted generically: its children become submodules,
  its direct tensors params and buffers, its plain attributes `aux`.

A class uses its own entry, or the entry of the nearest base class it inherits
`forward` from: a subclass that only changes `__init__` (torchvision's
`Conv2dNormActivation` is a `Sequential`) runs as its base, one that overrides
`forward` does not (it is reported, naming the base it subclasses).
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .._types import ApplyFn, AuxValue
from ..nn import registered_layers
from ..nn._layer import Converter

AuxReader = Callable[[Any], Mapping[str, AuxValue]]
"""`aux(torch_module) -> {name: value}`: values an apply needs that are not plain
attributes of the module (e.g. read from a Hugging Face `config`)."""


@dataclass(frozen=True)
class Entry:
    """What `convert` does with modules of one class: build them with `converter`, or
    convert them generically and run them with `apply`. With `rng`, the node gets a
    PRNG key buffer `rng` (for dropout and drop-path in train mode); `aux` adds values."""

    converter: Converter | None = None
    apply: ApplyFn | None = None
    rng: bool = False
    aux: AuxReader | None = None


_BY_PATH: dict[str, Entry] = {}
_BY_CLASS: dict[type, Entry] = {}


def class_path(cls: type) -> str:
    """`"module.QualName"`, the name classes are registered by."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _key(cls: type | str, who: str) -> str | type:
    if isinstance(cls, str):
        if "." not in cls:
            raise ValueError(f"{who}: {cls!r} is not a dotted class path such as 'pkg.mod.Class'")
        return cls
    if not isinstance(cls, type):
        raise TypeError(f"{who}: expected a class or a dotted class path, found {cls!r}")
    return cls


def _store(cls: type | str, entry: Entry, who: str) -> None:
    key = _key(cls, who)
    if isinstance(key, str):
        _BY_PATH[key] = entry
    else:
        _BY_CLASS[key] = entry


def register_converter(cls: type | str, converter: Converter) -> None:
    """Make `convert` build modules of class `cls` with `converter`. `cls` is a class, or
    the dotted path of its definition (`cls.__module__ + "." + cls.__qualname__`, e.g.
    `"timm.layers.norm.LayerNorm2d"`), which imports nothing.

    `converter(torch_module, convert_child) -> (tree, config)` reads the module's
    constructor arguments from its attributes and calls a HAX constructor; `convert`
    then loads the weights with `from_torch`, so the tree's leaf names and shapes must
    follow the module's `state_dict`. Call `convert_child(name, child)` to convert a
    child (e.g. a block's norm layer). It runs under `jax.eval_shape`, so it must not
    read array values. A later registration for the same class replaces the earlier one
    (also a built-in converter). Subclasses that inherit `forward` use it too.

    **Example:**
    ```python
    def convert_scale(m, convert_child):
        return my_hax_layers.Scale(m.weight.shape[0])

    hax.interop.register_converter(MyScale, convert_scale)
    ```
    """
    if not callable(converter):
        raise TypeError(
            f"register_converter: the converter for {cls!r} must be callable, "
            f"found {type(converter).__name__}"
        )
    _store(cls, Entry(converter=converter), "register_converter")


def register_apply(
    cls: type | str, apply: ApplyFn, *, rng: bool = False, aux: AuxReader | None = None
) -> None:
    """Make `convert` run modules of class `cls` (a class or its dotted path) with
    `apply`, converting them generically: children by name as submodules, direct
    tensors as params/buffers, plain attributes (ints, floats, bools, strs, tuples,
    None) in `aux`. `rng=True` gives each such node a PRNG key buffer `rng` for the
    randomness it draws in train mode (and the model's config a `"train_mode"` flag);
    `aux(module)` adds values from elsewhere. Define
    `apply` at module level (it is compared by identity under `jit`).

    **Example:** `hax.interop.register_apply("my_lib.blocks.Block", block_apply)`
    """
    if not callable(apply):
        raise TypeError(f"register_apply: apply must be callable, found {type(apply).__name__}")
    _store(cls, Entry(apply=apply, rng=rng, aux=aux), "register_apply")


def builtin_entries() -> dict[type, Entry]:
    """The converters that `hax.nn` layer records declare, by torch class (imported:
    this runs only when converting)."""
    return {
        cls: Entry(converter=record.converter)
        for record in registered_layers().values()
        if record.converter is not None
        for cls in record.torch_classes()
    }


def _own_entry(
    cls: type, applies: Mapping[type, ApplyFn], builtin: Mapping[type, Entry]
) -> Entry | None:
    """The entry registered for exactly `cls`: the user's `applies` first, then what was
    registered by class, by path, and the `hax.nn` records."""
    if cls in applies:
        return Entry(apply=applies[cls])
    return _BY_CLASS.get(cls) or _BY_PATH.get(class_path(cls)) or builtin.get(cls)


def find(
    cls: type, applies: Mapping[type, ApplyFn], builtin: Mapping[type, Entry], module_base: type
) -> tuple[Entry | None, type | None]:
    """`(entry, None)` for the entry `cls` uses, or `(None, base)` when `cls` overrides
    the `forward` of a registered `base`, or `(None, None)` when nothing is known.
    `builtin` is `builtin_entries()`; `module_base` is `torch.nn.Module`."""
    for base in cls.__mro__:
        if base is module_base:
            break
        entry = _own_entry(base, applies, builtin)
        if entry is None:
            continue
        if base is cls or getattr(cls, "forward", None) is getattr(base, "forward", None):
            return entry, None
        return None, base
    return None, None
