"""`Sequential`: run submodules `"0"`, `"1"`, ... one after another."""

from typing import Any

from .._config import merge_configs
from .._module import apply_tree, as_module
from .._tree import numbered_children
from .._types import GlobalConfig, Module, StructureTree
from .._validate import validate
from ..schema import layer_spec, register_spec


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
    root: StructureTree = {
        "params": {},
        "buffers": {},
        "aux": {},
        "apply": sequential_apply,
        "submodules": trees,
    }
    config = merge_configs(*configs, names=[f"submodule {name!r}" for name in trees])
    return validate(root, config), config


register_spec(sequential_apply, layer_spec("Sequential"))
