"""Running modules: `apply_tree`, and binding a tree to a pure `(state, *args)` function."""

from typing import Any, cast

from ._debug import checked_apply, is_enabled as debug_on
from ._leaves import LeafAddress, claim, node_entries
from ._static import StaticKey, static_key
from ._tree import fill_tree, is_structure_tree, named_nodes, structure_tree_map
from ._types import KIND_SET, GlobalConfig, Module, StructureTree


def apply_tree(
    tree: StructureTree, global_config: GlobalConfig, /, *args: Any, **kwargs: Any
) -> tuple[StructureTree, Any]:
    """Run a tree: `tree["apply"](tree, global_config, *args, **kwargs) -> (new_tree, out)`.

    In debug mode (`hax.debug()`), the call is checked; see `hax.debug`.
    """
    if debug_on():
        return checked_apply(tree, global_config, args, kwargs)
    try:
        apply = tree["apply"]
    except (KeyError, TypeError, IndexError):
        raise TypeError(not_a_tree("apply_tree", tree, global_config)) from None
    try:
        return apply(tree, global_config, *args, **kwargs)
    except Exception as err:  # free unless raised: say how to find the node
        if not any(_NOTE_MARK in note for note in getattr(err, "__notes__", ())):
            err.add_note(_NOTE)
        raise


_NOTE_MARK = "hax.debug()"
_NOTE = (
    "(hax) To see which node raised this, run the call again inside `with hax.debug():` "
    "(or with HAX_DEBUG=1): debug mode names the innermost node's path."
)


def not_a_tree(who: str, tree: Any, config: Any = None) -> str:
    """Why `tree` is not a structure tree, for `who`'s error (with a hint when the tree
    and the config look swapped)."""
    found = f"a {type(tree).__name__}"
    if isinstance(tree, dict):
        found += f" with keys {sorted(map(str, tree))[:6]}"
    hint = ""
    if isinstance(config, dict) and "apply" in config:
        hint = "; the tree and the config look swapped: the order is (tree, config)"
    elif isinstance(tree, dict) and "apply" not in tree:
        hint = " (a global config? the order is (tree, config))" if tree else ""
    return (
        f"{who}: expected a structure tree (a dict with params, buffers, aux, apply and "
        f"submodules) as the first argument, found {found}{hint}"
    )


def as_module(value: Any, *, partial: bool = False) -> Module | None:
    """`value` as a module `(tree, config)` if it is one or a bare tree (config `{}`),
    else None. Every HAX function that takes "a module or a tree" decides with this.

    A tree is a dict of node kinds with an `apply`; with `partial`, a part made by
    `split_tree`/`filter_keys` (no `apply`) is one too. Missing kinds are filled in.
    """
    config: Any = {}
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict):
        value, config = value
    if not isinstance(value, dict):
        return None
    kinds_only = bool(value) and value.keys() <= KIND_SET
    if "apply" not in value and not (partial and kinds_only):
        return None
    # A node with keys that are not kinds is kept as it is, for `validate` to report.
    tree = fill_tree(value) if kinds_only and not is_structure_tree(value) else value
    return cast(StructureTree, tree), config


def _state_slots(tree: StructureTree) -> list[tuple[LeafAddress, str]]:
    """`(address, state key)` for every params/buffers entry of `tree`."""
    slots = []
    seen: set[str] = set()
    for path, node in named_nodes(tree):
        for address, _ in node_entries(path, node):
            claim(address.entry, seen, "bind_module")
            slots.append((address, address.entry))
    return slots


def tree_state(tree: StructureTree) -> dict[str, Any]:
    """The params and buffers of `tree` as one flat dict keyed by entry address, e.g.
    `{"0/params/weight": ..., "1/buffers/rng": ...}`: a pytree of arrays."""
    return {
        address.entry: value
        for path, node in named_nodes(tree)
        for address, value in node_entries(path, node)
    }


class BoundApply:
    """A tree's apply with its static parts (`aux`, `apply`, structure) and global
    config bound in: `apply(state, *args, **kwargs) -> (new_state, out)`.

    `state` is the flat dict of params and buffers keyed by leaf name
    (`"encoder/0/params/weight"`), so it is a pytree of arrays: pass this object
    straight to `jax.jit`, `jax.grad` or `jax.vmap`. Two bound applies with equal
    skeletons and configs compare equal, so one used as a static argument does not
    retrace when rebuilt.
    """

    __slots__ = ("__weakref__", "_debug", "_key", "_slots", "global_config", "skeleton")

    def __init__(
        self,
        skeleton: StructureTree,
        global_config: GlobalConfig,
        slots: list[tuple[LeafAddress, str]],
    ) -> None:
        self.skeleton: StructureTree = skeleton
        self.global_config: GlobalConfig = global_config
        self._slots = slots
        self._debug = debug_on()
        self._key: Any = None

    def tree(self, state: dict[str, Any]) -> StructureTree:
        """The structure tree holding `state`'s arrays."""
        missing = [key for _, key in self._slots if key not in state]
        extra = sorted(set(state) - {key for _, key in self._slots})
        if missing or extra:
            raise ValueError(
                f"the state does not match the bound module: missing {missing}, unexpected "
                f"{extra}. Pass the state that bind_module returned (or an update of it)."
            )
        by_node: dict[tuple[str, ...], dict[str, dict[str, Any]]] = {}
        for address, key in self._slots:
            by_node.setdefault(address.path, {"params": {}, "buffers": {}})[address.kind][
                address.name
            ] = state[key]

        def fill(node: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
            arrays = by_node.get(path, {"params": {}, "buffers": {}})
            return {**node, "params": arrays["params"], "buffers": arrays["buffers"]}

        return structure_tree_map(fill, self.skeleton)

    def __call__(
        self, state: dict[str, Any], /, *args: Any, **kwargs: Any
    ) -> tuple[dict[str, Any], Any]:
        new_tree, out = apply_tree(self.tree(state), self.global_config, *args, **kwargs)
        return tree_state(new_tree), out

    def bind_global_config(self, global_config: GlobalConfig) -> "BoundApply":
        """The same bound apply with another global config, e.g. `{"train_mode": False}`."""
        return BoundApply(self.skeleton, global_config, self._slots)

    def _static(self) -> Any:
        if self._key is None:
            # The debug flag at bind time is part of the identity: jax caches traces by
            # the function's equality, and a trace made with checks off must not be
            # reused by an apply bound inside `hax.debug()`.
            values: list[Any] = [static_key(self.global_config), self._debug]
            for _, node in named_nodes(self.skeleton):  # iterative: any depth
                names = sorted(node["submodules"])
                aux = sorted(node["aux"].items())
                values += [node["apply"], len(names), *names, len(aux)]
                values += [item for pair in aux for item in pair]
            values += [key for _, key in self._slots]
            self._key = StaticKey(values)
        return self._key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BoundApply) and self._static() == other._static()

    def __hash__(self) -> int:
        return hash(self._static())

    def __repr__(self) -> str:
        return f"BoundApply(apply={self.skeleton['apply']!r}, global_config={self.global_config!r})"


def bind_module(
    tree: StructureTree, global_config: GlobalConfig
) -> tuple[dict[str, Any], BoundApply]:
    """Split a module into its state and a pure apply function.

    **Returns:** `(state, apply)`: `state` is a flat dict of every param and buffer
    keyed by leaf name (`"0/params/weight"`), and `apply(state, *args, **kwargs) ->
    (new_state, out)` is a pure function of arrays.

    **Example:**
    ```python
    state, apply = hax.bind_module(*hax.nn.Linear(4, 2, rng=0))
    state, y = jax.jit(apply)(state, x)
    ```
    """
    if not is_structure_tree(tree):
        raise TypeError(not_a_tree("bind_module", tree, global_config))
    if not isinstance(global_config, dict):
        raise TypeError(
            f"bind_module: expected the global config (a dict such as {{'train_mode': True}}) "
            f"as the second argument, found a {type(global_config).__name__}"
        )
    skeleton = structure_tree_map(lambda n, path: {**n, "params": {}, "buffers": {}}, tree)
    return tree_state(tree), BoundApply(skeleton, global_config, _state_slots(tree))


def unbind_module(state: dict[str, Any], apply: BoundApply) -> tuple[StructureTree, GlobalConfig]:
    """The exact inverse of `bind_module`: `(tree, global_config)`."""
    if not isinstance(apply, BoundApply):
        raise TypeError(
            "unbind_module: expected the apply that bind_module returned as the second "
            f"argument, found a {type(apply).__name__}; the order is unbind_module(state, apply)"
        )
    if not isinstance(state, dict):
        raise TypeError(
            f"unbind_module: expected the state (a dict of arrays) as the first argument, "
            f"found a {type(state).__name__}"
        )
    return apply.tree(state), apply.global_config
