"""`convert`: the HAX module `(tree, config)` of a PyTorch model, weights included."""

import re
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from .._config import merge_configs
from .._leaves import LeafAddress
from .._module import BoundApply, as_module, bind_module, unbind_module
from .._path import as_path, describe_path
from .._rng import RngLike, as_key, next_rng_key, rng_context
from .._torch_attrs import NON_PERSISTENT, numpy_dtype
from .._tree import empty_tree, missing_apply
from .._types import ApplyFn, Module, StructureTree
from .._validate import validate
from ..nn import registered_layers
from ..nn._layer import Converter
from ..surgery._tie import TIED, tie
from ._from_torch import from_torch, import_torch
from ._library import Entry, builtin_entries, class_path, find, overridden

_UNKNOWN_FIX = (
    "Give each an apply, convert(model, applies={{{example}}}), where "
    "`apply(tree, config, *args) -> (tree, out)` runs a node whose submodules are the "
    "module's children by name, whose params/buffers are its own tensors and whose aux "
    "holds its plain attributes (see hax.organized_apply); or register one for every "
    "model: hax.interop.register_apply(cls, apply) / register_converter(cls, fn)."
)

# A HAX key wins over a torch attribute of the same name.
_RESERVED_AUX = frozenset({"frozen", "compute_dtype", "order", "non_persistent", TIED})


class ConversionError(ValueError):
    """`convert` could not convert a torch model; the message lists every problem.

    `unknown` lists `(path, torch class)` for every module with no converter and no
    apply; `failed` lists `(path, message)` for every module whose converter raised
    (e.g. an argument HAX does not support). All are found in one pass over the model.
    """

    def __init__(
        self, message: str, unknown: list[tuple[str, type]], failed: list[tuple[str, str]]
    ) -> None:
        self.unknown: list[tuple[str, type]] = list(unknown)
        self.failed: list[tuple[str, str]] = list(failed)
        super().__init__(message)


def builtin_converters() -> dict[type, Converter]:
    """The converter of every torch class that a declared layer names (`hax.nn.layer`)."""
    return {
        cls: record.converter
        for record in registered_layers().values()
        if record.converter is not None
        for cls in record.torch_classes()
    }


def _aux_value(value: Any) -> Any:
    """`value` as an aux value (lists and `torch.Size` become tuples), or `_SKIP`."""
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if isinstance(value, tuple | list):
        items = [_aux_value(v) for v in value]
        return _SKIP if any(v is _SKIP for v in items) else tuple(items)
    return _SKIP


_SKIP = object()


def torch_aux(module: Any) -> dict[str, Any]:
    """A torch module's plain attributes (ints, floats, bools, strs, None, and tuples
    or lists of them): what its forward reads besides tensors and children."""
    out = {}
    for name, value in vars(module).items():
        if name.startswith("_") or name == "training" or name in _RESERVED_AUX:
            continue
        converted = _aux_value(value)
        if converted is not _SKIP:
            out[name] = converted
    return out


class _Builder:
    """Walks a torch model, building the HAX tree and noting what it cannot convert."""

    def __init__(self, torch: Any, applies: Mapping[type, ApplyFn]) -> None:
        self.torch = torch
        self.applies = applies
        self.builtin = builtin_entries()
        nn = torch.nn
        # Containers without a forward: their parent's apply runs their children.
        self.containers = (nn.ModuleList, nn.ModuleDict, nn.ParameterList, nn.ParameterDict)
        self.unknown: list[tuple[str, type, type | None]] = []
        self.failed: list[tuple[str, str]] = []
        self.extra_state: dict[str, Any] = {}

    def node(self, module: Any, path: tuple[str, ...]) -> Module:
        cls = type(module)
        if cls in self.containers:
            return self._generic(module, path, Entry(apply=missing_apply))
        entry, base = find(cls, self.applies, self.builtin, self.torch.nn.Module)
        if entry is not None and entry.converter is not None:
            return self._run(entry.converter, module, path)
        if entry is None:
            self.unknown.append((describe_path(path), cls, base))
            entry = Entry(apply=missing_apply)  # keep walking: report every class at once
        return self._generic(module, path, entry)

    def _run(self, converter: Converter, module: Any, path: tuple[str, ...]) -> Module:
        def convert_child(name: str, child: Any) -> Module:
            return self.node(child, (*path, *as_path(name)))

        where = f"{describe_path(path)} ({class_path(type(module))})"
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

    def _generic(self, module: Any, path: tuple[str, ...], entry: Entry) -> Module:
        """Children as submodules, direct tensors as params/buffers (placeholders here;
        `convert` loads the values), plain attributes as aux."""
        assert entry.apply is not None
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
        aux = torch_aux(module)
        if entry.aux is not None:
            try:
                aux.update(entry.aux(module))
            except Exception as err:  # e.g. a config option the apply does not run
                where = f"{describe_path(path)} ({class_path(type(module))})"
                self.failed.append((where, f"{type(err).__name__}: {err}"))
        if isinstance(module, self.torch.nn.ModuleDict):
            aux["order"] = tuple(name for name, _ in module.named_children())
        # Non-persistent buffers are not in the state_dict, but the forward uses them.
        kept_out = sorted(n for n in module._non_persistent_buffers_set if n in buffers)
        for name in kept_out:
            self.extra_state[".".join((*path, name))] = module._buffers[name]
        if kept_out:
            aux[NON_PERSISTENT] = tuple(kept_out)
        if entry.rng:
            buffers["rng"] = next_rng_key()
        tree: StructureTree = {
            "params": params,
            "buffers": buffers,
            "aux": aux,
            "apply": entry.apply,
            "submodules": {name: child for name, (child, _) in children.items()},
        }
        configs = [config for _, config in children.values()]
        if entry.rng:  # its randomness is drawn in train mode, as a Dropout's
            configs.append({"train_mode": True})
        return tree, merge_configs(*configs)

    def error(self) -> ConversionError | None:
        """One error for every failed and unknown module, or None if there are none."""
        lines = []
        if self.failed:
            lines.append(f"convert: {len(self.failed)} module(s) could not be converted:")
            lines.extend(f"  {where}: {message}" for where, message in self.failed)
        by_class: dict[type, list[str]] = defaultdict(list)
        bases: dict[type, type | None] = {}
        for path, cls, base in self.unknown:
            by_class[cls].append(path)
            bases[cls] = base
        if by_class:
            n = len(by_class)
            lines.append(f"convert: {n} torch class{'es' if n != 1 else ''} with no HAX apply:")
            for cls, paths in by_class.items():
                shown = ", ".join(paths[:3]) + (", ..." if len(paths) > 3 else "")
                line = f"  {class_path(cls)} x{len(paths)} at {shown}"
                base = bases[cls]
                if base is not None:
                    names = ", ".join(overridden(cls, base))
                    line += f" (subclasses {class_path(base)} but redefines {names})"
                lines.append(line)
            example = ", ".join(f"{cls.__name__}: {_snake(cls.__name__)}_apply" for cls in by_class)
            lines.append(_UNKNOWN_FIX.format(example=example))
        if not lines:
            return None
        unknown = [(path, cls) for path, cls, _ in self.unknown]
        return ConversionError("\n".join(lines), unknown, self.failed)


def _snake(name: str) -> str:
    """`"GPT2Block"` -> `"gpt2_block"`: a stub name for an apply."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _ties(torch_module: Any) -> dict[str, str]:
    """Parameters shared by several modules (tied weights): each further name, as a HAX
    entry address, mapped to the first (the one `state_dict` order meets first)."""
    first: dict[int, str] = {}
    ties = {}
    for name, param in torch_module.named_parameters(remove_duplicate=False):
        *path, leaf = name.split(".")
        address = LeafAddress(tuple(path), "params", leaf).entry
        if id(param) in first:
            ties[address] = first[id(param)]
        else:
            first[id(param)] = address
    return ties


def _draw_keys(state: dict[str, Any], rng: RngLike) -> dict[str, Any]:
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
    rng: RngLike = 0,
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
    dtypes must agree). The configs of the layers merge; a model with `Dropout`,
    `BatchNorm` or a class registered with `rng=True` gets `{"train_mode":
    torch_module.training}` (one flag for the whole model, the root's). The result is
    validated.

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
    ties = _ties(torch_module)
    if ties:  # one leaf for a shared torch Parameter, lent to every module that uses it
        tree = tie(tree, ties)
    if "train_mode" in config:
        config = {**config, "train_mode": bool(torch_module.training)}
    return validate(tree, config), config
