"""Tests for `StateOrganizer`, `organized_apply` and `organized_init`."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_trees_equal

import hax
from hax import StateOrganizer


def identity_apply(tree, global_config, x):
    return tree, x


@hax.organized_apply
def mlp_apply(org, x):
    return org.fc2(jax.nn.relu(org.fc1(x)))


@hax.organized_init(mlp_apply)
def MLP(org, din, dhidden, dout):
    org.fc1 = hax.nn.Linear(din, dhidden)
    org.fc2 = hax.nn.Linear(dhidden, dout)


@hax.organized_apply
def noisy_apply(org, x):
    """Dropout child, a param, a buffer counter and an aux value."""
    y = org.drop(x) * org.scale + org.offset
    org.count = org.count + 1
    return y


@hax.organized_init(noisy_apply)
def Noisy(org, n, offset):
    org.drop = hax.nn.Dropout(0.5)
    org.scale = jnp.full((n,), 2.0)
    org.register_buffer("count", jnp.zeros((), jnp.int32))
    org.register_aux("offset", offset)


# ---------------------------------------------------------------- build mode


def test_register_submodule_param_buffer_aux():
    org = StateOrganizer()
    lin_tree, lin_config = hax.nn.Linear(2, 3, rng=0)
    org.lin = (lin_tree, lin_config)
    org.bare = {"aux": {"k": 1}, "apply": identity_apply}  # bare, partial tree
    org.w = np.ones((2,), np.float32)  # array -> param
    org.register_buffer("steps", np.zeros((), np.int32))
    org.register_buffer("rng", jax.random.key(0))
    org.register_aux("n", 3)
    org.register_aux("names", ("a", "b"))
    org.register_param("nested", {"a": np.ones(2), "b": [jnp.zeros(1)]})
    tree, config = org.create_module(identity_apply)

    assert hax.is_structure_tree(tree)
    assert tree["apply"] is identity_apply
    assert tree["submodules"]["lin"] is lin_tree
    assert set(tree["submodules"]["bare"]) == {"params", "buffers", "aux", "apply", "submodules"}
    assert tree["submodules"]["bare"]["aux"] == {"k": 1}
    assert set(tree["params"]) == {"w", "nested"}
    assert isinstance(tree["params"]["w"], jax.Array)
    assert all(isinstance(x, jax.Array) for x in jax.tree_util.tree_leaves(tree["params"]))
    assert isinstance(tree["params"]["nested"]["b"], list)
    assert isinstance(tree["buffers"]["steps"], jax.Array)
    assert tree["buffers"]["steps"].dtype == jnp.int32
    assert jnp.issubdtype(tree["buffers"]["rng"].dtype, jax.dtypes.prng_key)
    assert tree["aux"] == {"n": 3, "names": ("a", "b")}
    assert config == {}


def test_attribute_reads_in_build_mode():
    org = StateOrganizer()
    org.w = jnp.ones(2)
    org.register_aux("n", 3)
    assert org.n == 3
    np.testing.assert_array_equal(org.w, np.ones(2))
    with pytest.raises(AttributeError, match="missing"):
        _ = org.missing


def test_name_assigned_twice_raises():
    org = StateOrganizer()
    org.w = jnp.ones(2)
    with pytest.raises(AttributeError, match="already registered"):
        org.w = jnp.zeros(2)
    with pytest.raises(AttributeError, match="already registered"):
        org.register_buffer("w", jnp.zeros(2))
    org.register_aux("k", 1)
    with pytest.raises(AttributeError, match="already registered"):
        org.register_aux("k", 2)
    org.lin = hax.nn.Linear(2, 2, rng=0)
    with pytest.raises(AttributeError, match="already registered"):
        org.lin = hax.nn.Linear(2, 2, rng=1)
    with pytest.raises(AttributeError, match="already registered"):
        org.register_param("lin", jnp.ones(1))


@pytest.mark.parametrize("value", [[1, 2], "relu", 3, 0.5, None, {"a": jnp.ones(1)}])
def test_unknown_kind_raises_type_error_mentioning_register_aux(value):
    org = StateOrganizer()
    with pytest.raises(TypeError, match="register_aux") as info:
        org.thing = value
    assert "thing" in str(info.value)


@pytest.mark.parametrize(
    "name", ["create_module", "get_state", "register_param", "register_aux", "global_config"]
)
def test_names_colliding_with_methods_rejected(name):
    org = StateOrganizer()
    with pytest.raises(AttributeError, match=name):
        setattr(org, name, jnp.ones(1))
    with pytest.raises(AttributeError, match=name):
        org.register_aux(name, 1)


@pytest.mark.parametrize("name", ["a/b", ""])
def test_invalid_names_rejected(name):
    org = StateOrganizer()
    with pytest.raises(ValueError):
        org.register_buffer(name, jnp.ones(1))


def test_create_module_merges_configs():
    org = StateOrganizer()
    org.drop = hax.nn.Dropout(0.1, rng=0)
    org.lin = hax.nn.Linear(2, 2, rng=0)
    org.other = (hax.empty_tree(identity_apply), {"precision": "high"})
    keys = {"precision": str, "extra": int}  # keys of one's own are declared

    def reads_both(tree, config, x):
        return tree, x

    _tree, config = org.create_module(hax.reads_config(reads_both, keys), {"extra": 1})
    assert config == {"train_mode": True, "precision": "high", "extra": 1}


def test_config_conflict_raises_where_the_module_is_assigned_naming_both():
    org = StateOrganizer()
    org.drop = hax.nn.Dropout(0.1, rng=0)
    with pytest.raises(
        ValueError,
        match=r"'train_mode': True vs False \(submodule 'drop' vs submodule 'eval_drop'\)",
    ):
        org.eval_drop = (hax.nn.Dropout(0.1, rng=1)[0], {"train_mode": False})
    _tree, config = org.create_module(identity_apply)  # the rejected module left no trace
    assert sorted(_tree["submodules"]) == ["drop"] and config == {"train_mode": True}
    org2 = StateOrganizer()
    org2.drop = hax.nn.Dropout(0.1, rng=0)
    with pytest.raises(ValueError, match=r"\(submodule 'drop' vs global_config\)"):
        org2.create_module(identity_apply, {"train_mode": False})


def test_create_module_requires_callable_and_build_mode():
    with pytest.raises(TypeError):
        StateOrganizer().create_module("not callable")
    org = StateOrganizer(hax.empty_tree(identity_apply), {})
    with pytest.raises(TypeError):
        org.create_module(identity_apply)
    with pytest.raises(TypeError):
        StateOrganizer().get_state()


def test_create_module_is_snapshot():
    org = StateOrganizer()
    org.w = jnp.ones(1)
    tree, _ = org.create_module(identity_apply)
    org.v = jnp.ones(1)
    assert set(tree["params"]) == {"w"}


# ---------------------------------------------------------------- apply mode


def test_organized_init_builds_module():
    with hax.rng_context(0):
        tree, config = Noisy(3, offset=1.5)
    assert tree["apply"] is noisy_apply
    assert set(tree["submodules"]) == {"drop"}
    assert tree["aux"] == {"offset": 1.5}
    assert config == {"train_mode": True}
    assert int(tree["buffers"]["count"]) == 0


def test_child_call_threads_state_and_input_is_unchanged():
    with hax.rng_context(0):
        tree, config = Noisy(1000, offset=1.0)
    snapshot = copy.deepcopy(tree)
    x = jnp.ones(1000)
    new_tree, y = hax.apply_tree(tree, config, x)
    old_key = jax.random.key_data(tree["submodules"]["drop"]["buffers"]["rng"])
    new_key = jax.random.key_data(new_tree["submodules"]["drop"]["buffers"]["rng"])
    assert not np.array_equal(old_key, new_key)  # the child's new rng came back
    assert int(new_tree["buffers"]["count"]) == 1  # buffer updated by assignment
    values = set(np.unique(np.asarray(y)).tolist())
    assert values == {1.0, 5.0}  # dropped -> 0*2+1; kept -> 2*2+1
    assert_trees_equal(tree, snapshot)  # pure
    # structure, aux and apply unchanged
    assert new_tree["apply"] is tree["apply"]
    assert new_tree["aux"] == tree["aux"]
    assert set(new_tree["submodules"]) == set(tree["submodules"])
    # a second call with the new tree gives a different mask
    newer_tree, y2 = hax.apply_tree(new_tree, config, x)
    assert not np.array_equal(y, y2)
    assert int(newer_tree["buffers"]["count"]) == 2


def test_apply_mode_respects_config():
    with hax.rng_context(0):
        tree, _ = Noisy(4, offset=0.5)
    new_tree, y = hax.apply_tree(tree, {"train_mode": False}, jnp.ones(4))
    np.testing.assert_array_equal(y, np.full(4, 2.5))
    np.testing.assert_array_equal(
        jax.random.key_data(new_tree["submodules"]["drop"]["buffers"]["rng"]),
        jax.random.key_data(tree["submodules"]["drop"]["buffers"]["rng"]),
    )


def test_apply_mode_under_hax_jit():
    with hax.rng_context(0):
        tree, config = Noisy(16, offset=0.0)
    f = hax.jit(hax.apply_tree)
    t1, y1 = f(tree, config, jnp.ones(16))
    t2, y2 = f(t1, config, jnp.ones(16))
    assert int(t2["buffers"]["count"]) == 2
    assert not np.array_equal(y1, y2)
    _, y_ref = hax.apply_tree(tree, config, jnp.ones(16))
    np.testing.assert_array_equal(y1, y_ref)


def test_apply_mode_reads_and_updates():
    tree = hax.fill_tree(
        {
            "params": {"w": jnp.arange(3.0)},
            "buffers": {"b": jnp.zeros(3)},
            "aux": {"k": 7},
            "apply": identity_apply,
        }
    )
    org = StateOrganizer(tree, {"train_mode": True})
    assert org.k == 7
    assert org.w is tree["params"]["w"]
    assert org.global_config == {"train_mode": True}
    org.b = jnp.ones(3)
    org.w = jnp.zeros(3)  # params can be updated too (e.g. an in-apply update rule)
    state = org.get_state()
    np.testing.assert_array_equal(state["buffers"]["b"], np.ones(3))
    np.testing.assert_array_equal(state["params"]["w"], np.zeros(3))
    assert state["aux"] == {"k": 7}
    assert state["apply"] is identity_apply
    np.testing.assert_array_equal(tree["buffers"]["b"], np.zeros(3))  # input unchanged


def test_apply_mode_rejects_new_names_and_aux_changes():
    tree = hax.fill_tree({"aux": {"k": 7}, "apply": identity_apply})
    org = StateOrganizer(tree, {})
    with pytest.raises(AttributeError, match="new"):
        org.new = jnp.ones(1)
    with pytest.raises(AttributeError, match="new_buffer"):
        org.register_buffer("new_buffer", jnp.ones(1))
    with pytest.raises(AttributeError):
        org.k = 8
    with pytest.raises(AttributeError):
        org.child = hax.nn.Linear(2, 2, rng=0)
    assert org.get_state()["aux"] == {"k": 7}


def test_child_tree_property():
    lin_tree, _ = hax.nn.Linear(2, 2, rng=0)
    tree = hax.fill_tree({"submodules": {"lin": lin_tree}, "apply": identity_apply})
    org = StateOrganizer(tree, {})
    assert org.lin.tree is tree["submodules"]["lin"]
    assert_trees_equal(org.lin.tree, lin_tree)


# ---------------------------------------------------------------- MLP parity


def test_organized_mlp_matches_hand_written_math():
    with hax.rng_context(0):
        tree, config = MLP(3, 5, 2)
    assert config == {}
    p1 = tree["submodules"]["fc1"]["params"]
    p2 = tree["submodules"]["fc2"]["params"]
    assert p1["weight"].shape == (5, 3) and p2["weight"].shape == (2, 5)
    x = jax.random.normal(jax.random.key(5), (7, 3))
    new_tree, y = hax.apply_tree(tree, config, x)
    w1, b1, w2, b2 = (np.asarray(a) for a in (p1["weight"], p1["bias"], p2["weight"], p2["bias"]))
    hidden = np.maximum(np.asarray(x) @ w1.T + b1, 0.0)
    expected = hidden @ w2.T + b2
    assert np.any(hidden == 0) and np.any(hidden > 0)  # relu is actually exercised
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    assert_trees_equal(new_tree, tree)  # no state changes in a pure MLP
    # jitted and bound forms agree
    state, apply = hax.bind_module(tree, config)
    _, y_jit = jax.jit(apply)(state, x)
    np.testing.assert_allclose(y_jit, expected, rtol=1e-5, atol=1e-6)


def test_organized_apply_and_init_preserve_names():
    assert mlp_apply.__name__ == "mlp_apply"
    assert MLP.__name__ == "MLP"


def test_organized_init_with_global_config():
    @hax.organized_init(identity_apply, {"train_mode": False})
    def Wrapped(org):
        org.w = jnp.ones(1)

    _, config = Wrapped()
    assert config == {"train_mode": False}


def test_reserved_internal_names_rejected():
    """Names starting with '_org_' would shadow the organizer's internals: rejected."""
    org = StateOrganizer()
    with pytest.raises(ValueError, match="_org_"):
        org.register_aux("_org_x", 1)
    with pytest.raises(ValueError, match="_org_"):
        org._org_params = jnp.ones(1)
    assert org._org_params == {}


@hax.organized_apply
def annotated_apply(org: StateOrganizer, x: jax.Array) -> jax.Array:
    return org.fc(x)


def test_annotated_organized_apply_runs_in_debug_mode():
    """The apply's signature is (tree, config, *args), whatever `fn` annotates."""
    with hax.rng_context(0):
        org = StateOrganizer()
        org.fc = hax.nn.Linear(3, 2)
        tree, config = org.create_module(annotated_apply)
    with hax.debug():
        _, y = hax.apply_tree(tree, config, jnp.ones((4, 3)))
    assert y.shape == (4, 2)
    assert annotated_apply.__name__ == "annotated_apply"
    assert not hasattr(annotated_apply, "__wrapped__")
