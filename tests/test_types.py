"""HAX's annotations hold at runtime: beartype can check every hint, and each hint
admits what HAX documents and refuses what HAX refuses."""

import importlib
import inspect
import pkgutil
import typing
from collections.abc import Mapping

import beartype
import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest

import hax
from hax import nn


def _functions():
    """Every function and method defined in `hax`, with its qualified name."""
    seen = set()
    for info in pkgutil.walk_packages(hax.__path__, "hax."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            members = [obj] if inspect.isfunction(obj) else []
            if inspect.isclass(obj):
                for attr in vars(obj).values():
                    attr = getattr(attr, "__func__", attr)
                    attr = attr.fget if isinstance(attr, property) else attr
                    if inspect.isfunction(attr):
                        members.append(attr)
            for fn in members:
                if id(fn) not in seen:
                    seen.add(id(fn))
                    yield f"{module.__name__}.{fn.__qualname__}", fn


def test_beartype_can_check_every_hint_in_hax():
    refused = []
    for name, fn in _functions():
        try:
            jaxtyping.jaxtyped(typechecker=beartype.beartype)(fn)
        except beartype.roar.BeartypeException as err:
            refused.append(f"{name}: {str(err).splitlines()[0]}")
    assert not refused, "\n".join(refused)


@beartype.beartype
def takes_tree(tree: hax.StructureTree) -> None:
    pass


@beartype.beartype
def takes_aux(aux: Mapping[str, hax.AuxValue]) -> None:
    pass


@beartype.beartype
def takes_entry(entry: hax.ArrayTree) -> None:
    pass


@beartype.beartype
def takes_apply(apply: hax.ApplyFn) -> None:
    pass


def test_structure_tree_hint_checks_a_node_not_just_a_mapping():
    tree, config = nn.Linear(2, 2, rng=0)
    takes_tree(tree)
    takes_tree(hax.split_tree(tree, ["params"])[0])  # a part of a tree is one too
    for wrong in (config | {"train_mode": True}, {**tree, "apply": 3}, [tree], (tree, config)):
        with pytest.raises(beartype.roar.BeartypeCallHintParamViolation):
            takes_tree(wrong)


def test_aux_value_hint_is_the_schema_rule():
    assert hax.schema.AuxValue is hax.AuxValue
    takes_aux({"a": 1, "b": (1, ("x", None, 2.0)), "c": True})
    for wrong in ([1, 2], np.float32(1.0), {"a": 1}, (1, [2])):
        with pytest.raises(beartype.roar.BeartypeCallHintParamViolation):
            takes_aux({"a": wrong})


def test_array_tree_and_apply_hints():
    takes_entry(jnp.ones(2))
    takes_entry({"w": [np.ones(2), (jnp.ones(1),)]})
    for wrong in (1.0, {"w": 1.0}, "w"):
        with pytest.raises(beartype.roar.BeartypeCallHintParamViolation):
            takes_entry(wrong)
    takes_apply(nn.Linear(2, 2, rng=0)[0]["apply"])
    with pytest.raises(beartype.roar.BeartypeCallHintParamViolation):
        takes_apply(3)


@pytest.mark.parametrize("seed", [0, np.int64(1), np.array(2), np.array([0, 3], np.uint32)])
def test_rng_takes_numpy_seeds(seed):
    tree, _ = nn.Linear(2, 2, rng=seed)
    with hax.rng_context(seed):
        nn.Linear(2, 2)
    assert tree["params"]["weight"].shape == (2, 2)


@hax.organized_apply
def mlp_apply(org, x):
    return org.fc(x)


@hax.organized_init(mlp_apply)
def MLP(org: hax.StateOrganizer, din: int, dout: int = 2, *, bias: bool = True) -> None:
    """An MLP of one layer."""
    org.fc = nn.Linear(din, dout, bias)


def test_organized_init_reports_the_constructor_signature():
    signature = inspect.signature(MLP)
    assert list(signature.parameters) == ["din", "dout", "bias"]
    assert signature.parameters["bias"].kind is inspect.Parameter.KEYWORD_ONLY
    assert signature.return_annotation is hax.Module
    hints = typing.get_type_hints(MLP, include_extras=True)
    assert hints == {"din": int, "dout": int, "bias": bool, "return": hax.Module}
    assert MLP.__name__ == "MLP" and MLP.__doc__ == "An MLP of one layer."
    assert not hasattr(MLP, "__wrapped__")
    with hax.rng_context(0):
        tree, _ = MLP(3, bias=False)
    assert set(tree["submodules"]["fc"]["params"]) == {"weight"}


class Parts(hax.TypedOrganizer):
    fc: hax.Child[jax.Array]
    scale: jax.Array


SEEN: list[type] = []


@hax.organized_apply
def typed_apply(org: Parts, x: jax.Array) -> jax.Array:
    SEEN.append(type(org))
    return org.fc(x) * org.scale


def test_a_typed_organizer_runs_as_the_class_its_apply_declares():
    with hax.rng_context(0):
        org = hax.StateOrganizer()
        org.fc = nn.Linear(3, 2)
        org.scale = jnp.full(2, 2.0)
        tree, config = org.create_module(typed_apply)
    _, y = hax.apply_tree(tree, config, jnp.ones(3))
    assert SEEN == [Parts] and y.shape == (2,)
    _, expected = hax.apply_tree(tree["submodules"]["fc"], config, jnp.ones(3))
    np.testing.assert_allclose(y, 2 * expected)
    with pytest.raises(AttributeError, match="fcc"):
        Parts(tree, config).fcc  # noqa: B018
