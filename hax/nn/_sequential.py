"""`Sequential`: run submodules `"0"`, `"1"`, ... one after another."""

from typing import Any

from .._config import merge_configs
from .._module import apply_tree, as_module
from .._tree import numbered_children
from .._types import GlobalConfig, Module, StructureTree
from .._validate import validate
from ._layer import ConvertChild, layer


def sequential_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Any
) -> tuple[StructureTree, Any]:
    """Feed `x` through the submodules in numeric order (`"0"`, `"1"`, ..., `"10"`);
    each one's output is the next's input."""
    children = dict(tree["submodules"])
    for name in numbered_children(tree, "Sequential"):
        children[name], x = apply_tree(children[name], global_config, x)
    return {**tree, "submodules": children}, x


def Sequential(*modules: Module | StructureTree) -> Module:
    """A chain of modules, as `torch.nn.Sequential`; children are named `"0"`, `"1"`, ...

    Accepts modules `(tree, config)` or bare trees; the configs are merged.
    """
    trees: dict[str, StructureTree] = {}
    configs: list[GlobalConfig] = []
    for i, module in enumerate(modules):
        pair = as_module(module)
        if pair is None:
            raise TypeError(
                f"Sequential: argument {i} is a {type(module).__name__}; expected a module "
                "`(tree, config)` such as `hax.nn.Linear(4, 4)`, or a structure tree"
            )
        trees[str(i)], config = pair
        configs.append(config)
    config = merge_configs(*configs, names=[f"submodule {name!r}" for name in trees])
    return validate(_SEQUENTIAL.node({}, {}, trees), config), config


def named_sequential_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Any
) -> tuple[StructureTree, Any]:
    """Feed `x` through the submodules in the order `aux["order"]` names them.

    `hax.interop.convert` gives this apply to a `torch.nn.Sequential` built from an
    `OrderedDict` (children `"conv"`, `"relu"`, ...), whose names must stay as they are
    to match its `state_dict`. The order is kept in `aux` because JAX sorts dict keys
    (`hax.nn.Sequential` numbers its children instead).
    """
    aux: dict[str, Any] = tree["aux"]
    order = aux["order"]
    children = dict(tree["submodules"])
    if sorted(order) != sorted(children):
        raise ValueError(
            f"a sequential node runs its children in the order aux['order'] = {order}, but "
            f"its submodules are {sorted(children)}; after adding or removing a child, set "
            "aux['order'] to match"
        )
    for name in order:
        children[name], x = apply_tree(children[name], global_config, x)
    return {**tree, "submodules": children}, x


def _convert(m: Any, convert_child: ConvertChild) -> Module:
    """The children by their torch names (so the `state_dict` maps on): numbered in
    order, a `Sequential`; named (from an `OrderedDict`), a node that keeps the order in
    `aux["order"]`. `convert` validates the whole tree afterwards."""
    names = [name for name, _ in m.named_children()]
    children = {name: convert_child(name, child) for name, child in m.named_children()}
    trees = {name: tree for name, (tree, _) in children.items()}
    config = merge_configs(*(config for _, config in children.values()))
    if all(n.isdecimal() and n.isascii() for n in names) and names == sorted(names, key=int):
        return _SEQUENTIAL.node({}, {}, trees), config
    return _NAMED_SEQUENTIAL.node({}, {}, trees, order=tuple(names)), config


_SEQUENTIAL = layer("Sequential", sequential_apply, torch="torch.nn.Sequential", converter=_convert)
_NAMED_SEQUENTIAL = layer("NamedSequential", named_sequential_apply, aux={"order": tuple})
