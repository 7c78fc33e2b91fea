"""Tests for `hax.surgery`: selectors, edits, freezing, intermediates and weight tying,
on a small CNN and a small transformer built with StateOrganizer."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_trees_equal

import hax
import hax.surgery as surgery
from hax import nn
from hax.nn import functional as F

FAST_COMPILE = {"xla_backend_optimization_level": 0}

# ---------------------------------------------------------------- models


def scale_apply(tree, global_config, x):
    return tree, x * tree["aux"]["scale"]


def Scale(scale):
    """A layer that multiplies its input by `aux["scale"]`."""
    tree = {"params": {}, "buffers": {}, "aux": {"scale": float(scale)}, "apply": scale_apply}
    return hax.validate(hax.fill_tree(tree)), {}


# Every distinct param shape costs a random-init compile, so the models share shapes
# (all Linears of the transformer are 8 x 8) and are built once (trees are immutable).


@functools.cache
def CNN():
    with hax.rng_context(0):
        return nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 8)
        )


@hax.organized_apply
def attn_apply(org, x):
    q, k, v = org.q(x), org.k(x), org.v(x)
    weights = jax.nn.softmax(q @ jnp.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1]), axis=-1)
    return org.proj(weights @ v)


@hax.organized_init(attn_apply)
def Attention(org, d):
    org.q = nn.Linear(d, d)
    org.k = nn.Linear(d, d)
    org.v = nn.Linear(d, d)
    org.proj = nn.Linear(d, d)


@hax.organized_apply
def block_apply(org, x):
    x = x + org.attn(org.ln1(x))
    return x + org.mlp(org.ln2(x))


@hax.organized_init(block_apply)
def Block(org, d):
    org.ln1 = nn.LayerNorm(d)
    org.attn = Attention(d)
    org.ln2 = nn.LayerNorm(d)
    org.mlp = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))


@hax.organized_apply
def transformer_apply(org, x):
    return org.head(org.blocks(org.embed(x)).mean(axis=-2))


@hax.organized_init(transformer_apply)
def Transformer(org, din, d, nblocks, nclasses):
    org.embed = nn.Linear(din, d)
    org.blocks = nn.Sequential(*[Block(d) for _ in range(nblocks)])
    org.head = nn.Linear(d, nclasses)


@functools.cache
def transformer():
    with hax.rng_context(0):
        return Transformer(8, 8, 2, 8)


_rng = np.random.default_rng(0)
X_CNN = _rng.normal(size=(2, 3, 8, 8)).astype(np.float32)
X_TF = _rng.normal(size=(2, 5, 8)).astype(np.float32)

# Compiling dominates the run time: each test compiles few programs (several trees
# run in one), and eager runs stay on tiny layers.


@functools.partial(hax.jit, compiler_options=FAST_COMPILE)
def outputs(trees, config, x):
    """The output of each tree on `x`, in one compiled program."""
    return [hax.apply_tree(tree, config, x)[1] for tree in trees]


def by_hand(tree, config, names, x):
    """Run the children `names` of `tree` one after another."""
    for name in names:
        _, x = hax.apply_tree(tree["submodules"][name], config, x)
    return x


def leaves(tree):
    return dict(hax.named_leaves(tree))


def assert_same_leaves(after, before, keep):
    """The leaves of `before` whose names pass `keep` are in `after`, the same objects."""
    kept = {name for name in before if keep(name)}
    assert kept == {name for name in after if keep(name)}
    assert all(after[name] is before[name] for name in kept)


def snapshot(tree):
    """New containers holding the same leaves: a later mutation of `tree` shows up."""
    return jax.tree_util.tree_map(lambda x: x, tree)


# ---------------------------------------------------------------- selectors


def test_paths_by_glob_kind_and_predicate():
    tree, _ = transformer()
    every = [p for p, _ in hax.named_nodes(tree)]
    assert surgery.paths(tree, "**") == every
    assert surgery.paths(tree, "blocks/*/attn") == [
        ("blocks", "0", "attn"),
        ("blocks", "1", "attn"),
    ]
    assert surgery.paths(tree, "**/proj") == [
        ("blocks", "0", "attn", "proj"),
        ("blocks", "1", "attn", "proj"),
    ]
    assert surgery.paths(tree, "blocks/?/ln[12]") == [
        p for p in every if len(p) == 3 and p[2] in ("ln1", "ln2")
    ]
    assert surgery.paths(tree, "") == [()]
    assert surgery.paths(tree, ("head",)) == [("head",)]
    assert surgery.paths(tree, ["head", "embed", "head"]) == [("embed",), ("head",)]
    assert surgery.paths(tree, "nothing/here") == []
    assert surgery.paths(tree, "blocks/*/nothing") == []

    linears = [p for p, n in hax.named_nodes(tree) if n["apply"] is nn.linear_apply]
    assert len(linears) == 14
    for kind in (nn.Linear, nn.linear_apply, "Linear"):
        assert list(surgery.select(tree, kind=kind)) == linears
    assert list(surgery.select(tree, kind=Block)) == []  # no spec: pass the apply
    assert list(surgery.select(tree, kind=block_apply)) == [("blocks", "0"), ("blocks", "1")]
    assert list(surgery.select(tree, "blocks/1/**", kind=nn.Linear)) == [
        p for p in linears if p[:2] == ("blocks", "1")
    ]
    blocks = [("blocks", "0"), ("blocks", "1")]
    in_attn = surgery.select(tree, kind=nn.Linear, where=lambda node, path: "attn" in path)
    assert list(in_attn) == [(*b, "attn", n) for b in blocks for n in ("q", "k", "v", "proj")]

    def is_norm(node, path):
        return node["apply"] is nn.layer_norm_apply

    assert surgery.paths(tree, is_norm) == [p for p in every if p[-1:] in (("ln1",), ("ln2",))]
    attn = tree["submodules"]["blocks"]["submodules"]["0"]["submodules"]["attn"]
    assert surgery.get(tree, "blocks/0/attn/q") is attn["submodules"]["q"]
    assert surgery.get(tree, ("blocks", "0", "attn")) is attn


# ---------------------------------------------------------------- the selection object


def small_tree():
    """root -> a -> (b, c), d; each node holds one array so sharing can be checked."""

    def node(name, **children):
        return {"params": {"w": jnp.full((1,), float(len(name)))}, "submodules": children}

    return hax.fill_tree(node("", a=node("a", b=node("ab"), c=node("ac")), d=node("d")))


def child(tree, *names):
    for name in names:
        tree = tree["submodules"][name]
    return tree


def tagged(calls):
    """An edit that records `(path, {child name: its tag})` and tags the node with its path."""

    def fn(node, path):
        calls.append((path, {k: child(node, k)["aux"].get("tag") for k in node["submodules"]}))
        return {**node, "aux": {"tag": "/".join(path)}}

    return fn


def test_selection_get_reads_the_nodes_in_order():
    tree = small_tree()
    sel = surgery.Selection([("d",), ("a", "b"), ()], "by hand")
    expected = [child(tree, "d"), child(tree, "a", "b"), tree]
    assert all(x is y for x, y in zip(sel.get(tree), expected, strict=True))
    assert surgery.Selection([], "nothing").get(tree) == []
    with pytest.raises(
        KeyError, match=r"Selection.get: no node at 'a/x': 'a' has submodules \['b', 'c'\]"
    ):
        surgery.Selection([("a", "x")], "by hand").get(tree)


def test_selection_set_outermost_edits_each_outer_match_once():
    tree = small_tree()
    before = snapshot(tree)
    calls = []
    sel = surgery.Selection([("a",), ("a", "b"), ("d",)], "by hand")
    new = sel.set(tree, tagged(calls))  # "outermost" is the default
    # a/b goes with a: fn sees a, with its original children, then d, in tree order.
    assert calls == [(("a",), {"b": None, "c": None}), (("d",), {})]
    assert child(new, "a")["aux"] == {"tag": "a"} and child(new, "d")["aux"] == {"tag": "d"}
    assert child(new, "a", "b") is child(tree, "a", "b")  # not edited: it went with a
    assert new["aux"] == {} and list(new["submodules"]) == ["a", "d"]
    assert_trees_equal(tree, before)  # the input is unchanged

    # Only the root, the whole tree.
    calls = []
    assert surgery.Selection([(), ("a",)], "q").set(tree, tagged(calls))["aux"] == {"tag": ""}
    assert [path for path, _ in calls] == [()]


def test_selection_set_deepest_first_edits_children_before_parents():
    tree = small_tree()
    before = snapshot(tree)
    calls = []
    sel = surgery.Selection([(), ("a",), ("a", "b"), ("a", "c"), ("d",)], "by hand")
    new = sel.set(tree, tagged(calls), order="deepest_first")
    # The reverse of tree order; each parent sees its children already edited.
    assert calls == [
        (("d",), {}),
        (("a", "c"), {}),
        (("a", "b"), {}),
        (("a",), {"b": "a/b", "c": "a/c"}),
        ((), {"a": "a", "d": "d"}),
    ]
    tags = {"/".join(p): n["aux"].get("tag") for p, n in hax.named_nodes(new)}
    assert tags == {"": "", "a": "a", "a/b": "a/b", "a/c": "a/c", "d": "d"}
    assert list(child(new, "a")["submodules"]) == ["b", "c"]  # the children keep their order
    assert_trees_equal(tree, before)


def test_selection_set_copies_only_the_nodes_on_the_paths():
    tree = small_tree()
    before = snapshot(tree)
    new = surgery.Selection([("a", "b")], "q").set(
        tree, lambda node, path: {**node, "aux": {"x": 1}}
    )
    # The root and a are new dicts (with new submodule dicts); c, d and every array are shared.
    assert new is not tree and child(new, "a") is not child(tree, "a")
    assert new["submodules"] is not tree["submodules"]
    assert child(new, "a", "c") is child(tree, "a", "c") and child(new, "d") is child(tree, "d")
    assert child(new, "a")["params"] is child(tree, "a")["params"]
    assert child(new, "a", "b")["params"]["w"] is child(tree, "a", "b")["params"]["w"]
    assert child(new, "a", "b")["aux"] == {"x": 1} and child(tree, "a", "b")["aux"] == {}
    assert_trees_equal(tree, before)
    # An empty selection returns the tree itself.
    assert surgery.Selection([], "q").set(tree, lambda node, path: 1 / 0) is tree


@pytest.mark.wrong_types
def test_selection_set_errors():
    tree = small_tree()
    calls = []
    with pytest.raises(
        KeyError, match=r"Selection.set: no node at 'e': <root> has submodules \['a', 'd'\]"
    ):
        surgery.Selection([("e",)], "q").set(tree, tagged(calls))
    with pytest.raises(ValueError, match="order must be 'outermost' or 'deepest_first'"):
        surgery.Selection([("a",)], "q").set(tree, tagged(calls), order="parents_first")
    assert calls == []


def test_selection_outermost_and_parents():
    sel = surgery.Selection([("a",), ("a", "b"), ("a", "bc"), ("ab",), ("d", "e")], "q")
    assert list(sel.outermost()) == [("a",), ("ab",), ("d", "e")]
    assert sel.outermost().query == "q"
    assert list(sel.parents()) == [(), ("a",), ("a",), (), ("d",)]
    with pytest.raises(ValueError, match="the root has no parent"):
        surgery.Selection([("a",), ()], "q").parents()


def test_select_gives_a_selection_that_reads_and_edits_a_model():
    tree, _ = transformer()
    sel = surgery.select(tree, "blocks/*/attn")
    assert repr(sel) == "select('blocks/*/attn') -> ['blocks/0/attn', 'blocks/1/attn']"
    attns = [child(tree, "blocks", i, "attn") for i in ("0", "1")]
    assert all(x is y for x, y in zip(sel.get(tree), attns, strict=True))

    linears = surgery.select(tree, kind=nn.Linear)
    zeroed = hax.validate(
        linears.set(
            tree,
            lambda node, path: {**node, "params": jax.tree.map(jnp.zeros_like, node["params"])},
        )
    )
    linear_paths = {"/".join(p) for p in linears}
    before, after = leaves(tree), leaves(zeroed)
    assert before.keys() == after.keys()
    for name, leaf in after.items():
        if name.rsplit("/", 2)[0] in linear_paths:
            assert leaf.shape == before[name].shape and not np.any(leaf), name
        else:
            assert leaf is before[name], name  # e.g. the LayerNorms' params


# ---------------------------------------------------------------- intermediates


@functools.partial(hax.jit, compiler_options=FAST_COMPILE)
def cnn_case(tree, config, x):
    captured = surgery.intermediates(tree, config, ["2", "0"], x)
    hand = [by_hand(tree, config, names, x) for names in ("0", "012", "01234")]
    return captured, *hand


@functools.partial(hax.jit, compiler_options=FAST_COMPILE)
def transformer_case(tree, config, x):
    captured = surgery.intermediates(tree, config, ["blocks/0", ""], x)
    h = by_hand(tree, config, ["embed"], x)
    return captured, by_hand(tree["submodules"]["blocks"], config, "0", h)


def test_intermediate_equals_truncated_model():
    tree, config = CNN()
    (new_tree, out, acts), conv, pooled, full = cnn_case(tree, config, X_CNN)
    assert list(acts) == ["0", "2"] and all(len(v) == 1 for v in acts.values())
    np.testing.assert_allclose(acts["0"][0], conv, rtol=1e-6)
    np.testing.assert_allclose(acts["2"][0], pooled, rtol=1e-6)
    np.testing.assert_allclose(out, full, rtol=1e-6)
    assert_trees_equal(new_tree, tree)  # the recorders are gone

    tree, config = transformer()
    (_, out, acts), block0 = transformer_case(tree, config, X_TF)
    np.testing.assert_allclose(acts["blocks/0"][0], block0, rtol=1e-5)
    np.testing.assert_array_equal(acts[""][0], out)


def test_intermediates_under_jax_transformations():
    tree, config = CNN()
    r = _rng.normal(size=(2, 4, 6, 6)).astype(np.float32)
    params, rest = hax.split_tree(tree, ["params"])

    def loss(params):
        t = hax.merge_trees(params, rest)
        return jnp.sum(surgery.intermediates(t, config, "1", X_CNN)[2]["1"][0] * r)

    def truncated_loss(params):
        return jnp.sum(by_hand(hax.merge_trees(params, rest), config, "01", X_CNN) * r)

    grads, expected = jax.jit(
        lambda p: (jax.grad(loss)(p), jax.grad(truncated_loss)(p)),
        compiler_options=FAST_COMPILE,
    )(params)
    conv = grads["submodules"]["0"]["params"]
    assert float(jnp.abs(conv["weight"]).max()) > 0
    for name in ("weight", "bias"):
        np.testing.assert_allclose(
            conv[name], expected["submodules"]["0"]["params"][name], rtol=1e-5, atol=1e-6
        )
    np.testing.assert_array_equal(grads["submodules"]["4"]["params"]["weight"], 0.0)

    # jax.jit of a function of bound state, and jax.vmap over examples.
    state, bound = hax.bind_module(tree, config)

    def features(state, x):
        t, c = hax.unbind_module(state, bound)
        new_tree, _, acts = surgery.intermediates(t, c, "2", x)
        return hax.bind_module(new_tree, c)[0], acts["2"][0]

    def both(state, x):
        per_example = jax.vmap(lambda x: features(state, x[None])[1][0])(x)
        return features(state, x), per_example, by_hand(tree, config, "012", x)

    (new_state, pooled), per_example, expected = jax.jit(both, compiler_options=FAST_COMPILE)(
        state, X_CNN
    )
    assert_trees_equal(new_state, state)
    np.testing.assert_allclose(pooled, expected, rtol=1e-6)
    np.testing.assert_allclose(per_example, pooled, rtol=1e-5, atol=1e-6)


@hax.organized_apply
def twice_apply(org, x):
    return org.out(org.f(org.f(x)))


@hax.organized_init(twice_apply)
def Twice(org):
    org.f = nn.Linear(8, 8, rng=0)
    org.unused = nn.Linear(8, 8, rng=1)
    org.out = Scale(2.0)


def test_node_called_twice_gives_every_output_in_order():
    tree, config = Twice()
    x = jnp.arange(16.0).reshape(2, 8)
    _, out, acts = surgery.intermediates(tree, config, ["f", "unused", "out"], x)
    first = by_hand(tree, config, ["f"], x)
    second = by_hand(tree, config, ["f"], first)
    assert len(acts["f"]) == 2 and acts["unused"] == ()
    np.testing.assert_allclose(acts["f"][0], first, rtol=1e-6)
    np.testing.assert_allclose(acts["f"][1], second, rtol=1e-6)
    np.testing.assert_allclose(out, 2 * second, rtol=1e-6)
    with hax.debug():  # the recorder keeps the layer's spec and apply contract
        surgery.intermediates(tree, config, "f", x)


# ---------------------------------------------------------------- edits


def test_insert_keeps_outputs_and_paths():
    tree, config = CNN()
    ident, _ = surgery.insert_after(tree, "2", nn.Identity(), config=config)
    assert surgery.paths(ident, "2/*") == [("2", "0"), ("2", "1")]
    assert surgery.get(ident, "2/0")["apply"] is nn.max_pool2d_apply
    doubled, cfg = surgery.insert_after(tree, "4", Scale(2.0))
    assert cfg == {}
    pre, _ = surgery.insert_before(tree, "4", Scale(3.0))
    assert surgery.get(pre, "4/1")["apply"] is nn.linear_apply
    before, after = leaves(tree), leaves(doubled)
    assert_same_leaves(after, before, keep=lambda name: not name.startswith("4/"))
    assert after["4/0/params/weight"] is before["4/params/weight"]

    ref, out_ident, out_doubled, out_pre = outputs([tree, ident, doubled, pre], config, X_CNN)
    np.testing.assert_allclose(out_ident, ref, rtol=1e-6)
    np.testing.assert_allclose(out_doubled, 2 * ref, rtol=1e-6)
    bias = tree["submodules"]["4"]["params"]["bias"]  # before a Linear: W (3 h) + b
    np.testing.assert_allclose(out_pre, 3 * (ref - bias) + bias, rtol=1e-5, atol=1e-6)

    # A transformer: every attention's output zeroed; every param outside keeps its path.
    tree, config = transformer()
    scaled, _ = surgery.insert_after(tree, "blocks/*/attn", Scale(0.0), config=config)
    before, after = leaves(tree), leaves(scaled)
    assert_same_leaves(after, before, keep=lambda name: "/attn/" not in name)
    moved = [name for name in before if "/attn/" in name]
    assert all(after[name.replace("/attn/", "/attn/0/")] is before[name] for name in moved)
    no_attn, _ = surgery.replace(tree, "blocks/*/attn", Scale(0.0))
    out_scaled, out_no_attn = outputs([scaled, no_attn], config, X_TF)
    np.testing.assert_allclose(out_scaled, out_no_attn, rtol=1e-6)


def weighted_sum_apply(tree, global_config, a, b, *, weight):
    return tree, a + weight * b


def times_ten(inner, tree, config, *args, **kwargs):
    tree, out = inner(tree, config, *args, **kwargs)
    return tree, out * 10.0


def test_insert_and_wrap_a_node_with_several_arguments():
    tree = hax.empty_tree(weighted_sum_apply)
    a, b = jnp.arange(3.0), jnp.ones(3)
    expected = a + 2.0 * b
    chained, _ = surgery.insert_after(tree, "", Scale(-1.0))
    np.testing.assert_array_equal(hax.apply_tree(chained, {}, a, b, weight=2.0)[1], -expected)
    wrapped = surgery.wrap(tree, "", times_ten)
    np.testing.assert_array_equal(hax.apply_tree(wrapped, {}, a, b, weight=2.0)[1], 10 * expected)


def test_replace_head_and_train():
    tree, config = CNN()
    with pytest.raises(
        ValueError,
        match=r"conflict on key 'x': 2 vs 1 \(the config passed in vs the new module at '4'\)",
    ):
        surgery.replace(tree, "4", (nn.Linear(36, 8, rng=1)[0], {"x": 1}), config={"x": 2})
    old_head = tree["submodules"]["4"]["params"]["weight"]
    tree, config = surgery.replace(tree, "4", nn.Linear(36, 8, rng=1), config=config)
    assert not np.array_equal(tree["submodules"]["4"]["params"]["weight"], old_head)
    labels = jnp.array([0, 2])

    @hax.jit
    def step(tree, config, x, y):
        params, rest = hax.split_tree(tree, ["params"])

        def loss(p):
            return F.cross_entropy(hax.apply_tree(hax.merge_trees(p, rest), config, x)[1], y)

        value, grads = jax.value_and_grad(loss)(params)
        params = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)
        return hax.merge_trees(params, rest), value

    losses = []
    for _ in range(5):
        tree, value = step(tree, config, X_CNN, labels)
        losses.append(float(value))
    assert losses[-1] < losses[0] - 0.05, losses


def test_replace_every_relu_with_gelu_and_a_factory():
    tree, config = transformer()
    relus = list(surgery.select(tree, kind=nn.ReLU))
    assert len(relus) == 2
    gelu, _ = surgery.replace(tree, surgery.select(tree, kind=nn.ReLU), nn.GELU())
    assert list(surgery.select(gelu, kind=nn.GELU)) == relus
    assert list(surgery.select(gelu, kind=nn.ReLU)) == []
    nodes = [surgery.get(gelu, p) for p in relus]
    assert nodes[0] is not nodes[1]  # one copy per match: a node appears once in a tree

    cnn, config = CNN()
    gelu_cnn, _ = surgery.replace(cnn, "1", nn.GELU())

    @functools.partial(hax.jit, compiler_options=FAST_COMPILE)
    def case(x):
        h = jax.nn.gelu(by_hand(cnn, config, "0", x), approximate=False)
        return hax.apply_tree(gelu_cnn, config, x)[1], by_hand(cnn, config, "234", h)

    out, expected = case(X_CNN)
    np.testing.assert_allclose(out, expected, rtol=1e-5)

    # A factory builds each replacement from the node it replaces.
    seen = []

    def like_old(old, path):
        seen.append((old, path))
        return nn.Linear(old["aux"]["in_features"], old["aux"]["out_features"], rng=len(path))

    fresh, _ = surgery.replace(tree, "blocks/*/mlp/2", like_old)
    assert seen == [(surgery.get(tree, p), p) for p in surgery.paths(tree, "blocks/*/mlp/2")]
    new, old = surgery.get(fresh, "blocks/0/mlp/2"), surgery.get(tree, "blocks/0/mlp/2")
    assert not np.array_equal(new["params"]["weight"], old["params"]["weight"])


def doubled(inner, tree, config, *args, **kwargs):
    tree, out = inner(tree, config, *args, **kwargs)
    return tree, 2 * out


def identity_hook(inner, tree, config, *args, **kwargs):
    return inner(tree, config, *args, **kwargs)


def test_wrap_every_linear():
    tree, config = transformer()
    linears = list(surgery.select(tree, kind=nn.Linear))
    wrapped = surgery.wrap(tree, surgery.select(tree, kind=nn.Linear), identity_hook)
    assert list(surgery.select(wrapped, kind=nn.Linear)) == linears  # still Linears
    assert all(isinstance(surgery.get(wrapped, p)["apply"], surgery.Wrapped) for p in linears)
    assert_same_leaves(leaves(wrapped), leaves(tree), keep=lambda name: True)
    halved = surgery.wrap(tree, "blocks/*/attn/proj", doubled)
    out, out_wrapped, out_halved = outputs([tree, wrapped, halved], config, X_TF)
    np.testing.assert_allclose(out_wrapped, out, rtol=1e-6)
    assert not np.allclose(out_halved, out)
    with pytest.raises(hax.ValidationError, match=r"head: params\.weight"):  # the spec still holds
        bad = {**surgery.get(wrapped, "head"), "params": {"weight": jnp.ones((3, 3))}}
        hax.validate(hax.set_subtree(wrapped, "head", bad))

    # Rebuilding the same wrap reuses the compiled code; wraps nest.
    linear, config = nn.Linear(8, 8, rng=0)
    traces = []

    @hax.jit
    def traced_run(tree, x):
        traces.append(1)
        return hax.apply_tree(tree, config, x)[1]

    x = X_TF[0]
    ref = traced_run(linear, x)
    for _ in range(2):
        out = traced_run(surgery.wrap(linear, "", doubled), x)
    assert len(traces) == 2
    np.testing.assert_allclose(out, 2 * ref, rtol=1e-6)
    twice = surgery.wrap(surgery.wrap(linear, "", doubled), "", doubled)
    np.testing.assert_allclose(traced_run(twice, x), 4 * ref, rtol=1e-6)


def test_remove():
    tree, config = CNN()
    removed = surgery.remove(tree, "1")
    assert list(removed["submodules"]) == ["0", "2", "3", "4"]  # names keep their gap
    chained, _ = surgery.insert_after(tree, "4", Scale(5.0))
    unchained = surgery.remove(chained, "4/1")
    assert surgery.paths(unchained, "4/*") == [("4", "0")]

    @functools.partial(hax.jit, compiler_options=FAST_COMPILE)
    def case(x):
        out = [hax.apply_tree(t, config, x)[1] for t in (tree, removed, unchained)]
        return out, by_hand(tree, config, "0234", x)

    (out, out_removed, out_unchained), expected = case(X_CNN)
    np.testing.assert_allclose(out_removed, expected, rtol=1e-6)
    np.testing.assert_allclose(out_unchained, out, rtol=1e-6)

    tf, _ = transformer()
    with pytest.raises(ValueError, match=r"blocks/0/ln1.*hax.nn.Identity\(\)"):
        surgery.remove(tf, "blocks/0/ln1")
    with pytest.raises(ValueError, match="root"):
        surgery.remove(tf, "")
    fewer = surgery.remove(tf, "blocks/1")
    assert surgery.paths(fewer, "blocks/*") == [("blocks", "0")]


# ---------------------------------------------------------------- freezing


def test_freeze_with_optax_keeps_frozen_params_bit_identical():
    tree, config = CNN()
    frozen = surgery.freeze(tree, "0")
    assert frozen["submodules"]["0"]["aux"]["frozen"] is True
    assert "frozen" not in tree["submodules"]["0"]["aux"]  # the input is unchanged
    mask = surgery.trainable_mask(frozen)
    assert jax.tree_util.tree_structure(mask) == jax.tree_util.tree_structure(
        hax.filter_keys(frozen, "params")
    )
    assert mask["submodules"]["0"]["params"] == {"weight": False, "bias": False}
    assert mask["submodules"]["4"]["params"] == {"weight": True, "bias": True}

    optimizer = optax.multi_transform({True: optax.sgd(0.5), False: optax.set_to_zero()}, mask)
    params, rest = hax.split_tree(frozen, ["params"])
    opt_state = optimizer.init(params)

    @hax.jit
    def step(params, opt_state, rest, config, x):
        def loss(p):
            return jnp.mean(hax.apply_tree(hax.merge_trees(p, rest), config, x)[1] ** 2)

        grads = jax.grad(loss)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    new = params
    for _ in range(3):
        new, opt_state = step(new, opt_state, rest, config, X_CNN)
    for name in ("weight", "bias"):
        np.testing.assert_array_equal(
            new["submodules"]["0"]["params"][name], params["submodules"]["0"]["params"][name]
        )
        assert not np.array_equal(
            new["submodules"]["4"]["params"][name], params["submodules"]["4"]["params"][name]
        )

    # Flat mask for bound state; frozenness moves with a node and survives hax.jit.
    flat = surgery.trainable_mask(frozen, flat=True)
    assert set(flat) == set(hax.optim.params_of(hax.bind_module(frozen, config)[0]))
    assert flat == {"0/params/weight": False, "0/params/bias": False, "4/params/weight": True,
                    "4/params/bias": True}  # fmt: skip
    moved, _ = surgery.insert_after(frozen, "0", nn.Linear(8, 8, rng=1))  # not run
    assert surgery.trainable_mask(moved, flat=True) == {
        "0/0/params/weight": False, "0/0/params/bias": False, "0/1/params/weight": True,
        "0/1/params/bias": True, "4/params/weight": True, "4/params/bias": True,
    }  # fmt: skip
    returned = hax.jit(lambda t: t)(frozen)
    assert surgery.trainable_mask(returned) == mask
    everything_but_head = surgery.unfreeze(surgery.freeze(tree, ""), "4")
    assert surgery.trainable_mask(everything_but_head, flat=True) == flat


def test_flat_mask_fits_a_bound_train_step_with_buffers_and_weight_decay():
    with hax.rng_context(0):
        tree, config = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    frozen = surgery.freeze(tree, "0")
    state, apply = hax.bind_module(frozen, config)
    mask = surgery.trainable_mask(frozen, flat=True)
    assert mask == {
        "0/params/weight": False, "0/params/bias": False, "1/params/weight": True,
        "1/params/bias": True, "2/params/weight": True, "2/params/bias": True,
    }  # fmt: skip

    def loss_fn(state, x):
        new_state, out = apply(state, x)
        return jnp.mean(out**2), new_state

    adamw = optax.adamw(0.1, weight_decay=0.5)  # decay would move frozen params too
    optimizer = optax.multi_transform({True: adamw, False: optax.set_to_zero()}, mask)
    step = jax.jit(hax.optim.train_step(loss_fn, optimizer))
    x = jnp.arange(15.0).reshape(5, 3)
    new_state, _, _ = step(state, optimizer.init(hax.optim.params_of(state)), x)
    for name in ("0/params/weight", "0/params/bias"):
        np.testing.assert_array_equal(new_state[name], state[name])
    # the trainable params take adamw's first step, by hand: p - lr * (sign(g) + wd * p)
    grads = jax.grad(lambda p: loss_fn({**state, **p}, x)[0])(hax.optim.params_of(state))
    for name in ("1/params/weight", "2/params/weight", "2/params/bias"):
        g, p = grads[name], state[name]
        expected = p - 0.1 * (g / (jnp.abs(g) + 1e-8) + 0.5 * p)
        np.testing.assert_allclose(new_state[name], expected, rtol=1e-5, atol=1e-6, err_msg=name)
    assert int(new_state["1/buffers/num_batches_tracked"]) == 1


# ---------------------------------------------------------------- contracts and errors


def test_inputs_are_never_mutated():
    tree, config = transformer()
    head = nn.Linear(8, 8, rng=5)
    before, head_before, config_before = snapshot(tree), snapshot(head), dict(config)
    surgery.replace(tree, "head", head, config=config)
    surgery.insert_after(tree, "blocks/*/attn", head, config=config)
    surgery.insert_before(tree, "embed", Scale(2.0))
    surgery.remove(tree, "blocks/0")
    surgery.wrap(tree, "**", identity_hook)
    surgery.unfreeze(surgery.freeze(tree, "blocks"), "blocks/0")
    transformer_case(tree, config, X_TF)  # intermediates, compiled as in another test
    assert_trees_equal(tree, before)
    assert_trees_equal(head, head_before)
    assert config == config_before
    leaves_before = leaves(before)
    assert all(leaves_before[name] is leaf for name, leaf in leaves(tree).items())


@pytest.mark.wrong_types
def test_errors_name_the_selector_and_what_exists():
    tree, _ = transformer()
    with pytest.raises(
        KeyError, match=r"no node at 'blocks/3/attn': 'blocks' has submodules \['0', '1'\]"
    ):
        surgery.get(tree, "blocks/3/attn")
    with pytest.raises(KeyError, match="did you mean 'blocks/0/attn/proj'"):
        surgery.replace(tree, "blocks/0/attn/prj", nn.Identity())
    with pytest.raises(KeyError, match=r"hax.surgery.wrap: 'blocks/\*/atn' matched no node"):
        surgery.wrap(tree, "blocks/*/atn", identity_hook)
    with pytest.raises(KeyError, match=r"select\(kind=GELU\) matched no node.*'LayerNorm'"):
        surgery.freeze(tree, surgery.select(tree, kind=nn.GELU))

    def never(node, path):
        return False

    with pytest.raises(KeyError, match=r"the predicate .*never matched no node among the tree's"):
        surgery.intermediates(tree, {}, never, X_TF)
    with pytest.raises(KeyError, match="matched 2 nodes"):
        surgery.get(tree, "blocks/*")
    with pytest.raises(TypeError, match="found int"):
        surgery.paths(tree, 3)
    with pytest.raises(TypeError, match="expected a module"):
        surgery.replace(tree, "head", 3.0)
    with pytest.raises(TypeError, match="fn must be a callable"):
        surgery.wrap(tree, "head", "not a function")
    with pytest.raises(ValueError, match="invalid path"):
        surgery.get(tree, ("blocks", ""))


# ---------------------------------------------------------------- weight tying


@hax.organized_apply
def tied_lm_apply(org, tokens):
    h = org.body(org.embed(tokens))
    return h @ org.embed.tree["params"]["weight"].T


@hax.organized_init(tied_lm_apply)
def TiedLM(org, vocab, dim):
    org.embed = nn.Embedding(vocab, dim)
    org.body = nn.Sequential(nn.Linear(dim, dim), nn.GELU())


def test_weight_tying_one_leaf_through_grad_surgery_and_checkpoint(tmp_path):
    tree, config = _tied_lm(0)
    tokens = jnp.array([[1, 2, 3], [4, 5, 6]])
    assert [k for k in leaves(tree) if "embed" in k] == ["embed/params/weight"]

    # The one leaf gets the gradient of both uses: compare with the two uses untied.
    w = tree["submodules"]["embed"]["params"]["weight"]

    def untied(w_in, w_out):
        h = by_hand(tree, config, ["body"], w_in[tokens])
        return jnp.sum(jnp.tanh(h @ w_out.T))

    def tied(w):
        t = hax.set_subtree(tree, "embed", {**tree["submodules"]["embed"], "params": {"weight": w}})
        return jnp.sum(jnp.tanh(hax.apply_tree(t, config, tokens)[1]))

    grads = jax.jit(
        lambda w: (jax.grad(tied)(w), jax.grad(untied, argnums=(0, 1))(w, w)),
        compiler_options=FAST_COMPILE,
    )
    g_tied, (g_in, g_out) = grads(w)
    np.testing.assert_allclose(g_tied, g_in + g_out, rtol=1e-5, atol=1e-6)

    # Surgery elsewhere keeps the tie; freezing the embedding freezes both uses.
    edited, _ = surgery.insert_after(tree, "body", Scale(2.0))
    edited = surgery.freeze(edited, "embed")
    assert [k for k in leaves(edited) if "embed" in k] == ["embed/params/weight"]
    assert surgery.trainable_mask(edited, flat=True)["embed/params/weight"] is False

    @functools.partial(hax.jit, compiler_options=FAST_COMPILE)
    def case(tokens):
        out = [hax.apply_tree(t, config, tokens)[1] for t in (tree, edited)]
        return out, by_hand(tree, config, ["embed", "body"], tokens)

    (out, out_edited), h = case(tokens)
    np.testing.assert_allclose(out, h @ w.T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out_edited, 2 * (h @ w.T), rtol=1e-5, atol=1e-6)

    checkpoint = pytest.importorskip("hax.checkpoint")
    checkpoint.save(tmp_path / "lm.safetensors", (edited, config))
    fresh, _ = surgery.insert_after(_tied_lm(1)[0], "body", Scale(2.0))
    with pytest.warns(UserWarning, match=r"frozen nodes \['embed'\]"):  # like's aux is kept
        loaded, _ = checkpoint.load(tmp_path / "lm.safetensors", like=(fresh, config))
    assert_trees_equal(hax.filter_keys(loaded, "params"), hax.filter_keys(edited, "params"))
    np.testing.assert_allclose(outputs([loaded], config, tokens)[0], out_edited, rtol=1e-5)
    saved_aux = checkpoint.read_info(tmp_path / "lm.safetensors").nodes["embed"].aux
    assert saved_aux["frozen"] is True  # the flag is in the file's metadata


def _tied_lm(seed):
    with hax.rng_context(seed):
        return TiedLM(8, 8)
