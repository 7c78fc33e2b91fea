"""`convert`: the HAX module `(tree, config)` of a PyTorch model, weights included."""

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from .._config import merge_configs
from .._module import BoundApply, as_module, bind_module, unbind_module
from .._path import as_path, describe_path
from .._rng import as_key, rng_context
from .._torch_attrs import numpy_dtype
from .._tree import empty_tree, missing_apply
from .._types import ApplyFn, Module, StructureTree
from .._validate import validate
from ..nn import registered_layers
from ..nn._layer import Converter
from ._from_torch import from_torch, import_torch

_USER_CONVERTERS: dict[type, Converter] = {}

_UNKNOWN_FIX = (
    "Pass an apply for each class, e.g. convert(model, applies={{{example}}}), where "
    "`my_apply(tree, config, *args) -> (tree, out)` runs a node whose submodules are the "
    "module's children by name (converted) and whose params/buffers are its own direct "
    "tensors (see hax.organized_apply); or register a converter that builds the HAX "
    "module from the torch one: hax.interop.register_converter(cls, fn)."
)


class ConversionError(ValueError):
    """`convert` could not convert a torch model; the message lists every problem.

    `unknown` lists `(path, torch class)` for every module with no converter and no
    apply in `applies`; `failed` lists `(path, message)` for every module whose
    converter raised (e.g. an argument HAX does not support). All are found in one
    pass over the model.
    """

    def __init__(
        self, message: str, unknown: list[tuple[str, type]], failed: list[tuple[str, str]]
    ) -> None:
        self.unknown = list(unknown)
        self.failed = list(failed)
        super().__init__(message)


def register_converter(torch_cls: type, converter: Converter) -> None:
    """Make `convert` turn modules of class `torch_cls` into HAX modules with `converter`.

    `converter(torch_module, convert_child) -> (tree, config)` reads the module's
    constructor arguments from its attributes and calls a HAX constructor; `convert`
    then loads the weights with `from_torch`, so the tree's leaf names and shapes must
    follow the module's `state_dict`. Call `convert_child(name, child)` to convert a
    child (e.g. a block's norm layer). It runs under `jax.eval_shape`, so it must not
    read array values. A later registration for the same class replaces the earlier one
    (also a built-in converter); the class must match exactly (subclasses are not
    covered, since they may change `forward`).

    **Example:**
    ```python
    def convert_scale(m, convert_child):
        return my_hax_layers.Scale(m.weight.shape[0])

    hax.interop.register_converter(MyScale, convert_scale)
    ```
    """
    if not isinstance(torch_cls, type):
        raise TypeError(f"register_converter: expected a class, found {torch_cls!r}")
    if not callable(converter):
        raise TypeError(
            f"register_converter: the converter for {torch_cls.__name__} must be callable, "
            f"found {type(converter).__name__}"
        )
    _USER_CONVERTERS[torch_cls] = converter


def builtin_converters() -> dict[type, Converter]:
    """The converter of every torch class that a declared layer names (`hax.nn.layer`)."""
    return {
        cls: record.converter
        for record in registered_layers().values()
        if record.converter is not None
        for cls in record.torch_classes()
    }


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class _Builder:
    """Walks a torch model, building the HAX tree and noting what it cannot convert."""

    def __init__(self, torch: Any, applies: Mapping[type, ApplyFn]) -> None:
        nn = torch.nn
        self.applies = applies
        self.converters = {**builtin_converters(), **_USER_CONVERTERS}
        # Containers without a forward become nodes of their children.
        self.containers: dict[type, ApplyFn] = {
            nn.ModuleList: missing_apply,
            nn.ModuleDict: missing_apply,
            nn.ParameterList: missing_apply,
            nn.ParameterDict: missing_apply,
        }
        self.unknown: list[tuple[str, type]] = []
        self.failed: list[tuple[str, str]] = []
        self.extra_state: dict[str, Any] = {}

    def node(self, module: Any, path: tuple[str, ...]) -> Module:
        cls = type(module)
        converter = None if cls in self.applies else self.converters.get(cls)
        if converter is not None:
            return self._run(converter, module, path)
        apply = self.applies.get(cls) or self.containers.get(cls)
        if apply is None:
            self.unknown.append((describe_path(path), cls))
            apply = missing_apply  # keep walking: every unknown class is reported at once
        return self._generic(module, path, apply)

    def _run(self, converter: Converter, module: Any, path: tuple[str, ...]) -> Module:
        def convert_child(name: str, child: Any) -> Module:
            return self.node(child, (*path, *as_path(name)))

        where = f"{describe_path(path)} ({_class_name(type(module))})"
        try:
            result = converter(module, convert_child)
        except Exception as err:
            self.failed.append((where, f"{type(err).__name__}: {err}"))
            return empty_tree(), {}  # a placeholder: the walk goes on, to report everything
        pair = as_module(result)
        if pair is None:
            self.failed.append(
                (
                    where,
                    f"the converter returned a {type(result).__name__}; it must return a "
                    "module `(tree, config)`, e.g. from a hax.nn constructor",
                )
            )
            return empty_tree(), {}
        return pair

    def _generic(self, module: Any, path: tuple[str, ...], apply: ApplyFn) -> Module:
        """Children as submodules, direct tensors as params/buffers (placeholders here;
        `convert` loads the values)."""
        children = {
            name: self.node(child, (*path, name)) for name, child in module.named_children()
        }
        params = {
            name: jnp.zeros(tuple(t.shape), numpy_dtype(t.dtype))
            for name, t in module.named_parameters(recurse=False, remove_duplicate=False)
        }
        buffers = {
            name: jnp.zeros(tuple(t.shape), numpy_dtype(t.dtype))
            for name, t in module.named_buffers(recurse=False, remove_duplicate=False)
        }
        # Non-persistent buffers are not in the state_dict, but the forward uses them.
        for name in module._non_persistent_buffers_set:
            if module._buffers.get(name) is not None:
                self.extra_state[".".join((*path, name))] = module._buffers[name]
        tree: StructureTree = {
            "params": params,
            "buffers": buffers,
            "aux": {},
            "apply": apply,
            "submodules": {name: child for name, (child, _) in children.items()},
        }
        return tree, merge_configs(*(config for _, config in children.values()))

    def error(self) -> ConversionError | None:
        """One error for every failed and unknown module, or None if there are none."""
        lines = []
        if self.failed:
            lines.append(f"convert: {len(self.failed)} module(s) could not be converted:")
            lines.extend(f"  {where}: {message}" for where, message in self.failed)
        by_class: dict[type, list[str]] = defaultdict(list)
        for path, cls in self.unknown:
            by_class[cls].append(path)
        if by_class:
            n = len(by_class)
            lines.append(f"convert: {n} torch class{'es' if n != 1 else ''} with no HAX converter:")
            lines.extend(
                f"  {_class_name(cls)} at {', '.join(paths)}" for cls, paths in by_class.items()
            )
            example = ", ".join(f"{cls.__name__}: my_apply" for cls in by_class)
            lines.append(_UNKNOWN_FIX.format(example=example))
        if not lines:
            return None
        return ConversionError("\n".join(lines), self.unknown, self.failed)


def _draw_keys(state: dict[str, Any], rng: jax.Array | int) -> dict[str, Any]:
    """`state` with a fresh PRNG key for every key-typed leaf (one split of `rng` each,
    in leaf order), the other leaves unchanged."""
    leaves, treedef = jax.tree_util.tree_flatten(state)
    key = as_key(rng)
    out = []
    for leaf in leaves:
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            key, sub = jax.random.split(key)
            leaf = jax.random.split(sub, leaf.shape) if leaf.shape else sub
        out.append(leaf)
    drawn: dict[str, Any] = jax.tree_util.tree_unflatten(treedef, out)
    return drawn


def convert(
    torch_module: Any,
    *,
    applies: Mapping[type, ApplyFn] | None = None,
    rng: jax.Array | int = 0,
) -> Module:
    """The HAX module `(tree, config)` of a PyTorch model, with its weights.

    Each module of the torch model becomes a node at the same path
    (`model.layer1[0].conv1` -> `("layer1", "0", "conv1")`), so the torch `state_dict`
    maps onto the tree by name:

    - A layer with a HAX counterpart (every `hax.nn` layer: `Linear`, `Conv2d`,
      `BatchNorm2d`, `MultiheadAttention`, `TransformerEncoder`, ...) is rebuilt by its
      `hax.nn` constructor, called with the arguments read from the torch module's
      attributes (and its params' dtype): the converter its `hax.nn.layer` record
      declares. A layer of yours declared with `torch=` and `converter=` converts the
      same way; `register_converter` adds other classes.
    - `nn.Sequential` runs its children in order with `hax.nn.sequential_apply`, or,
      when they have names (built from an `OrderedDict`), with
      `named_sequential_apply`, which keeps the order in `aux["order"]`.
      `nn.ModuleList`/`ModuleDict` become nodes of their children with no forward
      (`hax.missing_apply`).
    - Any other class (e.g. your ResNet `BasicBlock`) becomes a node whose submodules
      are its children by name, whose params/buffers are its own direct tensors, and
      whose apply is `applies[type(module)]`. A class in `applies` always takes this
      route, even if it has a converter.

    Modules of a class in neither, and converters that fail (e.g. `nn.Softmax()`
    without `dim`), are all reported in one `ConversionError`, each with its path.

    The layers are built abstractly (`jax.eval_shape`: no random weights are drawn or
    allocated), then every weight is loaded with `from_torch` (strict: names, shapes,
    dtypes must agree). The configs of the layers merge; a model with `Dropout` or
    `BatchNorm` gets `{"train_mode": torch_module.training}` (one flag for the whole
    model, the root's). The result is validated.

    **Arguments:**
    - `torch_module`: the `torch.nn.Module` to convert.
    - `applies`: apply functions for classes without a converter, by exact class.
      They should be module-level functions (see `hax.ApplyFn`).
    - `rng`: seeds the PRNG key buffers (`Dropout`'s `rng`), which torch has no
      counterpart for; each gets its own key split from it.

    **Example:**
    ```python
    tree, config = hax.interop.convert(torch_model.eval(), applies={BasicBlock: block_apply})
    _, logits = hax.apply_tree(tree, config, images)
    ```
    """
    torch = import_torch("hax.interop.convert")
    if not isinstance(torch_module, torch.nn.Module):
        raise TypeError(
            f"convert: expected a torch.nn.Module, found {type(torch_module).__name__}; "
            "to load a state_dict into a HAX tree use hax.interop.from_torch"
        )
    builder = _Builder(torch, applies or {})
    bound: list[BoundApply] = []

    def build() -> dict[str, Any]:
        # Keys drawn in here are abstract; `_draw_keys` gives the real ones.
        with rng_context(0):
            tree, config = builder.node(torch_module, ())
        state, apply = bind_module(tree, config)
        bound.append(apply)
        return state

    shapes = jax.eval_shape(build)
    error = builder.error()
    if error is not None:
        raise error
    tree, config = unbind_module(_draw_keys(shapes, rng), bound[0])
    tree = from_torch({**torch_module.state_dict(), **builder.extra_state}, tree)
    if "train_mode" in config:
        config = {**config, "train_mode": bool(torch_module.training)}
    return validate(tree, config), config
