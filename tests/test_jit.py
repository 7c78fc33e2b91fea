"""Tests for `hax.jit`."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_trees_equal

import hax
from hax import nn


class Counted:
    """Wrap `fn` and count its Python calls (= traces under jit)."""

    def __init__(self, fn):
        self.fn = fn
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def run_module(tree, config, x):
    """The canonical `(tree, config, x) -> (tree, out)` function."""
    return hax.apply_tree(tree, config, x)


def counted_jit(fn=run_module, **kwargs):
    counted = Counted(fn)

    # hax.jit needs a signature for static/donated names: forward it explicitly.
    def wrapper(tree, config, x):
        return counted(tree, config, x)

    return hax.jit(wrapper, **kwargs), counted


def mlp(seed=0, p=0.5):
    with hax.rng_context(seed):
        return hax.nn.Sequential(hax.nn.Linear(3, 4), hax.nn.Dropout(p), hax.nn.Linear(4, 2))


X = jnp.arange(6.0).reshape(2, 3) / 6


def test_output_equals_eager():
    tree, config = mlp()
    f, _ = counted_jit()
    new_tree, y = f(tree, config, X)
    ref_tree, y_ref = run_module(tree, config, X)
    np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=1e-6)
    assert_trees_equal(new_tree, ref_tree)
    for (_, a), (_, b) in zip(hax.named_leaves(new_tree), hax.named_leaves(tree), strict=True):
        assert isinstance(a, jax.Array) and a.shape == b.shape and a.dtype == b.dtype


def test_eval_mode_output_equals_eager():
    tree, _ = mlp()
    config = {"train_mode": False}
    f, _ = counted_jit()
    _, y = f(tree, config, X)
    np.testing.assert_allclose(y, run_module(tree, config, X)[1], rtol=1e-6, atol=1e-6)


def test_traces_once_for_trees_of_equal_structure():
    f, counted = counted_jit()
    (t0, config), (t1, _) = mlp(0), mlp(1)
    assert not np.array_equal(
        t0["submodules"]["0"]["params"]["weight"], t1["submodules"]["0"]["params"]["weight"]
    )
    _, y0 = f(t0, config, X)
    _, y1 = f(t1, config, X)
    assert counted.calls == 1
    # the second call really used the second tree's arrays
    np.testing.assert_allclose(y1, run_module(t1, config, X)[1], rtol=1e-6, atol=1e-6)
    assert not np.allclose(y0, y1)


def test_threading_state_through_calls_does_not_retrace():
    f, counted = counted_jit()
    tree, config = mlp()
    keys = []
    for _ in range(3):
        tree, _ = f(tree, config, X)
        keys.append(np.asarray(jax.random.key_data(tree["submodules"]["1"]["buffers"]["rng"])))
    assert counted.calls == 1
    assert not np.array_equal(keys[0], keys[1]) and not np.array_equal(keys[1], keys[2])


def test_retraces_when_aux_changes():
    f, counted = counted_jit()
    tree, config = mlp(p=0.5)
    f(tree, config, X)
    f(mlp(p=0.25)[0], config, X)
    assert counted.calls == 2
    f(mlp(seed=3, p=0.25)[0], config, X)
    assert counted.calls == 2


def test_retraces_when_config_changes():
    f, counted = counted_jit()
    tree, _config = mlp()
    f(tree, {"train_mode": True}, X)
    _, y_eval = f(tree, {"train_mode": False}, X)
    assert counted.calls == 2
    np.testing.assert_allclose(y_eval, run_module(tree, {"train_mode": False}, X)[1], rtol=1e-6)
    f(tree, {"train_mode": False}, X)
    assert counted.calls == 2


def test_retraces_when_shape_or_dtype_changes():
    f, counted = counted_jit()
    tree, config = mlp()
    f(tree, config, X)
    f(tree, config, jnp.ones((5, 3)))
    assert counted.calls == 2
    f(tree, config, jnp.ones((5, 3), jnp.float16))
    assert counted.calls == 3


def test_no_retrace_for_new_array_values():
    f, counted = counted_jit()
    tree, config = mlp()
    outs = [f(tree, config, X * k)[1] for k in (1.0, 2.0, 3.0)]
    assert counted.calls == 1
    assert not np.allclose(outs[0], outs[1])


def test_numpy_arrays_are_traced():
    counted = Counted(lambda x: x * 2)
    f = hax.jit(counted)
    y = f(np.ones(3, np.float32))
    f(np.zeros(3, np.float32))
    assert counted.calls == 1
    assert isinstance(y, jax.Array)
    np.testing.assert_array_equal(y, np.full(3, 2.0))


def test_python_scalars_are_static_jax_scalars_traced():
    seen = []

    def fn(x, s):
        seen.append(s)
        return x * s

    counted = Counted(fn)
    f = hax.jit(counted)
    x = jnp.ones(2)
    np.testing.assert_allclose(f(x, 2.0), [2.0, 2.0])
    np.testing.assert_allclose(f(x, 3.0), [3.0, 3.0])
    assert counted.calls == 2
    assert seen == [2.0, 3.0]  # the Python value itself reached the function
    f(x, 3.0)
    assert counted.calls == 2
    np.testing.assert_allclose(f(x, jnp.asarray(4.0)), [4.0, 4.0])
    np.testing.assert_allclose(f(x, jnp.asarray(5.0)), [5.0, 5.0])
    assert counted.calls == 3
    assert isinstance(seen[-1], jax.core.Tracer)


def test_python_scalar_is_static_even_right_after_an_array_in_its_place():
    seen = []

    def fn(x, s):
        seen.append(type(s))
        return x * s, s

    f = hax.jit(fn)
    x = jnp.ones(2)
    f(x, jnp.asarray(2.0))
    y, s = f(x, 3.0)
    np.testing.assert_allclose(y, [3.0, 3.0])
    assert seen[-1] is float  # the Python value itself reached the function
    assert type(s) is float and s == 3.0  # and came back as itself


def test_bool_and_int_do_not_share_a_trace():
    counted = Counted(lambda x, flag: (x, type(flag).__name__, flag))
    f = hax.jit(counted)
    x = jnp.ones(1)
    _, name_true, v_true = f(x, True)
    _, name_one, v_one = f(x, 1)
    _, name_float, _ = f(x, 1.0)
    assert (name_true, name_one, name_float) == ("bool", "int", "float")
    assert v_true is True and type(v_one) is int
    assert counted.calls == 3


def test_static_values_in_trees_bool_vs_int():
    counted = Counted(lambda t: (t, type(t["aux"]["k"]).__name__))
    f = hax.jit(counted)
    _, a = f(hax.fill_tree({"aux": {"k": True}}))
    _, b = f(hax.fill_tree({"aux": {"k": 1}}))
    assert (a, b) == ("bool", "int")
    assert counted.calls == 2


def test_results_may_contain_trees():
    tree, config = mlp()
    f, _ = counted_jit()
    new_tree, _ = f(tree, config, X)
    assert hax.is_structure_tree(new_tree)
    assert new_tree["apply"] is tree["apply"] is hax.nn.sequential_apply
    for name in ("0", "1", "2"):
        child, new_child = tree["submodules"][name], new_tree["submodules"][name]
        assert new_child["apply"] is child["apply"]
        assert new_child["aux"] == child["aux"]
        assert type(new_child["aux"]) is dict
    # static outputs of other kinds come back as they were
    g = hax.jit(lambda t, x: (t["aux"], x.sum(), "label", None, (1, 2.5)))
    aux, s, label, none, tup = g(tree["submodules"]["0"], X)
    assert aux == {"in_features": 3, "out_features": 4, "bias": True}
    assert (label, none, tup) == ("label", None, (1, 2.5))
    assert float(s) == pytest.approx(float(X.sum()))


def test_config_and_modules_built_inside():
    # results may be built inside the function, e.g. a fresh module from arrays
    def build(w):
        tree = hax.fill_tree(
            {"params": {"weight": w, "bias": w[:, 0]}, "apply": hax.nn.linear_apply}
        )
        tree["aux"] = {"in_features": 2, "out_features": 2, "bias": True}
        return tree, {"train_mode": False}

    tree, config = hax.jit(build)(jnp.eye(2))
    assert tree["apply"] is hax.nn.linear_apply
    assert config == {"train_mode": False}
    _, y = hax.apply_tree(tree, config, jnp.ones(2))
    np.testing.assert_allclose(y, [2.0, 1.0])


def test_static_argnames_positional_and_keyword():
    class Activation:
        """A hashable, non-array static object compared by value."""

        def __init__(self, name):
            self.name = name

        def __eq__(self, other):
            return isinstance(other, Activation) and other.name == self.name

        def __hash__(self):
            return hash(self.name)

    calls = []

    def fn(x, act):
        calls.append(act.name)
        return getattr(jax.nn, act.name)(x)

    f = hax.jit(fn, static_argnames="act")
    x = jnp.linspace(-1.0, 1.0, 5)
    np.testing.assert_allclose(f(x, Activation("relu")), jax.nn.relu(x))
    np.testing.assert_allclose(f(x, act=Activation("relu")), jax.nn.relu(x))
    np.testing.assert_allclose(f(x=x, act=Activation("relu")), jax.nn.relu(x))
    assert calls == ["relu"]  # equal objects, positional or keyword: one trace
    np.testing.assert_allclose(f(x, act=Activation("tanh")), jnp.tanh(x), rtol=1e-6)
    assert calls == ["relu", "tanh"]


def test_static_argnames_objects_compared_by_identity():
    # an object without __eq__ is compared by identity: a new one retraces
    class Opaque:
        pass

    counted = Counted(lambda x, o: x + 1)

    def fn(x, o):
        return counted(x, o)

    f = hax.jit(fn, static_argnames=("o",))
    o = Opaque()
    f(jnp.ones(1), o)
    f(jnp.ones(1), o)
    assert counted.calls == 1
    f(jnp.ones(1), Opaque())
    assert counted.calls == 2


def test_static_argnames_bool_vs_int_do_not_share_a_trace():
    """Regression: _Hashed compared static_argnames values with == only (07817e0)."""

    def fn(x, flag):
        return x * (2.0 if isinstance(flag, bool) else 3.0)

    f = hax.jit(fn, static_argnames="flag")
    x = jnp.ones(1)
    np.testing.assert_allclose(f(x, True), [2.0])
    np.testing.assert_allclose(f(x, 1), [3.0])


def test_unknown_names_raise():
    def fn(tree, config, x):
        return tree, x

    with pytest.raises(ValueError, match="nope"):
        hax.jit(fn, static_argnames="nope")
    with pytest.raises(ValueError, match="nope"):
        hax.jit(fn, donate_argnames=["nope"])
    with pytest.raises(ValueError, match="donate_argnums"):
        hax.jit(fn, donate_argnums=5)
    with pytest.raises(ValueError, match="config"):
        hax.jit(fn, static_argnames="config", donate_argnames="config")


def test_shardings_apply_to_every_array_and_pytrees_of_them_are_refused():
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    tree, config = mlp()
    f = hax.jit(run_module, in_shardings=device, out_shardings=device)
    new_tree, y = f(tree, config, X)
    np.testing.assert_allclose(y, run_module(tree, config, X)[1], rtol=1e-6)
    assert all(leaf.sharding == device for _, leaf in hax.named_leaves(new_tree))
    for name in ("in_shardings", "out_shardings"):
        with pytest.raises(TypeError, match=f"{name}.*one Sharding"):
            hax.jit(run_module, **{name: ({"params": device}, None, device)})


@pytest.fixture
def no_donation_warning():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*donat.*")
        yield


@pytest.mark.usefixtures("no_donation_warning")
@pytest.mark.parametrize("donate", [{"donate_argnums": 0}, {"donate_argnames": "tree"}])
def test_donation_still_computes(donate):
    tree, config = mlp()
    ref_tree, y_ref = run_module(*mlp(), X)  # an identical copy: `tree` may be donated
    f, counted = counted_jit(**donate)
    new_tree, y = f(tree, config, X)
    np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=1e-6)
    assert_trees_equal(new_tree, ref_tree)
    assert not X.is_deleted()  # only the tree is donated
    # thread the donated state on: keeps working, and the same trace is reused
    newer_tree, _ = f(new_tree, config, X)
    assert counted.calls == 1
    assert hax.is_structure_tree(newer_tree)


@pytest.mark.usefixtures("no_donation_warning")
def test_donate_argnums_and_static_argnames_together():
    def step(state, lr, x):
        return {k: v - lr * x for k, v in state.items()}

    f = hax.jit(step, donate_argnums=0, static_argnames="lr")
    state = {"a": jnp.ones(3), "b": jnp.zeros(3)}
    new = f(state, 0.5, jnp.ones(3))
    np.testing.assert_allclose(new["a"], np.full(3, 0.5))
    np.testing.assert_allclose(new["b"], np.full(3, -0.5))
    new = f(new, lr=0.5, x=jnp.ones(3))
    np.testing.assert_allclose(new["a"], np.zeros(3))


def test_decorator_forms():
    @hax.jit
    def plain(tree, config, x):
        return hax.apply_tree(tree, config, x)

    @hax.jit(donate_argnums=0)
    def donating(tree, config, x):
        return hax.apply_tree(tree, config, x)

    @hax.jit()
    def empty_call(tree, config, x):
        return hax.apply_tree(tree, config, x)

    tree, config = hax.nn.Linear(3, 2, rng=0)
    _, y_ref = hax.apply_tree(tree, config, X)
    assert isinstance(plain, hax.JitFunction)
    assert plain.__name__ == "plain"
    np.testing.assert_allclose(plain(tree, config, X)[1], y_ref, rtol=1e-6)
    np.testing.assert_allclose(empty_call(tree, config, X)[1], y_ref, rtol=1e-6)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*donat.*")
        tree2, _ = hax.nn.Linear(3, 2, rng=0)
        np.testing.assert_allclose(donating(tree2, config, X)[1], y_ref, rtol=1e-6)


def test_lower_and_compile():
    tree, config = mlp()
    f, counted = counted_jit()
    lowered = f.lower(tree, config, X)
    compiled = lowered.compile()
    assert compiled is not None
    assert hasattr(lowered, "as_text") and "dot" in lowered.as_text()
    # lowering traced the function; calling with the same key reuses that trace
    calls = counted.calls
    f(tree, config, X)
    assert counted.calls == calls


def test_composes_with_grad_vmap_and_jax_jit():
    tree, config = hax.nn.Linear(3, 2, rng=0)
    f = hax.jit(run_module)
    x = jnp.arange(3.0)

    def loss(params):
        return f({**tree, "params": params}, config, x)[1].sum()

    grads = jax.grad(loss)(tree["params"])
    np.testing.assert_allclose(grads["weight"], np.tile(np.arange(3.0), (2, 1)))
    np.testing.assert_allclose(grads["bias"], np.ones(2))
    xs = jnp.stack([x, 2 * x])
    ys = jax.vmap(lambda x: f(tree, config, x)[1])(xs)
    np.testing.assert_allclose(ys[1], run_module(tree, config, 2 * x)[1], rtol=1e-6)
    np.testing.assert_allclose(jax.jit(loss)(tree["params"]), loss(tree["params"]), rtol=1e-6)


def test_static_result_that_depends_on_shapes_stays_correct():
    """jax retraces one compiled entry for new shapes; a static result that differs
    between those traces (here a Python int from the shape) must still come back right."""
    calls = []

    @hax.jit
    def f(x):
        calls.append(x.shape)
        return {"n": x.shape[0], "y": x * 2}

    for n in (2, 3, 2, 3, 5, 2):
        out = f(jnp.ones(n))
        assert out["n"] == n
        assert out["y"].shape == (n,)
        assert type(out["n"]) is int


def test_alternating_structures_reuse_their_traces():
    count = []

    @hax.jit
    def f(tree, config, x):
        count.append(1)
        return hax.apply_tree(tree, config, x)

    a, ca = nn.Linear(3, 2, rng=0)
    b, cb = nn.Linear(3, 2, bias=False, rng=1)
    x = jnp.ones((4, 3))
    for _ in range(3):
        ta, ya = f(a, ca, x)
        tb, yb = f(b, cb, x)
        np.testing.assert_allclose(ya, x @ a["params"]["weight"].T + a["params"]["bias"], rtol=1e-6)
        np.testing.assert_allclose(yb, x @ b["params"]["weight"].T, rtol=1e-6)
        assert ta["aux"]["bias"] is True and tb["aux"]["bias"] is False
    assert len(count) == 2


def _make_closure_module():
    def closure_apply(tree, config, x):
        return tree, x * 2

    return hax.fill_tree({"apply": closure_apply})


@pytest.mark.debug_off
def test_debug_mode_warns_when_a_recreated_apply_forces_a_retrace():
    @hax.jit
    def run(tree, x):
        return hax.apply_tree(tree, {}, x)

    x = jnp.ones(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # outside debug mode: silent
        run(_make_closure_module(), x)
        run(_make_closure_module(), x)
    with hax.debug():
        run(_make_closure_module(), x)
        with pytest.warns(UserWarning, match="closure_apply.*module level"):
            run(_make_closure_module(), x)


def test_fed_back_results_take_the_identity_fast_path_and_changes_still_count():
    """A loop feeding results back matches by identity; an equal-valued but different
    static (True for 1), a new value, or a non-array at an array position still goes
    through the full comparison."""
    counted = Counted(lambda t, x: (t, x * t["aux"]["k"], type(x).__name__))
    f = hax.jit(counted)
    tree = hax.fill_tree({"aux": {"k": 1}})
    x = jnp.ones(2)
    for _ in range(3):
        tree, _, _ = f(tree, x)
    assert counted.calls == 1
    f(hax.fill_tree({"aux": {"k": True}}), x)
    assert counted.calls == 2
    _, y_two, _ = f(tree, x)  # back to the first entry: not retraced
    assert counted.calls == 2
    np.testing.assert_allclose(y_two, [1.0, 1.0])
    _, _, kind = f(tree, "text")  # a str where an array was: static, not an error
    assert kind == "str" and counted.calls == 3
    f(tree, x)
    _, y_scalar, _ = f(tree, 2.0)  # a Python scalar where an array was: same numbers
    np.testing.assert_allclose(y_scalar, 2.0)


@pytest.mark.parametrize("by_name", [False, True])
def test_an_unhashable_static_value_is_named_in_the_error(by_name):
    f = hax.jit(lambda x, s: x, static_argnames="s" if by_name else None)
    with pytest.raises(TypeError, match=r"must be hashable, found set\. Pass it as an array"):
        f(jnp.ones(2), s={1, 2})


def test_numpy_leaves_share_the_entry_of_the_jax_arrays_returned_for_them():
    tree, config = nn.Linear(3, 2, rng=0)
    traces = []

    @hax.jit
    def f(tree, x):
        traces.append(1)
        return hax.apply_tree(tree, config, x)

    as_numpy = {**tree, "params": {k: np.asarray(v) for k, v in tree["params"].items()}}
    new_tree, y = f(as_numpy, np.ones(3, np.float32))  # NumPy in, JAX arrays out
    new_tree, y2 = f(new_tree, jnp.ones(3))  # fed back: the same compiled code
    f(as_numpy, jnp.ones(3))
    assert len(traces) == 1
    np.testing.assert_array_equal(np.asarray(y), np.asarray(y2))
