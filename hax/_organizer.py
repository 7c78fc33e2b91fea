"""`StateOrganizer`: build and run structure trees the way PyTorch modules are written."""

import functools
import inspect
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeAlias, TypeVar, overload

import jax
import numpy as np
from typing_extensions import TypeVar as DefaultTypeVar

from ._config import merge_into
from ._module import apply_tree, as_module
from ._path import describe_path
from ._static import ARRAY_TYPES
from ._tree import fill_tree
from ._types import ApplyFn, ArrayTree, AuxValue, GlobalConfig, Module, StructureTree
from ._validate import validate
from .schema._spec import reads_config

P = ParamSpec("P")
R = TypeVar("R")
Org = TypeVar("Org", bound="TypedOrganizer")
Out = DefaultTypeVar("Out", default=Any)

_NAME_AND_DOCS = ("__module__", "__name__", "__qualname__", "__doc__")

_UNKNOWN_KIND = (
    "StateOrganizer: cannot register {name!r}: a {kind} is neither a module `(tree, config)` "
    "nor an array. Use `org.register_aux({name!r}, value)` for a static value (int, float, "
    "str, bool, None, tuple), `org.register_buffer({name!r}, array)` for non-trained state, "
    "or `org.register_param({name!r}, pytree)` for a pytree of trainable arrays."
)


class Child(Generic[Out]):
    """`org.child`: calling it runs the child and stores its new state in the organizer.

    It also reaches the child's own children, as a torch `ModuleList`/`ModuleDict` is
    used: `org.blocks[0](x)`, `for block in org.blocks: x = block(x)`,
    `org.heads["cls"](h)`, `len(org.blocks)`. Each call threads that node's new state
    back into the tree, whatever its depth. Declare a submodule with this type on a
    `TypedOrganizer` subclass: `fc: hax.Child[jax.Array]` says what calling it returns
    (`hax.Child` alone: `Any`)."""

    __slots__ = ("_org", "_path")

    def __init__(self, org: "TypedOrganizer", path: tuple[str, ...]) -> None:
        self._org = org
        self._path = path

    def __call__(self, *args: Any, **kwargs: Any) -> Out:
        org = self._org
        new_child, out = apply_tree(self.tree, org.global_config, *args, **kwargs)
        org._replace(self._path, new_child)
        declared: Out = out  # what the declaration says the child returns
        return declared

    @property
    def tree(self) -> StructureTree:
        """The child's current tree."""
        node = self._org._org_submodules[self._path[0]]
        for name in self._path[1:]:
            node = node["submodules"][name]
        return node

    def _names(self) -> list[str]:
        """The children in the order a torch container would give them: `aux["order"]`
        when the node keeps one, numeric order for numbered children, else dict order."""
        tree = self.tree
        order = tree["aux"].get("order")
        if isinstance(order, tuple):
            return [str(name) for name in order]
        names = list(tree["submodules"])
        if names and all(n.isdecimal() and n.isascii() for n in names):
            return sorted(names, key=int)
        return names

    def __getitem__(self, key: int | str) -> "Child":
        names = self._names()
        if isinstance(key, int) and not isinstance(key, bool):
            try:
                name = names[key]
            except IndexError:
                where = describe_path(self._path)
                raise IndexError(
                    f"{where} has {len(names)} children; index {key} is out of range"
                ) from None
        elif isinstance(key, str) and key in self.tree["submodules"]:
            name = key
        else:
            raise KeyError(f"{describe_path(self._path)} has no child {key!r}; it has {names}")
        return Child(self._org, (*self._path, name))

    def __iter__(self) -> Iterator["Child"]:
        return (Child(self._org, (*self._path, name)) for name in self._names())

    def __len__(self) -> int:
        return len(self.tree["submodules"])

    def keys(self) -> list[str]:
        """The children's names, in order (as `ModuleDict.keys`)."""
        return self._names()

    def values(self) -> list["Child"]:
        """The children, in order (as `ModuleDict.values`)."""
        return list(self)

    def items(self) -> list[tuple[str, "Child"]]:
        """`(name, child)` in order (as `ModuleDict.items`)."""
        return [(name, self[name]) for name in self._names()]


class TypedOrganizer:
    """A `StateOrganizer` whose attributes are the ones a subclass declares, so that a
    type checker reports a misspelt or misused child.

    Declare what an apply reads, and annotate its `org` with the subclass:
    `organized_apply` then runs it with an instance of that class.
    ```python
    class MLPParts(hax.TypedOrganizer):
        fc1: hax.Child  # a submodule
        fc2: hax.Child
        scale: jax.Array  # a param or buffer
        eps: float  # an aux value

    @hax.organized_apply
    def mlp_apply(org: MLPParts, x: jax.Array) -> jax.Array:
        return org.fc2(jax.nn.relu(org.fc1(x))) * org.scale
    ```
    At runtime it behaves exactly as `StateOrganizer` (this class with every
    registered name typed `Any`): build with a `StateOrganizer`, as always.
    """

    _org_params: dict[str, Any]
    _org_buffers: dict[str, Any]
    _org_aux: dict[str, Any]
    _org_submodules: dict[str, StructureTree]
    _org_config: GlobalConfig
    _org_config_sources: dict[str, str]
    _org_apply: ApplyFn | None
    _org_building: bool

    def __init__(
        self, tree: StructureTree | None = None, global_config: GlobalConfig | None = None
    ) -> None:
        building = tree is None
        node = fill_tree({}) if tree is None else tree
        set_ = functools.partial(object.__setattr__, self)
        set_("_org_building", building)
        set_("_org_params", dict(node["params"]))
        set_("_org_buffers", dict(node["buffers"]))
        set_("_org_aux", dict(node["aux"]))
        set_("_org_submodules", dict(node["submodules"]))
        set_("_org_apply", None if building else node["apply"])
        set_("_org_config", {} if global_config is None else dict(global_config))
        set_("_org_config_sources", dict.fromkeys(global_config or {}, "the organizer's config"))

    @property
    def global_config(self) -> GlobalConfig:
        """The global config: the one being run with, or the merged configs so far."""
        return dict(self._org_config)

    def _check_new(self, name: str) -> None:
        if not self._org_building:
            raise AttributeError(
                f"StateOrganizer: cannot add {name!r} inside an apply: apply never changes "
                "a tree's structure. Register it in the constructor, or use hax.surgery."
            )
        if not isinstance(name, str) or not name or "/" in name or name.startswith("_org_"):
            raise ValueError(
                f"StateOrganizer: invalid name {name!r}: use a non-empty str without '/' "
                "that does not start with '_org_'"
            )
        if hasattr(TypedOrganizer, name):
            raise AttributeError(
                f"StateOrganizer: {name!r} is a StateOrganizer method; choose another name"
            )
        for kind, table in self._tables():
            if name in table:
                raise AttributeError(
                    f"StateOrganizer: {name!r} is already registered as a {kind}; "
                    "each name can be assigned once"
                )

    def _tables(self) -> list[tuple[str, dict[str, Any]]]:
        return [
            ("param", self._org_params),
            ("buffer", self._org_buffers),
            ("aux value", self._org_aux),
            ("submodule", self._org_submodules),
        ]

    def __setattr__(self, name: str, value: Any) -> None:
        module = as_module(value)
        if not self._org_building and module is None:
            for table in (self._org_params, self._org_buffers):
                if name in table:
                    table[name] = value
                    return
        self._check_new(name)
        if module is not None:
            # A conflict is reported here, where the module is assigned.
            merge_into(self._org_config, self._org_config_sources, module[1], f"submodule {name!r}")
            self._org_submodules[name] = module[0]
        elif isinstance(value, ARRAY_TYPES):
            self._org_params[name] = jax.numpy.asarray(value)
        else:
            raise TypeError(_UNKNOWN_KIND.format(name=name, kind=type(value).__name__))

    def _lookup(self, name: str) -> Any:
        """`org.name`: a child, param, buffer or aux value."""
        if name.startswith("_org_"):
            raise AttributeError(name)
        if name in self._org_submodules:
            return Child(self, (name,))
        for table in (self._org_params, self._org_buffers, self._org_aux):
            if name in table:
                return table[name]
        known = sorted(n for _, table in self._tables() for n in table)
        raise AttributeError(f"StateOrganizer has no {name!r}; registered names: {known}")

    if not TYPE_CHECKING:  # type checkers see only the attributes a subclass declares
        __getattr__ = _lookup

    def _replace(self, path: tuple[str, ...], new: StructureTree) -> None:
        """Put `new` at `path` below this node, copying only the nodes along the way."""
        for depth in range(len(path) - 1, 0, -1):
            parent = self._org_submodules[path[0]]
            for name in path[1:depth]:
                parent = parent["submodules"][name]
            new = {**parent, "submodules": {**parent["submodules"], path[depth]: new}}
        self._org_submodules[path[0]] = new

    def register_param(self, name: str, value: ArrayTree) -> None:
        """Register a trainable param: an array or a pytree of arrays."""
        self._check_new(name)
        self._org_params[name] = jax.tree_util.tree_map(jax.numpy.asarray, value)

    def register_buffer(self, name: str, value: ArrayTree) -> None:
        """Register non-trained state (running statistics, an RNG key, a counter)."""
        self._check_new(name)
        self._org_buffers[name] = jax.tree_util.tree_map(
            lambda x: jax.numpy.asarray(x) if isinstance(x, np.ndarray | np.generic) else x, value
        )

    def register_aux(self, name: str, value: AuxValue) -> None:
        """Register a static config value of this node (int, float, str, bool, None, tuple)."""
        self._check_new(name)
        self._org_aux[name] = value

    def get_state(self) -> StructureTree:
        """The node as a structure tree, with every update made so far."""
        if self._org_apply is None:
            raise TypeError(
                "StateOrganizer.get_state is for apply; in a constructor use create_module(apply)"
            )
        return self._node(self._org_apply)

    def _node(self, apply: ApplyFn) -> StructureTree:
        return {
            "params": dict(self._org_params),
            "buffers": dict(self._org_buffers),
            "aux": dict(self._org_aux),
            "apply": apply,
            "submodules": dict(self._org_submodules),
        }

    def create_module(self, apply: ApplyFn, global_config: GlobalConfig | None = None) -> Module:
        """Finish building: `(tree, config)`, the config merged from every submodule's
        config and `global_config`. `apply` should be defined at module level (a new
        closure per build is a new static value under `jit` and forces a retrace).
        """
        if not self._org_building:
            raise TypeError(
                "StateOrganizer.create_module is for constructors; in apply use get_state()"
            )
        if not callable(apply):
            raise TypeError(f"create_module: apply must be callable, found {type(apply).__name__}")
        config = dict(self._org_config)
        merge_into(config, dict(self._org_config_sources), global_config or {}, "global_config")
        return validate(self._node(apply), config), config


class StateOrganizer(TypedOrganizer):
    """Build a structure tree by attribute assignment, or run one by attribute access.

    **Building** (`StateOrganizer()`): `org.fc = Linear(...)` registers a submodule,
    `org.scale = jnp.ones(3)` a param; `register_buffer`, `register_aux` and
    `register_param` cover the rest; `create_module(apply)` returns `(tree, config)`.

    **Running** (`StateOrganizer(tree, config)`, inside an apply): `org.fc(x)` runs
    the child and threads its new state back, `org.scale` reads a param, assigning
    an existing param or buffer updates it, and `get_state()` returns the new tree.

    Every registered name reads as `Any` to a type checker; declare them on a
    `TypedOrganizer` subclass to have misspellings reported.

    **Example:**
    ```python
    @hax.organized_apply
    def mlp_apply(org, x):
        return org.fc2(jax.nn.relu(org.fc1(x)))

    @hax.organized_init(mlp_apply)
    def MLP(org, din, dhidden, dout):
        org.fc1 = hax.nn.Linear(din, dhidden)
        org.fc2 = hax.nn.Linear(dhidden, dout)
    ```
    """

    if TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any: ...


def _organizer_class(fn: Callable[..., Any]) -> type[TypedOrganizer]:
    """The class `fn` annotates its first argument with when it is a `TypedOrganizer`
    subclass, else `StateOrganizer`."""
    first = next(iter(inspect.signature(fn).parameters), None)
    try:
        hint = typing.get_type_hints(fn).get(first) if first is not None else None
    except Exception:  # an annotation that does not resolve here: not an organizer class
        hint = None
    if isinstance(hint, type) and issubclass(hint, TypedOrganizer) and hint is not TypedOrganizer:
        return hint
    return StateOrganizer


_Applied: TypeAlias = Callable[Concatenate[StructureTree, GlobalConfig, P], tuple[StructureTree, R]]


@overload
def organized_apply(fn: Callable[Concatenate[Org, P], R], /) -> _Applied[P, R]: ...


@overload
def organized_apply(
    *, config: Mapping[str, Any]
) -> Callable[[Callable[Concatenate[Org, P], R]], _Applied[P, R]]: ...


def organized_apply(
    fn: Callable[Concatenate[Org, P], R] | None = None,
    /,
    *,
    config: Mapping[str, Any] | None = None,
) -> _Applied[P, R] | Callable[[Callable[Concatenate[Org, P], R]], _Applied[P, R]]:
    """Turn `fn(org, *args, **kwargs) -> out` into `apply(tree, config, *args, **kwargs)
    -> (new_tree, out)`, threading the state of every child `org` ran. `org` is an
    instance of the class `fn` annotates it with when that is a `TypedOrganizer`
    subclass, else a `StateOrganizer`.

    `@hax.organized_apply(config={"temperature": float})` also declares the global-config
    keys `fn` reads (`hax.reads_config`), so `hax.validate` knows them.
    """
    if fn is None:
        keys = dict(config or {})
        return lambda f: reads_config(_organized(f), keys)
    return _organized(fn)


def _organized(fn: Callable[Concatenate[Org, P], R]) -> _Applied[P, R]:
    cls: type[Any] | None = None

    def apply(
        tree: StructureTree, global_config: GlobalConfig, /, *args: P.args, **kwargs: P.kwargs
    ) -> tuple[StructureTree, R]:
        nonlocal cls
        if cls is None:  # resolved at the first call: the class may be defined after fn
            cls = _organizer_class(fn)
        org: Any = cls(tree, global_config)  # an instance of the class fn annotates
        out = fn(org, *args, **kwargs)
        return org.get_state(), out

    # Name and docs of `fn`, but not its annotations or `__wrapped__`: the apply's own
    # signature is `(tree, global_config, *args)`, which is what debug mode checks.
    functools.update_wrapper(apply, fn, assigned=_NAME_AND_DOCS, updated=())
    del apply.__wrapped__  # type: ignore[attr-defined]  # set by update_wrapper
    return apply


def organized_init(
    apply: ApplyFn, global_config: GlobalConfig | None = None
) -> Callable[[Callable[Concatenate[StateOrganizer, P], None]], Callable[P, Module]]:
    """Turn `init(org, *args, **kwargs)` into a constructor `(*args, **kwargs) -> (tree,
    config)` whose tree runs with `apply`. See `StateOrganizer` for an example.

    The constructor has `init`'s name and docs, and its signature without `org`
    (what `inspect.signature` and `help` show), returning a `Module`.
    """

    def decorate(init: Callable[Concatenate[StateOrganizer, P], None]) -> Callable[P, Module]:
        def construct(*args: P.args, **kwargs: P.kwargs) -> Module:
            org = StateOrganizer()
            init(org, *args, **kwargs)
            return org.create_module(apply, global_config)

        signature = inspect.signature(init)
        org, *params = signature.parameters
        functools.update_wrapper(construct, init, assigned=_NAME_AND_DOCS, updated=())
        del construct.__wrapped__  # type: ignore[attr-defined]  # set by update_wrapper
        construct.__signature__ = signature.replace(  # type: ignore[attr-defined]  # read by inspect
            parameters=[signature.parameters[p] for p in params], return_annotation=Module
        )
        annotations = {k: v for k, v in init.__annotations__.items() if k not in (org, "return")}
        construct.__annotations__ = {**annotations, "return": Module}
        return construct

    return decorate
