"""`hax.jit`'s generated fast path: a call matches the last compiled entry only when its
structure and every static value are exactly the same; anything else is noticed."""

import collections
import gc
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import hax
from hax import _jit, _pytree_code, nn


@pytest.fixture(autouse=True, params=["c", "python"])
def implementation(request, monkeypatch):
    """Every test here runs on both matchers and builders: `hax._fastpath` (C) where it
    is built, and the generated Python code (what an install without a compiler uses)."""
    if request.param == "c" and _pytree_code.NATIVE is None:
        pytest.skip("hax._fastpath is not built here (no C compiler at install)")
    if request.param == "python":
        monkeypatch.setattr(_pytree_code, "NATIVE", None)
    return request.param


class Counted:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def warm(f, *args, **kwargs):
    """Call three times, so that the entry has its generated matcher and builder."""
    for _ in range(3):
        out = f(*args, **kwargs)
    assert f._recent and f._recent[0].match is not None
    return out


def on_fast_path(f, *args, **kwargs):
    """Call `f` with the generic path turned off: the call must match a compiled entry
    (a fast path that never matches would still be correct, only slow)."""

    def refuse(*_, **__):
        raise AssertionError("the call left hax.jit's fast path")

    f._call_generic = refuse
    try:
        return f(*args, **kwargs)
    finally:
        del f._call_generic


def scaled(tree, config, x):
    params, rest = hax.split_tree(tree, ["params"])
    factor = config["factor"]
    new = jax.tree.map(lambda p: p * factor, params)
    return hax.merge_trees(new, rest), hax.apply_tree(tree, config, x)[1]


def model():
    with hax.rng_context(0):
        return nn.Sequential(*[nn.Linear(3, 3) for _ in range(6)])


@pytest.mark.debug_off
def test_feedback_loop_stays_on_one_trace_and_matches_eager():
    tree, _ = model()
    config = {"factor": 0.5}
    counted = Counted(scaled)
    f = hax.jit(counted)
    x = jnp.ones((2, 3))
    eager = tree
    for _ in range(6):
        tree, y = f(tree, config, x)
        eager, y_ref = scaled(eager, config, x)
        np.testing.assert_allclose(y, y_ref, rtol=1e-6)
    assert counted.calls == 1
    for (na, a), (nb, b) in zip(hax.named_leaves(tree), hax.named_leaves(eager), strict=True):
        assert na == nb
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert hax.is_structure_tree(tree) and type(tree["submodules"]["0"]["aux"]) is dict


@pytest.mark.debug_off
def test_mutating_the_fed_back_tree_in_place_is_noticed():
    tree, _ = model()
    config = {"factor": 1.0}
    counted = Counted(lambda t, c, x: hax.apply_tree(t, c, x))
    f = hax.jit(counted)
    x = jnp.ones((2, 3))
    warm(f, tree, config, x)
    # a new array in place: used, no retrace
    first = tree["submodules"]["0"]
    first["params"]["bias"] = first["params"]["bias"] + 1.0
    _, y = f(tree, config, x)
    np.testing.assert_allclose(y, hax.apply_tree(tree, config, x)[1], rtol=1e-6)
    assert counted.calls == 1
    # an aux value changed in place: a new entry
    first["aux"]["bias"] = True  # the same value: still the same entry
    f(tree, config, x)
    assert counted.calls == 1
    first["aux"]["note"] = "new key"
    f(tree, config, x)
    assert counted.calls == 2
    del first["aux"]["note"]
    f(tree, config, x)
    assert counted.calls == 2  # back to the first entry
    # a config value of another type: a new entry
    f(tree, {"factor": 1}, x)
    assert counted.calls == 3


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t["submodules"].__setitem__("0", collections.OrderedDict(t["submodules"]["0"])),
        lambda t: t["submodules"]["1"]["buffers"].__setitem__("extra", jnp.zeros(1)),
        lambda t: t["submodules"]["2"]["params"].pop("bias"),
        lambda t: t["submodules"]["3"].__setitem__("apply", nn.identity_apply),
        lambda t: t["submodules"]["4"]["params"].__setitem__("bias", 1.0),
        lambda t: t["submodules"]["5"]["params"].__setitem__("bias", np.zeros(3, np.float32)),
    ],
)
def test_every_kind_of_change_leaves_the_fast_path(change):
    tree, _ = model()
    seen = []

    def fn(t):
        seen.append(1)
        return jax.tree.map(lambda a: a, t)

    f = hax.jit(fn)
    warm(f, tree)
    calls = len(seen)
    change(tree)
    out = f(tree)
    assert jax.tree.structure(out) == jax.tree.structure(jax.tree.map(lambda a: a, tree))
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(tree), strict=True):
        if isinstance(b, jax.Array | np.ndarray):
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b and type(a) is type(b)
    if isinstance(tree["submodules"]["5"]["params"]["bias"], np.ndarray):
        assert len(seen) == calls  # NumPy where JAX arrays were: the same entry
    else:
        assert len(seen) == calls + 1


def test_nan_static_reuses_its_trace():
    counted = Counted(lambda x, s: x * 2)
    f = hax.jit(counted)
    for _ in range(4):
        f(jnp.ones(2), float("nan"))  # a new NaN object each call
    f(jnp.ones(2), (1.0, float("nan")))
    f(jnp.ones(2), (1.0, float("nan")))
    assert counted.calls == 2


def test_compiled_entries_are_bounded():
    f = hax.jit(lambda x, s: x + s)
    for s in range(_jit.MAX_ENTRIES + 10):
        f(jnp.ones(1), s)
    assert len(f._entries) == _jit.MAX_ENTRIES
    np.testing.assert_allclose(f(jnp.ones(1), 0), [1.0])  # evicted: traced again, still right


def test_correctness_does_not_depend_on_any_global_table():
    """Before, array masks came from a global table cleared when full: a new input
    shape for a compiled function after ~4,100 distinct structures raised KeyError."""
    f = hax.jit(lambda t, x: hax.apply_tree(t, {}, x))
    tree, _ = nn.Linear(3, 2, rng=0)
    f(tree, jnp.ones(3))
    for n in range(4200):  # equal values under one key are compared by their static keys
        hax.merge_configs({"k": [0] * n}, {"k": [0] * n})
    _, y = f(tree, jnp.ones((4, 3)))
    assert y.shape == (4, 2)


def test_donation_and_static_argnames_on_the_fast_path():
    calls = []

    def step(state, lr, x):
        calls.append(lr)
        return {k: v - lr * x for k, v in state.items()}

    f = hax.jit(step, donate_argnums=0, static_argnames="lr")
    state = {"a": jnp.ones(3), "b": jnp.zeros(3)}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*donat.*")
        for i in range(5):
            state = f(state, 0.5, jnp.ones(3)) if i % 2 else f(state, lr=0.5, x=jnp.ones(3))
    np.testing.assert_allclose(state["a"], np.full(3, 1.0 - 2.5))
    assert calls == [0.5]
    state = on_fast_path(f, state, 0.5, jnp.ones(3))
    state = on_fast_path(f, state, lr=0.5, x=jnp.ones(3))
    np.testing.assert_allclose(state["a"], np.full(3, 1.0 - 3.5))
    f(state, 0.25, jnp.ones(3))
    assert calls == [0.5, 0.25]


# -- random pytrees: the fast path gives what the generic path gives --------------

Pair = collections.namedtuple("Pair", ["left", "right"])

_statics = st.one_of(
    st.booleans(),
    st.integers(-3, 300),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from(["a", "b", "relu"]),
    st.none(),
    st.tuples(st.integers(0, 2), st.booleans()),
)
_arrays = st.integers(1, 3).map(lambda n: jnp.arange(n, dtype=jnp.float32))
_leaves = st.one_of(_statics, _arrays)
_trees = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.sampled_from(["p", "q", "0", "10", "2"]), inner, max_size=4),
        st.builds(Pair, inner, inner),  # a registered node that jax flattens itself
    ),
    max_leaves=12,
)


def _equal(a, b):
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    if ta != tb or len(la) != len(lb):
        return False
    for x, y in zip(la, lb, strict=True):
        if isinstance(y, jax.Array):
            if not isinstance(x, jax.Array) or not np.array_equal(x, y):
                return False
        elif not (type(x) is type(y) and (x == y or (x != x and y != y))):
            return False
    return True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=_trees, second=_trees)
def test_random_trees_round_trip_on_both_paths(first, second):
    f = hax.jit(lambda t: t)
    for tree in (first, first, first, second, first, second, second):
        assert _equal(f(tree), tree)


def test_deep_chain_of_nodes():
    """390 nodes nest 781 dicts deep: about as deep as jax's pytree functions go."""
    node = hax.fill_tree({"params": {"w": jnp.ones(2)}, "apply": nn.identity_apply})
    for _ in range(390):
        node = hax.fill_tree({"submodules": {"c": node}, "apply": nn.identity_apply})
    f = hax.jit(lambda t: jax.tree.map(lambda a: a * 2 if isinstance(a, jax.Array) else a, t))
    warm(f, node)
    out = on_fast_path(f, node)
    leaf = out
    for _ in range(390):
        leaf = leaf["submodules"]["c"]
    np.testing.assert_allclose(leaf["params"]["w"], [2.0, 2.0])
    assert not math.isnan(float(leaf["params"]["w"][0]))


def test_the_collector_is_paused_only_during_a_fast_call():
    """The fast path pauses the garbage collector while it builds its result (an acyclic
    tree: collecting then finds nothing), and leaves it as it found it: on after a call,
    off after a call when the user had turned it off, on after a call that raised."""
    seen = []

    def probe(tree, config, x):
        return hax.apply_tree(tree, config, x)[1]

    tree, config = model()
    f = hax.jit(probe)
    x = jnp.ones((2, 3))
    warm(f, tree, config, x)
    assert gc.isenabled()
    seen.append(f(tree, config, x))
    assert gc.isenabled()
    gc.disable()
    try:
        seen.append(f(tree, config, x))
        assert not gc.isenabled()
    finally:
        gc.enable()
    entry = f._recent[0]
    original = entry.compiled

    def fails(*groups):
        assert not gc.isenabled()  # paused while the compiled function runs
        raise RuntimeError("device lost")

    entry.compiled = fails
    with pytest.raises(RuntimeError, match="device lost"):
        f(tree, config, x)
    assert gc.isenabled()
    entry.compiled = original
    np.testing.assert_array_equal(seen[0], seen[1])


@pytest.mark.parametrize(
    "leaf",
    [
        lambda: jax.random.key(0),  # a model with Dropout keeps one in its buffers
        lambda: np.ones(3, np.float32),
        lambda: np.float32(2.0),
        lambda: jnp.ones(3, jnp.bfloat16),
    ],
    ids=["prng-key", "numpy-array", "numpy-scalar", "bfloat16"],
)
def test_every_kind_of_array_leaf_stays_on_the_fast_path(leaf):
    tree, config = nn.Sequential(nn.Linear(3, 3, rng=0), nn.Dropout(0.1, rng=1))
    f = hax.jit(lambda t, c, x, extra: (hax.apply_tree(t, c, x), {"extra": extra}))
    x, extra = jnp.ones((2, 3)), leaf()
    warm(f, tree, config, x, extra)
    (new_tree, y), _ = on_fast_path(f, tree, config, x, extra)
    _, y_eager = hax.apply_tree(tree, config, x)
    np.testing.assert_allclose(y, y_eager, rtol=1e-6)
    _, out = on_fast_path(f, new_tree, config, x, extra)  # the result, fed back, matches
    assert jax.tree.structure(out) == jax.tree.structure({"extra": extra})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=_trees)
def test_a_random_tree_called_again_takes_the_fast_path(tree):
    f = hax.jit(lambda t: t)
    warm(f, tree)
    assert _equal(on_fast_path(f, tree), tree)


class _Meddler:
    """A static value whose `==` empties the dict it sits in (a hostile `__eq__`)."""

    def __init__(self, home):
        self.home = home

    def __eq__(self, other):
        self.home.clear()
        return isinstance(other, _Meddler)

    def __hash__(self):
        return 0


def test_a_static_that_mutates_the_arguments_while_compared_is_survived():
    """The matcher holds what it reads: an `==` that empties the dict being matched
    neither crashes the interpreter nor leaks a half-matched call."""
    f = hax.jit(lambda tree: tree["w"] * 2)
    for _ in range(3):
        tree = {"w": jnp.ones(2), "z": None}
        tree["m"] = _Meddler(tree)
        out = f(tree)
    tree = {"w": jnp.ones(2), "z": None}
    tree["m"] = _Meddler(tree)  # equal to the entry's, not the same object: `==` runs
    out = f(tree)
    np.testing.assert_allclose(out, [2.0, 2.0])


def _program_nodes(prog):
    """The distinct tuples of a program (its size in memory, shared parts once)."""
    seen, stack = {}, [prog]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen[id(node)] = node
        stack.extend(x for part in node if type(part) is tuple for x in part if type(x) is tuple)
    return len(seen)


@pytest.mark.parametrize("build", [False, True])
def test_a_stack_of_equal_layers_is_one_layer_in_the_program(implementation, build):
    """The C walk reads its program as it reads the tree: equal layers share one
    subprogram, so a deep stack does not double the memory the walk touches."""
    if implementation == "python":
        pytest.skip("programs are what the C fast path reads")
    sizes = {}
    for n in (5, 200):
        with hax.rng_context(0):
            tree, _ = nn.Sequential(*[nn.Linear(2, 2) for _ in range(n)])
        arrays, split = hax._static.partition(tree)
        slots = None if build else [1] * len(arrays)
        prog = _pytree_code.program(split.treedef, split.is_array, split.statics.values, slots)
        sizes[n] = _program_nodes(prog)
    assert sizes[200] == sizes[5]


@pytest.mark.parametrize(
    "slot, sizes, message",
    [(2, (0, 1), "slot is 0 or 1"), (1, (0, 0), "more arrays"), (1, (0, 2), "fewer arrays")],
)
def test_a_program_that_disagrees_with_its_sizes_is_an_error_not_a_crash(
    implementation, slot, sizes, message
):
    """The C matcher fills lists presized from the program's array counts: a program
    whose slots or counts are wrong raises, and never writes outside a list."""
    if implementation == "python":
        pytest.skip("programs are what the C fast path reads")
    native = _pytree_code.NATIVE
    context = (
        tuple(_pytree_code._array_types()),
        hax._static.is_array,
        hax._static.same,
        jax.tree_util.default_registry.flatten,
        "value",
        *sizes,
    )
    args_prog = (_pytree_code._TUPLE, ((_pytree_code._ARRAY, slot),))
    kwargs_prog = (_pytree_code._DICT, (), ())
    with pytest.raises(SystemError, match=message):
        native.match(args_prog, kwargs_prog, context, (jnp.ones(2),), {})
