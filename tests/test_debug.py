"""Tests for debug mode (`hax.debug()`, `HAX_DEBUG`): checks at every apply, and
nothing at all on the hot path when it is off."""

import os
import subprocess
import sys
import textwrap
from typing import Any

import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest
from conftest import assert_trees_equal
from jaxtyping import Array, Float

import hax
import hax._debug
import hax._validate
import hax.schema._check
import hax.schema._node
import hax.schema._precheck
from hax import GlobalConfig, StructureTree, nn

# ---------------------------------------------------------------- helpers


def leaf_node(apply, **kinds):
    tree = {"params": {}, "buffers": {}, "aux": {}, "apply": apply, "submodules": {}}
    tree.update(kinds)
    return tree


def broken_bias_model(seed=0):
    """Sequential(Linear(3, 4), Linear(4, 2)) whose second bias has shape (1,): wrong
    by the spec, yet it broadcasts fine numerically."""
    with hax.rng_context(seed):
        tree, config = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    tree["submodules"]["1"]["params"]["bias"] = jnp.full((1,), 10.0)
    return tree, config


def expected_output(tree, x):
    l0, l1 = tree["submodules"]["0"]["params"], tree["submodules"]["1"]["params"]
    h = x @ l0["weight"].T + l0["bias"]
    return h @ l1["weight"].T + l1["bias"]


def forward(tree, config, x):
    return hax.apply_tree(tree, config, x)


def assert_names_bias(err, path="1"):
    assert any(p.path == path and p.key == "params.bias" for p in err.errors), err.errors
    assert f"{path}: params.bias" in str(err)


# ---------------------------------------------------------------- the hot path is clean


@pytest.mark.debug_off
def test_hot_path_does_not_validate():
    tree, config = broken_bias_model()
    x = jnp.arange(6.0).reshape(2, 3)
    with pytest.raises(hax.ValidationError) as info:
        hax.validate(tree, config)
    assert_names_bias(info.value)

    expected = expected_output(tree, x)
    assert expected.shape == (2, 2)

    _, y = hax.apply_tree(tree, config, x)
    np.testing.assert_allclose(y, expected, rtol=1e-6)

    state, apply = hax.bind_module(tree, config)
    _, y = jax.jit(apply)(state, x)
    np.testing.assert_allclose(y, expected, rtol=1e-6)

    _, y = hax.jit(forward)(tree, config, x)
    np.testing.assert_allclose(y, expected, rtol=1e-6)


@pytest.mark.debug_off
def test_debug_mode_rejects_the_same_calls():
    tree, config = broken_bias_model(seed=1)
    x = jnp.ones((2, 3))
    jitted = hax.jit(forward)
    jitted(tree, config, x)  # compiled with checks off: fine
    with hax.debug():
        with pytest.raises(hax.ValidationError) as info:
            hax.apply_tree(tree, config, x)
        assert_names_bias(info.value)
        with pytest.raises(hax.ValidationError) as info:
            jitted(tree, config, x)
        assert_names_bias(info.value)
        with pytest.raises(hax.ValidationError) as info:
            hax.jit(forward)(tree, config, x)
        assert_names_bias(info.value)
    # Off again: the compiled function runs as before.
    _, y = jitted(tree, config, x)
    np.testing.assert_allclose(y, expected_output(tree, x), rtol=1e-6)


def test_debug_mode_checks_a_jax_jit_built_inside_the_block():
    # A config used nowhere else, so no earlier trace of an equal bound apply exists.
    tree, _ = broken_bias_model(seed=2)
    state, apply = hax.bind_module(tree, {"test": "built_inside_the_block"})
    x = jnp.ones((5, 3))
    with hax.debug(), pytest.raises(hax.ValidationError) as info:
        jax.jit(apply)(state, x)
    assert_names_bias(info.value)
    # Bound applies called eagerly are checked too.
    with hax.debug(), pytest.raises(hax.ValidationError) as info:
        apply(state, x)
    assert_names_bias(info.value)


@pytest.mark.debug_off
def test_debug_mode_checks_a_fresh_jax_jit_after_an_unchecked_trace():
    tree, _ = broken_bias_model(seed=3)
    config = {"test": "fresh_jax_jit_after_an_unchecked_trace"}
    x = jnp.ones((2, 3))
    state0, apply0 = hax.bind_module(tree, config)
    jax.jit(apply0)(state0, x)  # traced with checks off; apply0 stays alive
    with hax.debug():
        state, apply = hax.bind_module(tree, config)
        assert apply is not apply0
        with pytest.raises(hax.ValidationError) as info:
            jax.jit(apply)(state, x)
    assert_names_bias(info.value)
    del apply0


def test_debug_mode_names_the_path_of_deeper_nodes():
    with hax.rng_context(5):
        inner = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
        tree, config = nn.Sequential(nn.Linear(3, 3), inner)
    tree["submodules"]["1"]["submodules"]["1"]["params"]["bias"] = jnp.zeros((1,))
    with hax.debug(), pytest.raises(hax.ValidationError) as info:
        hax.apply_tree(tree, config, jnp.ones(3))
    assert_names_bias(info.value, "1/1")


# ---------------------------------------------------------------- no validation when off


class _CountingAdapter:
    def __init__(self, adapter, calls):
        self._adapter = adapter
        self._calls = calls

    def validate_python(self, *args, **kwargs):
        self._calls.append("NODE_ADAPTER")
        return self._adapter.validate_python(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._adapter, name)


@pytest.fixture
def validation_calls(monkeypatch):
    """Every validation entry point, wherever a hax module imported it, counts its calls."""
    calls = []
    targets = {
        "validate": hax._validate.validate,
        "check_node_spec": hax.schema._check.check_node_spec,
        "checked_apply": hax._debug.checked_apply,
        # The structural check of each node: an exact pre-check, then the pydantic
        # adapter (counted below as NODE_ADAPTER) for nodes it cannot prove valid.
        "node_passes": hax.schema._precheck.node_passes,
    }

    def counting(name, fn):
        def wrapper(*args, **kwargs):
            calls.append(name)
            return fn(*args, **kwargs)

        return wrapper

    wrappers = {id(fn): counting(name, fn) for name, fn in targets.items()}
    adapter = hax.schema._node.NODE_ADAPTER
    patched = 0
    for modname, module in list(sys.modules.items()):
        if modname != "hax" and not modname.startswith("hax."):
            continue
        for attr, value in list(vars(module).items()):
            if id(value) in wrappers and any(value is fn for fn in targets.values()):
                monkeypatch.setattr(module, attr, wrappers[id(value)])
                patched += 1
            elif value is adapter:
                monkeypatch.setattr(module, attr, _CountingAdapter(adapter, calls))
                patched += 1
    assert patched >= 8  # hax.validate, hax._validate, hax.nn.*, hax._module, ...
    return calls


def test_counting_fixture_sees_construction(validation_calls):
    nn.Linear(2, 2, rng=0)
    assert "validate" in validation_calls and "node_passes" in validation_calls


def loss_fn(params, rest, config, x, y):
    new_tree, out = hax.apply_tree(hax.merge_trees(params, rest), config, x)
    return jnp.mean((out - y) ** 2), new_tree


@hax.jit
def train_step(tree, config, x, y):
    params, rest = hax.split_tree(tree, ["params"])
    (loss, new_tree), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest, config, x, y)
    params = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)
    _, rest = hax.split_tree(new_tree, ["params"])
    return hax.merge_trees(params, rest), loss


@pytest.mark.debug_off
def test_jitted_paths_never_validate(validation_calls):
    with hax.rng_context(0):
        tree, config = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.1), nn.Linear(8, 1))
    x = jax.random.normal(jax.random.key(1), (16, 3))
    y = x.sum(axis=1, keepdims=True)
    state, apply = hax.bind_module(tree, config)
    validation_calls.clear()  # construction may validate; what follows must not

    step = jax.jit(apply)
    for _ in range(10):
        state, out = step(state, x)
    assert out.shape == (16, 1)
    assert validation_calls == []

    losses = []
    for _ in range(10):
        tree, loss = train_step(tree, config, x, y)
        losses.append(float(loss))
    assert losses[-1] < losses[0]
    assert validation_calls == []

    # Eager apply_tree and bound applies outside debug mode do not validate either.
    eval_config = {"train_mode": False}  # fewer eager ops to dispatch
    hax.apply_tree(tree, eval_config, x)
    apply.bind_global_config(eval_config)(state, x)
    assert validation_calls == []

    # In debug mode a new trace checks (lowering traces without compiling: faster).
    with hax.debug():
        train_step.lower(tree, config, x, y)
    assert validation_calls.count("checked_apply") == 4  # the Sequential and its 3 children
    assert "validate" in validation_calls and "node_passes" in validation_calls
    validation_calls.clear()
    with hax.debug():
        jax.jit(lambda s, x: apply(s, x)).lower(state, x)  # a new function: a new trace
    assert "checked_apply" in validation_calls and "validate" in validation_calls

    validation_calls.clear()
    tree, _ = train_step(tree, config, x, y)  # back to the trace without checks
    assert validation_calls == []


@pytest.mark.debug_off
def test_apply_tree_off_calls_apply_directly():
    seen = []

    def apply(tree, config, *args, **kwargs):
        seen.append((tree, config, args, kwargs))
        return tree, 0

    tree, config = leaf_node(apply), {"k": 1}
    hax.apply_tree(tree, config, 1, 2, a=3)
    assert len(seen) == 1
    assert seen[0][0] is tree and seen[0][1] is config
    assert seen[0][2:] == ((1, 2), {"a": 3})


# ---------------------------------------------------------------- structural changes


def other_apply(tree, global_config, x):
    return tree, x


def good_apply(tree, global_config, x):
    w = tree["params"]["w"]
    n = tree["buffers"]["n"]
    return {**tree, "params": {"w": w * 2}, "buffers": {"n": n + 1}}, x * w


def changes_aux(tree, global_config, x):
    return {**tree, "aux": {**tree["aux"], "k": 2}}, x


def adds_aux(tree, global_config, x):
    return {**tree, "aux": {**tree["aux"], "new": "v"}}, x


def changes_apply(tree, global_config, x):
    return {**tree, "apply": other_apply}, x


def adds_submodule(tree, global_config, x):
    return {**tree, "submodules": {"new": leaf_node(other_apply)}}, x


def changes_param_shape(tree, global_config, x):
    return {**tree, "params": {"w": tree["params"]["w"][:1]}}, x


def changes_param_dtype(tree, global_config, x):
    return {**tree, "params": {"w": tree["params"]["w"].astype(jnp.float16)}}, x


def changes_buffer_shape(tree, global_config, x):
    return {**tree, "buffers": {"n": jnp.zeros((2,), jnp.int32)}}, x


def drops_param(tree, global_config, x):
    return {**tree, "params": {}}, x


def adds_param(tree, global_config, x):
    return {**tree, "params": {**tree["params"], "v": jnp.ones(3)}}, x


def returns_invalid_tree(tree, global_config, x):
    return {**tree, "params": {"w": [1.0, 2.0, 3.0]}}, x


def misbehaving_model(apply):
    child = leaf_node(
        apply,
        params={"w": jnp.ones(3)},
        buffers={"n": jnp.zeros((), jnp.int32)},
        aux={"k": 1},
    )
    with hax.rng_context(0):
        return nn.Sequential(nn.Linear(3, 3), child)


@pytest.mark.debug_off
@pytest.mark.parametrize(
    ("apply", "key"),
    [
        (changes_aux, "aux.k"),
        (adds_aux, "aux.new"),
        (changes_apply, "apply"),
        (adds_submodule, "submodules"),
        (changes_param_shape, "params.w"),
        (changes_param_dtype, "params.w"),
        (changes_buffer_shape, "buffers.n"),
        (drops_param, "params.w"),
        (adds_param, "params.v"),
        (returns_invalid_tree, "params.w"),
    ],
)
def test_debug_detects_structural_changes(apply, key):
    tree, config = misbehaving_model(apply)
    x = jnp.ones(3)
    hax.apply_tree(tree, config, x)  # off: not checked
    with hax.debug(), pytest.raises(hax.ValidationError) as info:
        hax.apply_tree(tree, config, x)
    assert [(p.path, p.key) for p in info.value.errors] == [("1", key)]
    assert f"1: {key}" in str(info.value)
    # Under hax.jit, at trace time.
    with hax.debug(), pytest.raises(hax.ValidationError) as info:
        hax.jit(forward)(tree, config, x)
    assert [(p.path, p.key) for p in info.value.errors] == [("1", key)]


def test_debug_reports_shape_and_dtype_in_the_message():
    tree, config = misbehaving_model(changes_param_dtype)
    with hax.debug(), pytest.raises(hax.ValidationError) as info:
        hax.apply_tree(tree, config, jnp.ones(3))
    (problem,) = info.value.errors
    assert problem.found == "shape (3,) dtype float16"
    assert problem.expected == "shape (3,) dtype float32 as before apply"


def rebuilds_children_in_sorted_order(tree, global_config, x):
    """Rebuilds the tree the way `jax.tree_util.tree_map` does: dict keys sorted."""
    return jax.tree_util.tree_map(lambda leaf: leaf, tree), x


def test_debug_accepts_children_returned_in_another_order():
    children = {name: leaf_node(other_apply) for name in ("b", "a", "10", "2")}
    tree = leaf_node(rebuilds_children_in_sorted_order, submodules=children)
    new, _ = hax.apply_tree(tree, {}, 1)
    assert list(new["submodules"]) == ["10", "2", "a", "b"]
    with hax.debug():
        new, out = hax.apply_tree(tree, {}, 1)
    assert out == 1 and set(new["submodules"]) == set(children)


def test_well_behaved_apply_passes_in_debug_mode():
    tree, config = misbehaving_model(good_apply)
    x = jnp.arange(3.0)
    w0 = tree["submodules"]["0"]["params"]["weight"]
    with hax.debug():
        new, y = hax.apply_tree(tree, config, x)
        np.testing.assert_allclose(y, tree["submodules"]["0"]["params"]["bias"] + x @ w0.T)
        new, _ = hax.apply_tree(new, config, x)
        _, y_jit = hax.jit(forward)(tree, config, x)
    _, y_off = hax.apply_tree(tree, config, x)
    np.testing.assert_allclose(y_jit, y_off, rtol=1e-6)
    assert int(new["submodules"]["1"]["buffers"]["n"]) == 2
    np.testing.assert_allclose(new["submodules"]["1"]["params"]["w"], 4.0)


def test_debug_mode_on_hax_nn_layers_including_dropout():
    with hax.rng_context(0):
        tree, config = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    x = jnp.ones((8, 3))
    new_off, y_off = hax.apply_tree(tree, config, x)
    with hax.debug():
        new_on, y_on = hax.apply_tree(tree, config, x)
        with pytest.raises(hax.ValidationError) as info:
            hax.apply_tree(tree, {}, x)
    np.testing.assert_allclose(y_on, y_off)
    assert_trees_equal(new_on, new_off)  # the same new dropout key
    assert [(p.path, p.key) for p in info.value.errors] == [("", "global_config.train_mode")]


@pytest.mark.parametrize(
    "make, x",
    [
        (lambda: nn.Linear(3, 2, rng=0), np.ones((4, 3), np.float32)),
        (lambda: nn.Conv2d(3, 2, 3, rng=0), np.ones((1, 3, 5, 5), np.float32)),
        (lambda: nn.LayerNorm(3), np.ones((4, 3), np.float32)),
        (lambda: nn.ReLU(), np.ones((4, 3), np.float32)),
        (lambda: nn.Embedding(5, 2, rng=0), np.array([0, 4])),
        (lambda: nn.Sequential(nn.Linear(3, 2, rng=0), nn.ReLU()), np.ones((4, 3), np.float32)),
        (lambda: nn.Identity(), np.ones(3, np.float32)),
        (lambda: nn.Dropout(0.5, rng=0), np.ones(3, np.float32)),
    ],
)
def test_debug_mode_takes_numpy_inputs_as_the_layers_do(make, x):
    tree, config = make()
    config = {**config, "train_mode": False} if "train_mode" in config else config
    _, y_off = hax.apply_tree(tree, config, x)
    with hax.debug():
        _, y_on = hax.apply_tree(tree, config, x)
    np.testing.assert_array_equal(np.asarray(y_on), np.asarray(y_off))


def numpy_hint_apply(
    tree: StructureTree, global_config: GlobalConfig, x: np.ndarray[Any, Any]
) -> tuple[StructureTree, jax.Array]:
    return tree, jnp.asarray(x) * 2


def wrapping_apply(
    tree: StructureTree, global_config: GlobalConfig, inner: hax.ApplyFn, x: jax.Array
) -> tuple[StructureTree, jax.Array]:
    return tree, inner(tree, global_config, x)[1]


def test_debug_mode_runs_applies_with_hints_beartype_cannot_check():
    tree = hax.empty_tree(numpy_hint_apply)
    with hax.debug(), pytest.warns(UserWarning, match="numpy_hint_apply cannot be checked"):
        _, y = hax.apply_tree(tree, {}, np.ones(2))
    np.testing.assert_array_equal(y, [2.0, 2.0])
    wrapper = hax.empty_tree(wrapping_apply)
    with hax.debug():
        _, y = hax.apply_tree(wrapper, {}, numpy_hint_apply, jnp.ones(2))
        with pytest.raises(jaxtyping.TypeCheckError):
            hax.apply_tree(wrapper, {}, "not an apply", jnp.ones(2))
    np.testing.assert_array_equal(y, [2.0, 2.0])


def scaled_apply(
    tree: StructureTree, global_config: GlobalConfig, x: jax.Array, scale: float
) -> tuple[StructureTree, jax.Array]:
    return tree, x * scale


def test_debug_mode_reads_hints_as_type_checkers_do():
    """`float` admits an `int` (PEP 484), as mypy reads it; a str is still refused."""
    tree = hax.empty_tree(scaled_apply)
    with hax.debug():
        _, y = hax.apply_tree(tree, {}, jnp.ones(2), 3)
        with pytest.raises(jaxtyping.TypeCheckError, match="scale"):
            hax.apply_tree(tree, {}, jnp.ones(2), "3")
    np.testing.assert_array_equal(y, [3.0, 3.0])


def child_apply(tree, global_config, x, bad=False):
    w = tree["params"]["w"]
    return {**tree, "params": {"w": w[:1] if bad else w + 1}}, x


@hax.organized_apply
def calls_child_twice(org, x):
    org.c(x)
    return org.c(x, bad=True)  # the child's new tree, second call


def test_debug_names_a_child_called_twice_by_its_parent():
    org = hax.StateOrganizer()
    org.c = leaf_node(child_apply, params={"w": jnp.ones(3)})
    parent = org.create_module(calls_child_twice)
    with hax.rng_context(0):
        tree, config = nn.Sequential(nn.Linear(3, 3), parent)
    with hax.debug(), pytest.raises(hax.ValidationError) as info:
        hax.apply_tree(tree, config, jnp.ones(3))
    assert [(p.path, p.key) for p in info.value.errors] == [("1/c", "params.w")]


def changes_pytree_param(tree, global_config, x):
    w = tree["params"]["w"]
    return {**tree, "params": {"w": {"a": w["a"][:1]}}}, x


def test_debug_detects_shape_change_inside_a_pytree_param():
    tree = leaf_node(changes_pytree_param, params={"w": {"a": jnp.ones(3)}})
    with hax.debug(), pytest.raises(hax.ValidationError) as info:
        hax.apply_tree(tree, {}, 1)
    assert [(p.path, p.key) for p in info.value.errors] == [("", "params.w")]


class UnhashableApply:
    __hash__ = None

    def __call__(self, tree, global_config, x):
        return tree, x


def test_debug_accepts_an_unhashable_apply():
    tree = leaf_node(UnhashableApply())
    assert hax.validate(tree) is tree
    assert hax.apply_tree(tree, {}, 1)[1] == 1
    with hax.debug():
        assert hax.apply_tree(tree, {}, 1)[1] == 1


# ---------------------------------------------------------------- switching debug mode


@pytest.mark.debug_off
def test_debug_context_restores_the_previous_state():
    assert not hax.debug_enabled()
    with hax.debug():
        assert hax.debug_enabled()
        with hax.debug(False):
            assert not hax.debug_enabled()
            with hax.debug():
                assert hax.debug_enabled()
            assert not hax.debug_enabled()
        assert hax.debug_enabled()
    assert not hax.debug_enabled()


@pytest.mark.debug_off
def test_debug_context_restores_after_an_exception():
    with pytest.raises(RuntimeError), hax.debug():
        raise RuntimeError("boom")
    assert not hax.debug_enabled()
    with hax.debug():
        with pytest.raises(hax.ValidationError), hax.debug(False), hax.debug():
            hax.apply_tree(*misbehaving_model(changes_aux), jnp.ones(3))
        assert hax.debug_enabled()
    assert not hax.debug_enabled()


SUBPROCESS = textwrap.dedent(
    """
    import jax.numpy as jnp
    import hax
    print(hax.debug_enabled())
    tree, config = hax.nn.Linear(3, 4, rng=0)
    tree["params"]["bias"] = jnp.zeros((1,))
    try:
        hax.apply_tree(tree, config, jnp.ones(3))
        print("unchecked")
    except hax.ValidationError:
        print("checked")
    """
)


def test_hax_debug_environment_variable():
    """Read at import: run fresh interpreters (concurrently, to save time)."""
    cases = {"1": "True checked", "0": "False unchecked"}
    procs = {
        value: subprocess.Popen(
            [sys.executable, "-c", SUBPROCESS],
            env={**os.environ, "HAX_DEBUG": value, "JAX_PLATFORMS": "cpu"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for value in cases
    }
    for value, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.split() == cases[value].split(), (value, out, err)


# ---------------------------------------------------------------- jaxtyping + beartype


def typed_bad_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[Array, "b n"]
) -> tuple[StructureTree, Float[Array, "b n"]]:
    return tree, x[:, :1]  # (b, 1): breaks "b n" when n != 1


def typed_good_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[Array, "b n"]
) -> tuple[StructureTree, Float[Array, "b n"]]:
    return tree, x * 2


def typed_two_args(
    tree: StructureTree,
    global_config: GlobalConfig,
    x: Float[Array, "b n"],
    y: Float[Array, " n"],
) -> tuple[StructureTree, Float[Array, "b n"]]:
    return tree, x + y


@pytest.mark.debug_off
def test_jaxtyping_return_checked_in_debug_mode_only():
    tree = leaf_node(typed_bad_apply)
    x = jnp.ones((2, 3))
    _, y = hax.apply_tree(tree, {}, x)
    assert y.shape == (2, 1)
    with hax.debug(), pytest.raises(jaxtyping.TypeCheckError, match="typed_bad_apply"):
        hax.apply_tree(tree, {}, x)
    with hax.debug(), pytest.raises(jaxtyping.TypeCheckError):
        hax.jit(forward)(tree, {}, x)


def test_jaxtyping_good_apply_passes():
    tree = leaf_node(typed_good_apply)
    with hax.debug():
        _, y = hax.apply_tree(tree, {}, jnp.ones((2, 3)))
        _, y_jit = hax.jit(forward)(tree, {}, jnp.ones((4, 5)))
    np.testing.assert_allclose(y, 2.0)
    assert y_jit.shape == (4, 5)


@pytest.mark.debug_off
def test_jaxtyping_dims_shared_across_arguments():
    tree = leaf_node(typed_two_args)
    x = jnp.ones((2, 3))
    _, y = hax.apply_tree(tree, {}, x, jnp.ones(1))  # broadcasts: fine when off
    assert y.shape == (2, 3)
    with hax.debug():
        hax.apply_tree(tree, {}, x, jnp.ones(3))
        with pytest.raises(jaxtyping.TypeCheckError):
            hax.apply_tree(tree, {}, x, jnp.ones(1))
        with pytest.raises(jaxtyping.TypeCheckError):
            hax.apply_tree(tree, {}, x.astype(jnp.int32), jnp.ones(3))


@pytest.mark.debug_off
@pytest.mark.wrong_types
def test_linear_annotations_checked_in_debug_mode():
    tree, config = nn.Linear(3, 4, rng=0)
    x = jnp.ones((2, 3), jnp.int32)
    _, y = hax.apply_tree(tree, config, x)  # promotes int to float when off
    assert y.shape == (2, 4)
    with hax.debug(), pytest.raises(jaxtyping.TypeCheckError):
        hax.apply_tree(tree, config, x)


# ---------------------------------------------------------------- hax.jit retraces


@pytest.mark.debug_off
def test_hax_jit_retraces_when_debug_mode_changes():
    traces = []

    @hax.jit
    def run(tree, config, x):
        traces.append(hax.debug_enabled())
        return hax.apply_tree(tree, config, x)

    good, config = nn.Linear(3, 4, rng=0)
    bad, _ = broken_bias_model(seed=6)
    x = jnp.ones((2, 3))
    run(good, config, x)
    run(good, config, x)
    run(bad, config, x)  # another structure: a second trace, unchecked
    assert traces == [False, False]
    with hax.debug():
        run(good, config, x)
        run(good, config, x)
        with pytest.raises(hax.ValidationError) as info:
            run(bad, config, x)
        assert_names_bias(info.value)
    assert traces == [False, False, True, True]
    run(good, config, x)
    _, y = run(bad, config, x)  # the unchecked traces are still there
    assert traces == [False, False, True, True]
    np.testing.assert_allclose(y, expected_output(bad, x), rtol=1e-6)


def test_debug_names_the_aux_entry_an_apply_changed_and_both_values():
    tree, config = misbehaving_model(changes_aux)
    with hax.debug(), pytest.raises(hax.ValidationError) as info:
        hax.apply_tree(tree, config, jnp.ones(3))
    (problem,) = info.value.errors
    assert (problem.key, problem.found, problem.expected) == ("aux.k", "2", "1 as before apply")


@pytest.mark.debug_off
def test_an_error_inside_an_apply_names_the_innermost_node_in_debug_mode():
    with hax.rng_context(0):
        tree, config = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Sequential(nn.Linear(7, 2)))
    x = jnp.ones((3, 4))
    with pytest.raises(ValueError, match=r"in_features=7\), found shape \(3, 8\)") as info:
        hax.apply_tree(tree, config, x)
    # off: no path (that would cost on the hot path), but how to get one, once
    assert info.value.__notes__ == [
        "(hax) To see which node raised this, run the call again inside `with hax.debug():` "
        "(or with HAX_DEBUG=1): debug mode names the innermost node's path."
    ]
    for run in (hax.apply_tree, hax.jit(hax.apply_tree)):
        with hax.debug(), pytest.raises(ValueError) as info:
            run(tree, config, x)
        notes = [n for n in info.value.__notes__ if "hax debug mode" in n]
        assert notes == ["(hax debug mode) raised in the apply of the Linear at 2/0"]
