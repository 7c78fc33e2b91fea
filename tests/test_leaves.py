"""Leaf addresses: one naming rule for every leaf, its string form and back."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import hax
from hax import LeafAddress, nn
from hax._leaves import name_problems, state_leaves


def test_string_forms():
    a = LeafAddress(("encoder", "0"), "params", "weight")
    assert str(a) == a.entry == "encoder/0/params/weight"
    assert a.dotted == "encoder.0.weight"
    b = a.child(1)
    assert str(b) == "encoder/0/params/weight/1" and b.entry == a.entry and b.local == "weight/1"
    root = LeafAddress((), "buffers", "rng")
    assert str(root) == "buffers/rng" and root.dotted == "rng"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("0/params/weight", LeafAddress(("0",), "params", "weight")),
        ("params/w", LeafAddress((), "params", "w")),
        ("params/buffers/x", LeafAddress(("params",), "buffers", "x")),  # a node named params
        ("a/params/params/w", LeafAddress(("a", "params"), "params", "w")),
    ],
)
def test_parse_entry(key, expected):
    assert LeafAddress.parse_entry(key) == expected
    assert LeafAddress.parse_entry(key).entry == key


@pytest.mark.parametrize(
    "key",
    [
        "weight",
        "0/weight",
        "0//params/w",
        "",
        pytest.param(3, marks=pytest.mark.wrong_types),
        "a/params/",
    ],
)
def test_parse_entry_refuses_what_is_not_an_entry(key):
    with pytest.raises(ValueError, match="is not the name of a params or buffers entry"):
        LeafAddress.parse_entry(key)


def _tree_with_node_named_params():
    inner = hax.fill_tree({"params": {"w": jnp.ones(2)}, "buffers": {"b": jnp.zeros(1)}})
    return hax.fill_tree(
        {
            "params": {"q": [jnp.ones(1), {"r": jnp.ones(3)}]},
            "submodules": {"params": inner, "x": {"buffers": {"params": jnp.ones(1)}}},
        }
    )


def test_every_name_parses_back_to_its_address():
    tree = _tree_with_node_named_params()
    names = [name for name, _ in hax.named_leaves(tree)]
    assert names == [
        "params/q/0",
        "params/q/1/r",
        "params/params/w",
        "params/buffers/b",
        "x/buffers/params",
    ]
    for name in names:
        address = LeafAddress.parse(name, tree)
        assert str(address) == name
    assert LeafAddress.parse("params/params/w", tree) == LeafAddress(("params",), "params", "w")
    assert LeafAddress.parse("params/q/1/r", tree) == LeafAddress((), "params", "q", ("1", "r"))
    with pytest.raises(KeyError, match="no leaf named 'params/q/2'"):
        LeafAddress.parse("params/q/2", tree)


_names = st.sampled_from(["params", "buffers", "a", "0", "w"])


@st.composite
def _nodes(draw, depth=0):
    entries = draw(st.dictionaries(_names, st.integers(0, 2), max_size=3))
    node = {"params": {}, "buffers": {}}
    for name, shape in entries.items():
        kind = draw(st.sampled_from(["params", "buffers"]))
        value = jnp.ones(shape)
        if draw(st.booleans()):
            value = [value, {"k": value}]
        node[kind][name] = value
    children = {}
    if depth < 2:
        for name in draw(st.lists(_names, max_size=2, unique=True)):
            children[name] = draw(_nodes(depth + 1))
    return {**node, "submodules": children}  # filled in the test: HAX calls stay out of
    # strategies (under HAX_TYPECHECK, beartype's sampling uses the `random` module)


@settings(max_examples=80, deadline=None)
@given(_nodes())
def test_random_trees_names_are_unique_or_reported_and_parse_back(raw):
    tree = hax.fill_tree(raw)
    names = [name for name, _ in hax.named_leaves(tree)]
    problems = [p for _, node in hax.named_nodes(tree) for p in name_problems(node)]
    if len(set(names)) == len(names):
        for name in names:
            assert str(LeafAddress.parse(name, tree)) == name
        hax.validate(tree)
    else:  # two leaves share a name: a node called params/buffers shadows its parent
        assert any("given both by this node" in found for _, found, _ in problems)
        with pytest.raises(hax.ValidationError, match="given both by this node"):
            hax.validate(tree)


def test_name_problems():
    one = jnp.ones(1)
    node = {
        **hax.empty_tree(),
        "params": {"": one, "a/b": one, "w": {1: one, "1": one}},
        "buffers": {"v": {"x/y": one}},
    }
    keys = [key for key, _, _ in name_problems(node)]
    assert keys == ["params.''", "params.'a/b'", "params.w['1']", "buffers.v['x/y']"]
    assert name_problems(nn.Linear(2, 3, rng=0)[0]) == []


def test_bound_state_and_named_leaves_agree():
    tree, config = nn.Sequential(nn.Linear(2, 3, rng=0), nn.Dropout(0.1, rng=1))
    state, _ = hax.bind_module(tree, config)
    from_state = sorted(str(a) for a, _ in state_leaves(state, "state"))
    assert from_state == sorted(name for name, _ in hax.named_leaves(tree))
    mask = hax.surgery.trainable_mask(tree, flat=True)
    assert set(mask) == {k for k in state if LeafAddress.parse_entry(k).kind == "params"}
    torch_keys = {a.dotted for a, _ in state_leaves(state, "state")}
    assert torch_keys == {"0.weight", "0.bias", "1.rng"}
    np.testing.assert_array_equal(
        state["0/params/weight"], tree["submodules"]["0"]["params"]["weight"]
    )


@pytest.mark.parametrize(
    "params, key",
    [
        ({"w": [jnp.ones(1)], "w/0": jnp.ones(1)}, "params.'w/0'"),  # both would be "params/w/0"
        ({"": jnp.ones(1)}, "params.''"),
        ({"w": {"a/b": jnp.ones(1)}}, "params.w['a/b']"),
        ({"w": {1: jnp.ones(1), "1": jnp.ones(1)}}, "params.w['1']"),
    ],
)
def test_validate_refuses_names_that_do_not_round_trip(params, key):
    tree = {**hax.empty_tree(), "params": params}
    with pytest.raises(hax.ValidationError) as info:
        hax.validate(tree)
    assert any(p.key == key for p in info.value.errors)
    tree["submodules"] = {"child": tree | {"submodules": {}}}  # found at any depth, by path
    with pytest.raises(hax.ValidationError, match=f"child: {key}".replace("[", r"\[")):
        hax.validate(tree)
