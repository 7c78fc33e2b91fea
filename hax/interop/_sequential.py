"""`named_sequential_apply`: a `torch.nn.Sequential` whose children have names, not numbers."""

from typing import Any

from .._module import apply_tree
from .._types import GlobalConfig, StructureTree
from ..schema import layer_spec, register_spec


def named_sequential_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Any
) -> tuple[StructureTree, Any]:
    """Feed `x` through the submodules in the order `aux["order"]` names them.

    `convert` gives this apply to a `torch.nn.Sequential` built from an `OrderedDict`
    (children `"conv"`, `"relu"`, ...), whose names must stay as they are to match its
    `state_dict`. The order is kept in `aux` because JAX sorts dict keys (`hax.nn.Sequential`
    numbers its children instead).
    """
    order = tree["aux"]["order"]
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


register_spec(named_sequential_apply, layer_spec("NamedSequential", aux={"order": tuple}))
