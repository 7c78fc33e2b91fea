"""`chain_apply`: the node that `insert_before`/`insert_after` make around a node."""

from typing import Any

from .._module import apply_tree
from .._tree import numbered_children
from .._types import GlobalConfig, StructureTree
from ..nn._layer import layer


def chain_apply(
    tree: StructureTree, global_config: GlobalConfig, /, *args: Any, **kwargs: Any
) -> tuple[StructureTree, Any]:
    """Run the submodules in order: the first receives every argument, each next one
    the previous output (a `hax.nn.Sequential` whose first child may take several
    arguments and keyword arguments)."""
    children = dict(tree["submodules"])
    if not children:
        if len(args) != 1 or kwargs:
            raise TypeError("an empty chain is the identity: it takes exactly one argument")
        return tree, args[0]
    names = numbered_children(tree, "a chain made by hax.surgery.insert_*")
    children[names[0]], out = apply_tree(children[names[0]], global_config, *args, **kwargs)
    for name in names[1:]:
        children[name], out = apply_tree(children[name], global_config, out)
    return {**tree, "submodules": children}, out


layer("Chain", chain_apply)
