"""Tests for the structure-tree functions in `hax/_tree.py` and `hax/_path.py`."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_trees_equal
from hypothesis import given, settings, strategies as st

import hax


def apply_a(tree, global_config, x):
    return tree, x


def apply_b(tree, global_config, x):
    return tree, -x


def make_tree():
    """root(params w, aux n) -> enc(params weight/bias, buffers count) -> attn(buffers rng);
    root -> head(params w: nested pytree)."""
    attn = {
        "params": {},
        "buffers": {"rng": jax.random.key(1)},
        "aux": {"heads": 2},
        "apply": apply_b,
        "submodules": {},
    }
    enc = {
        "params": {"weight": jnp.arange(6.0).reshape(2, 3), "bias": jnp.ones(2)},
        "buffers": {"count": jnp.zeros((), jnp.int32)},
        "aux": {"name": "enc", "dims": (2, 3)},
        "apply": apply_a,
        "submodules": {"attn": attn},
    }
    head = {
        "params": {"w": {"a": jnp.ones(3), "b": [jnp.zeros(2), jnp.full(1, 2.0)]}},
        "buffers": {},
        "aux": {"flag": True, "none": None},
        "apply": apply_b,
        "submodules": {},
    }
    return {
        "params": {"w": jnp.full((2,), 3.0)},
        "buffers": {},
        "aux": {"n": 1},
        "apply": apply_a,
        "submodules": {"enc": enc, "head": head},
    }


# ---------------------------------------------------------------- the helper itself


def test_assert_trees_equal_detects_differences():
    t = make_tree()
    assert_trees_equal(t, make_tree())  # rebuilt with equal values: equal
    changes = [
        lambda t: t["params"].__setitem__("w", jnp.full((2,), 4.0)),  # value
        lambda t: t["params"].__setitem__("w", jnp.full((2,), 3, jnp.int32)),  # dtype
        lambda t: t["params"].__setitem__("w", jnp.full((1, 2), 3.0)),  # shape
        lambda t: t["aux"].__setitem__("n", True),  # 1 vs True
        lambda t: t.__setitem__("apply", apply_b),  # another function
        lambda t: t["submodules"]["enc"]["aux"].__setitem__("dims", [2, 3]),  # tuple vs list
        lambda t: t["submodules"]["enc"]["submodules"]["attn"]["buffers"].__setitem__(
            "rng", jax.random.key(2)
        ),  # key data
        lambda t: t["submodules"].pop("head"),  # structure
    ]
    for change in changes:
        other = make_tree()
        change(other)
        with pytest.raises(AssertionError):
            assert_trees_equal(t, other)


# ---------------------------------------------------------------- empty_tree / fill_tree


def test_empty_tree():
    t = hax.empty_tree()
    assert set(t) == {"params", "buffers", "aux", "apply", "submodules"}
    assert t["params"] == t["buffers"] == t["aux"] == t["submodules"] == {}
    assert t["apply"] is hax.missing_apply
    with pytest.raises(TypeError, match="no apply function"):
        hax.apply_tree(t, {}, 1.0)
    assert hax.empty_tree(apply_a)["apply"] is apply_a
    # fresh dicts every time: no shared mutable defaults
    t2 = hax.empty_tree()
    for kind in ("params", "buffers", "aux", "submodules"):
        assert t[kind] is not t2[kind]


def test_fill_tree_adds_missing_keys_recursively():
    raw = {"params": {"w": jnp.ones(2)}, "submodules": {"a": {"submodules": {"b": {}}}}}
    filled = hax.fill_tree(raw)
    assert hax.is_structure_tree(filled)
    for path in ((), ("a",), ("a", "b")):
        node = hax.get_subtree(filled, path)
        assert set(node) == {"params", "buffers", "aux", "apply", "submodules"}
    assert filled["apply"] is hax.missing_apply
    assert filled["params"]["w"] is raw["params"]["w"]
    assert hax.get_subtree(filled, "a/b")["aux"] == {}


def test_fill_tree_keeps_given_values():
    t = make_tree()
    assert_trees_equal(hax.fill_tree(t), t)
    assert hax.fill_tree({"apply": apply_a})["apply"] is apply_a


def test_fill_tree_converts_numpy_to_jax():
    raw = {
        "params": {"w": np.ones((2, 3), np.float32), "nested": {"x": [np.arange(3)]}},
        "buffers": {"s": np.float32(2.0)},
        "submodules": {"c": {"params": {"v": np.zeros(4)}}},
    }
    filled = hax.fill_tree(raw)
    for leaf in [*jax.tree_util.tree_leaves(filled["params"]), filled["buffers"]["s"]]:
        assert isinstance(leaf, jax.Array)
    v = filled["submodules"]["c"]["params"]["v"]
    assert isinstance(v, jax.Array)
    np.testing.assert_array_equal(v, np.zeros(4))
    np.testing.assert_array_equal(filled["params"]["nested"]["x"][0], np.arange(3))
    assert filled["params"]["w"].shape == (2, 3)
    assert float(filled["buffers"]["s"]) == 2.0


def test_fill_tree_does_not_mutate_input():
    raw = {
        "params": {"w": np.ones(2)},
        "aux": {"k": 1},
        "submodules": {"c": {"buffers": {"b": np.zeros(1)}}},
    }
    snapshot = copy.deepcopy(raw)
    filled = hax.fill_tree(raw)
    assert set(raw) == {"params", "aux", "submodules"}
    assert set(raw["submodules"]["c"]) == {"buffers"}
    assert isinstance(raw["params"]["w"], np.ndarray)
    assert isinstance(raw["submodules"]["c"]["buffers"]["b"], np.ndarray)
    assert_trees_equal(raw, snapshot)
    # the output owns its dicts
    filled["aux"]["k"] = 2
    filled["submodules"]["c"]["buffers"]["new"] = 1
    assert raw["aux"]["k"] == 1
    assert "new" not in raw["submodules"]["c"]["buffers"]


def test_fill_tree_unknown_key_names_path():
    with pytest.raises(ValueError, match="constants") as info:
        hax.fill_tree({"submodules": {"a": {"submodules": {"b": {"constants": {}}}}}})
    assert "a/b" in str(info.value)
    with pytest.raises(ValueError, match="<root>"):
        hax.fill_tree({"param": {}})


def test_fill_tree_non_dict_node():
    with pytest.raises(TypeError, match="a/x"):
        hax.fill_tree({"submodules": {"a": {"submodules": {"x": [1, 2]}}}})


# ---------------------------------------------------------------- is_structure_tree


def test_is_structure_tree_true():
    assert hax.is_structure_tree(make_tree())
    assert hax.is_structure_tree(hax.empty_tree())
    tree, _ = hax.nn.Sequential(hax.nn.Linear(2, 3, rng=0), hax.nn.Dropout(0.5, rng=1))
    assert hax.is_structure_tree(tree)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda t: t.pop("aux"),  # missing key
        lambda t: t.__setitem__("constants", {}),  # extra key
        lambda t: t.__setitem__("apply", 3),  # not callable
        lambda t: t.__setitem__("params", [jnp.ones(2)]),  # kind not a dict
        lambda t: t["submodules"]["enc"]["submodules"]["attn"].pop("buffers"),  # deep child
        lambda t: t["submodules"].__setitem__("x", (hax.empty_tree(), {})),  # module, not tree
    ],
)
def test_is_structure_tree_false(breakage):
    t = make_tree()
    breakage(t)
    assert not hax.is_structure_tree(t)


def test_is_structure_tree_non_dicts():
    assert not hax.is_structure_tree(None)
    assert not hax.is_structure_tree([])
    assert not hax.is_structure_tree(hax.nn.Linear(2, 2, rng=0))  # a module is a tuple


# ---------------------------------------------------------------- structure_tree_map


def test_structure_tree_map_single_tree():
    t = make_tree()
    seen = []

    def zero(node, path):
        seen.append(path)
        assert "submodules" not in node
        return {**node, "params": jax.tree_util.tree_map(jnp.zeros_like, node["params"])}

    out = hax.structure_tree_map(zero, t)
    assert sorted(seen) == sorted([(), ("enc",), ("enc", "attn"), ("head",)])
    assert hax.is_structure_tree(out)
    for name, leaf in hax.named_leaves(out, ("params",)):
        assert not np.any(np.asarray(leaf)), name
    # everything else is untouched, and the input is not mutated
    keep = ("buffers", "aux", "apply")
    assert_trees_equal(hax.filter_keys(out, *keep), hax.filter_keys(t, *keep))
    assert_trees_equal(t, make_tree())


def test_structure_tree_map_path_argument():
    t = make_tree()
    out = hax.structure_tree_map(lambda n, path: {"aux": {"path": path}}, t)
    assert out["aux"]["path"] == ()
    assert out["submodules"]["enc"]["submodules"]["attn"]["aux"]["path"] == ("enc", "attn")
    assert isinstance(out["submodules"]["head"]["aux"]["path"], tuple)


def test_structure_tree_map_several_trees_union_of_paths():
    a = hax.fill_tree({"aux": {"v": 1}, "submodules": {"x": {"aux": {"v": 2}}}})
    b = hax.fill_tree(
        {"aux": {"v": 10}, "submodules": {"y": {"aux": {"v": 20}, "submodules": {"z": {}}}}}
    )
    calls = {}

    def fn(na, nb, path):
        calls[path] = (na is None, nb is None)
        va = None if na is None else na["aux"].get("v")
        vb = None if nb is None else nb["aux"].get("v")
        return {"aux": {"pair": (va, vb)}}

    out = hax.structure_tree_map(fn, a, b)
    assert calls == {
        (): (False, False),
        ("x",): (False, True),
        ("y",): (True, False),
        ("y", "z"): (True, False),
    }
    assert out["aux"]["pair"] == (1, 10)
    assert out["submodules"]["x"]["aux"]["pair"] == (2, None)
    assert out["submodules"]["y"]["aux"]["pair"] == (None, 20)
    assert out["submodules"]["y"]["submodules"]["z"]["aux"]["pair"] == (None, None)
    assert list(out["submodules"]) == ["x", "y"]


def test_structure_tree_map_tuple_builds_several_trees():
    t = make_tree()
    left, right = hax.structure_tree_map(
        lambda n, path: ({"params": n["params"]}, {"aux": n["aux"], "apply": n["apply"]}), t
    )
    assert set(left) == {"params", "submodules"}
    assert set(right) == {"aux", "apply", "submodules"}
    assert set(left["submodules"]) == set(right["submodules"]) == {"enc", "head"}
    assert (
        left["submodules"]["enc"]["params"]["weight"] is t["submodules"]["enc"]["params"]["weight"]
    )
    assert right["submodules"]["enc"]["submodules"]["attn"]["aux"] == {"heads": 2}
    assert right["submodules"]["head"]["apply"] is apply_b


def test_structure_tree_map_inconsistent_tuple_raises():
    t = hax.fill_tree({"submodules": {"a": {}}})
    with pytest.raises(ValueError, match="tuple"):
        hax.structure_tree_map(lambda n, path: n if path else (n, n), t)


def test_structure_tree_map_inconsistent_tuple_in_children_raises():
    """Regression: only parent-tuple/child-node mismatches were caught (07817e0)."""
    t = hax.fill_tree({"submodules": {"a": {}}})
    with pytest.raises(ValueError, match="tuple"):
        hax.structure_tree_map(lambda n, path: (n, n) if path else n, t)


def test_structure_tree_map_non_dict_result_raises():
    with pytest.raises(TypeError, match="<root>"):
        hax.structure_tree_map(lambda n, path: 3, hax.empty_tree())


# ---------------------------------------------------------------- filter / split / merge


def test_filter_keys():
    t = make_tree()
    params = hax.filter_keys(t, "params")
    assert set(params) == {"params", "submodules"}
    enc = params["submodules"]["enc"]
    assert set(enc) == {"params", "submodules"}
    assert enc["params"]["weight"] is t["submodules"]["enc"]["params"]["weight"]
    assert set(enc["submodules"]["attn"]) == {"params", "submodules"}
    # a pytree of arrays only: jax.grad can take it
    assert all(isinstance(x, jax.Array) for x in jax.tree_util.tree_leaves(params))
    two = hax.filter_keys(t, "aux", "apply")
    assert set(two) == {"aux", "apply", "submodules"}
    assert two["submodules"]["head"]["aux"] == {"flag": True, "none": None}


@pytest.mark.wrong_types
@pytest.mark.parametrize("bad", ["submodules", "constants", "param"])
def test_filter_keys_unknown_kind(bad):
    with pytest.raises(ValueError, match=bad):
        hax.filter_keys(make_tree(), "params", bad)


@pytest.mark.parametrize(
    "key_sets",
    [["params"], ["params", "buffers"], [("params", "buffers"), "aux"], ["apply", "aux"], []],
)
def test_split_merge_round_trip(key_sets):
    t = make_tree()
    parts = hax.split_tree(t, key_sets)
    assert len(parts) == len(key_sets) + 1
    merged = hax.merge_trees(*parts)
    assert_trees_equal(merged, t)
    # the rest part holds exactly the kinds no set named
    named = {k for ks in key_sets for k in ((ks,) if isinstance(ks, str) else ks)}
    rest = set(parts[-1]) - {"submodules"}
    assert rest == {"params", "buffers", "aux", "apply"} - named
    assert_trees_equal(t, make_tree())  # input not mutated


def test_split_tree_parts_content():
    t = make_tree()
    params, buffers, rest = hax.split_tree(t, ["params", "buffers"])
    assert_trees_equal(params, hax.filter_keys(t, "params"))
    assert_trees_equal(buffers, hax.filter_keys(t, "buffers"))
    assert_trees_equal(rest, hax.filter_keys(t, "aux", "apply"))


def test_split_tree_takes_a_single_kind_as_a_str():
    t = make_tree()
    params, rest = hax.split_tree(t, "params")
    assert_trees_equal(params, hax.filter_keys(t, "params"))
    assert_trees_equal(rest, hax.filter_keys(t, "buffers", "aux", "apply"))


@pytest.mark.wrong_types
def test_split_tree_rejects_overlap_and_unknown():
    with pytest.raises(ValueError, match="params"):
        hax.split_tree(make_tree(), ["params", ("params", "aux")])
    with pytest.raises(ValueError, match="constants"):
        hax.split_tree(make_tree(), ["constants"])


def test_merge_trees_order_and_partial():
    t = make_tree()
    params, rest = hax.split_tree(t, ["params"])
    assert_trees_equal(hax.merge_trees(rest, params), t)
    partial = hax.merge_trees(hax.filter_keys(t, "params"))
    assert set(partial) == {"params", "submodules"}
    assert hax.is_structure_tree(hax.fill_tree(partial))


def test_merge_trees_conflicting_leaf_names_path():
    a = {"submodules": {"enc": {"params": {"w": jnp.ones(2)}, "submodules": {}}}}
    b = {"submodules": {"enc": {"params": {"w": jnp.zeros(2)}, "submodules": {}}}}
    with pytest.raises(ValueError, match="enc") as info:
        hax.merge_trees(a, b)
    assert "'w'" in str(info.value)


def test_merge_trees_conflicting_apply_names_path():
    a = {"apply": apply_a, "submodules": {"x": {"apply": apply_a, "submodules": {}}}}
    b = {"submodules": {"x": {"apply": apply_b, "submodules": {}}}}
    with pytest.raises(ValueError, match="x"):
        hax.merge_trees(a, b)
    with pytest.raises(ValueError, match="<root>"):
        hax.merge_trees({"apply": apply_a}, {"apply": apply_b})


def test_merge_trees_disjoint_keys_in_one_kind():
    a = {"params": {"w": jnp.ones(1)}, "submodules": {}}
    b = {"params": {"b": jnp.zeros(1)}, "submodules": {"c": {"aux": {"k": 1}, "submodules": {}}}}
    merged = hax.merge_trees(a, b)
    assert set(merged["params"]) == {"w", "b"}
    assert merged["submodules"]["c"]["aux"] == {"k": 1}
    assert set(a["params"]) == {"w"}  # inputs not mutated


def test_merge_trees_needs_a_tree():
    with pytest.raises(TypeError):
        hax.merge_trees()


# ---------------------------------------------------------------- get / set subtree


@pytest.mark.parametrize("path", [("enc", "attn"), "enc/attn", "/enc/attn/"])
def test_get_subtree(path):
    t = make_tree()
    assert hax.get_subtree(t, path) is t["submodules"]["enc"]["submodules"]["attn"]


@pytest.mark.parametrize("root", [(), "", "/"])
def test_get_subtree_root(root):
    t = make_tree()
    assert hax.get_subtree(t, root) is t


def test_get_subtree_missing_lists_names():
    with pytest.raises(KeyError) as info:
        hax.get_subtree(make_tree(), "enc/mlp")
    msg = str(info.value)
    assert "mlp" in msg and "attn" in msg and "enc" in msg
    with pytest.raises(KeyError) as info:
        hax.get_subtree(make_tree(), ("decoder",))
    assert "enc" in str(info.value) and "head" in str(info.value)


@pytest.mark.parametrize("path", [("enc", "attn"), "enc/attn"])
def test_set_subtree_is_functional(path):
    t = make_tree()
    snapshot = make_tree()
    new = hax.fill_tree({"aux": {"replaced": True}, "apply": apply_a})
    out = hax.set_subtree(t, path, new)
    assert out["submodules"]["enc"]["submodules"]["attn"] is new
    assert_trees_equal(t, snapshot)  # input unchanged
    assert t["submodules"]["enc"]["submodules"]["attn"]["aux"] == {"heads": 2}
    # only the nodes along the path are copied; the rest is shared
    assert out is not t
    assert out["submodules"]["enc"] is not t["submodules"]["enc"]
    assert out["submodules"]["head"] is t["submodules"]["head"]
    assert out["params"] is t["params"]
    assert out["submodules"]["enc"]["params"] is t["submodules"]["enc"]["params"]


def test_set_subtree_adds_and_replaces_root():
    t = make_tree()
    new = hax.empty_tree(apply_a)
    out = hax.set_subtree(t, "enc/extra", new)
    assert out["submodules"]["enc"]["submodules"]["extra"] is new
    assert set(out["submodules"]["enc"]["submodules"]) == {"attn", "extra"}
    assert "extra" not in t["submodules"]["enc"]["submodules"]
    assert hax.set_subtree(t, (), new) is new
    with pytest.raises(KeyError, match="nope"):
        hax.set_subtree(t, "nope/x", new)


# ---------------------------------------------------------------- named nodes / leaves


def test_named_nodes():
    t = make_tree()
    nodes = hax.named_nodes(t)
    assert [p for p, _ in nodes] == [(), ("enc",), ("enc", "attn"), ("head",)]
    for path, node in nodes:
        assert node is hax.get_subtree(t, path)


def test_named_leaves():
    t = make_tree()
    leaves = dict(hax.named_leaves(t))
    assert set(leaves) == {
        "params/w",
        "enc/params/weight",
        "enc/params/bias",
        "enc/buffers/count",
        "enc/attn/buffers/rng",
        "head/params/w/a",
        "head/params/w/b/0",
        "head/params/w/b/1",
    }
    assert leaves["enc/params/weight"] is t["submodules"]["enc"]["params"]["weight"]
    assert leaves["head/params/w/b/1"] is t["submodules"]["head"]["params"]["w"]["b"][1]
    names = [n for n, _ in hax.named_leaves(t)]
    # parents first; within a node, kinds in the order given
    assert names.index("params/w") < names.index("enc/params/bias")
    assert names.index("enc/params/weight") < names.index("enc/buffers/count")
    only_buffers = [n for n, _ in hax.named_leaves(t, ("buffers",))]
    assert sorted(only_buffers) == ["enc/attn/buffers/rng", "enc/buffers/count"]


def test_named_leaves_sequential_paths():
    tree, _ = hax.nn.Sequential(hax.nn.Linear(2, 3, rng=0), hax.nn.Dropout(rng=1))
    names = [n for n, _ in hax.named_leaves(tree)]
    assert sorted(names) == ["0/params/bias", "0/params/weight", "1/buffers/rng"]


# ---------------------------------------------------------------- paths


def test_as_path_and_path_str():
    assert hax.as_path("a/b") == ("a", "b")
    assert hax.as_path("/a/b/") == ("a", "b")
    assert hax.as_path(("a", "b")) == ("a", "b")
    assert hax.as_path("") == hax.as_path("/") == hax.as_path(()) == ()
    assert hax.as_path("0") == ("0",)
    assert hax.path_str(("enc", "0", "attn")) == "enc/0/attn"
    assert hax.path_str("enc/0") == "enc/0"
    assert hax.path_str(()) == ""
    for p in [("a",), ("a", "b", "c"), ("x_1", "0")]:
        assert hax.as_path(hax.path_str(p)) == p


# ("a", 1) breaks the annotation (a tuple of str): beartype checks one random item of a
# tuple, so under the import hook it is refused before as_path runs about half the time.
@pytest.mark.parametrize(
    "bad", ["a//b", ("a", ""), ("a/b",), pytest.param(("a", 1), marks=pytest.mark.wrong_types)]
)
def test_as_path_invalid_names(bad):
    with pytest.raises(ValueError):
        hax.as_path(bad)


@pytest.mark.parametrize("bad", [["a", "b"], 3, None])
def test_as_path_invalid_type(bad):
    with pytest.raises(TypeError):
        hax.as_path(bad)


# ---------------------------------------------------------------- property-based


def _apply_c(tree, global_config, x):
    return tree, x


APPLIES = [apply_a, apply_b, _apply_c, hax.missing_apply]
NAMES = st.text(alphabet="abxyz_019", min_size=1, max_size=3)
DTYPES = [jnp.float32, jnp.int32, jnp.bool_, jnp.float16, jnp.uint8]


@st.composite
def arrays(draw):
    shape = tuple(draw(st.lists(st.integers(0, 3), max_size=3)))
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**16))
    values = np.random.default_rng(seed).normal(size=shape) * 10
    return jax.device_put(values.astype(dtype))  # cheaper than jnp.asarray


KEYS = [jax.random.key(i) for i in range(4)]
leaf_arrays = st.one_of(arrays(), st.sampled_from(KEYS))
pytrees_of_arrays = st.recursive(
    leaf_arrays,
    lambda inner: st.one_of(st.lists(inner, max_size=2), st.dictionaries(NAMES, inner, max_size=2)),
    max_leaves=4,
)
aux_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False),
    st.text(max_size=5),
)
aux_values = st.recursive(
    aux_scalars, lambda inner: st.lists(inner, max_size=3).map(tuple), max_leaves=5
)
json_values = st.recursive(
    aux_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=2), st.dictionaries(st.text(max_size=3), inner, max_size=2)
    ),
    max_leaves=4,
)
configs = st.dictionaries(st.text(max_size=5), json_values, max_size=3)


@st.composite
def structure_trees(draw, depth=1, max_depth=4):
    children = {}
    if depth < max_depth:
        children = draw(st.dictionaries(NAMES, structure_trees(depth + 1, max_depth), max_size=3))
    return {
        "params": draw(st.dictionaries(NAMES, pytrees_of_arrays, max_size=3)),
        "buffers": draw(st.dictionaries(NAMES, pytrees_of_arrays, max_size=2)),
        "aux": draw(st.dictionaries(NAMES, aux_values, max_size=3)),
        "apply": draw(st.sampled_from(APPLIES)),
        "submodules": children,
    }


@settings(max_examples=30, deadline=None)
@given(structure_trees(), configs)
def test_random_trees_round_trips(tree, config):
    snapshot = copy.deepcopy(tree)
    assert hax.is_structure_tree(tree)
    assert_trees_equal(hax.fill_tree(tree), tree)
    for key_sets in (["params"], ["params", "buffers"], [("params", "aux"), "apply"]):
        parts = hax.split_tree(tree, key_sets)
        assert_trees_equal(hax.merge_trees(*parts), tree)
        assert_trees_equal(hax.merge_trees(*reversed(parts)), tree)
    assert_trees_equal(hax.filter_keys(tree, "params"), hax.split_tree(tree, ["params"])[0])

    state, apply = hax.bind_module(tree, config)
    assert all(isinstance(x, jax.Array) for x in jax.tree_util.tree_leaves(state))
    named = hax.named_leaves(tree)
    assert len(jax.tree_util.tree_leaves(state)) == len(named)
    for name, _ in named:
        assert any(name == k or name.startswith(k + "/") for k in state), name
    assert_trees_equal(hax.unbind_module(state, apply), (tree, config))
    assert_trees_equal(tree, snapshot)
    # named_nodes agrees with get_subtree on every path
    for path, node in hax.named_nodes(tree):
        assert hax.get_subtree(tree, hax.path_str(path)) is node


@pytest.mark.wrong_types
def test_kinds_of_the_wrong_type_are_refused_with_the_fix():
    tree, _ = hax.nn.Linear(2, 2, rng=0)
    with pytest.raises(TypeError, match=r"kinds is a sequence of kinds, such as \['params'\]"):
        hax.named_leaves(tree, "params")
    with pytest.raises(TypeError, match=r"filter_keys\(tree, 'params', 'aux'\); found the list"):
        hax.filter_keys(tree, ["params", "aux"])
    with pytest.raises(
        TypeError, match="split_tree: a kind is a str such as 'params'; found the int"
    ):
        hax.split_tree(tree, [["params", 1]])
    with pytest.raises(TypeError, match="named_leaves: a kind is a str such as 'params'"):
        hax.named_leaves(tree, [None])
    with pytest.raises(ValueError, match=r"unknown kinds \['param'\]"):
        hax.split_tree(tree, ["param"])
    # What each documents still works: a bare str is one kind where one kind is meant.
    assert_trees_equal(hax.split_tree(tree, "params"), hax.split_tree(tree, ["params"]))
    assert [name for name, _ in hax.named_leaves(tree, ["params"])] == [
        "params/bias",
        "params/weight",
    ]
