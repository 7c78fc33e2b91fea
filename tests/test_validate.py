"""Tests for `hax.validate`: structural rules, layer specs (shapes, dtypes, shared
dimension names), global-config checks, error reporting, deep trees, and the
constructors that validate what they return."""

import dataclasses
import json
from typing import Any, NamedTuple, NotRequired

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from jaxtyping import Array, Float, Int
from typing_extensions import TypedDict

import hax
from hax import nn
from hax.schema import layer_spec, register_spec

# ---------------------------------------------------------------- helpers


def plain_apply(tree, global_config, x):
    """A module-level apply with no spec: structural checks only."""
    return tree, x


def other_apply(tree, global_config, *args, **kwargs):
    return tree, args


def node(**kinds):
    """A valid bare node running `plain_apply`, with `kinds` overriding its keys."""
    tree = {"params": {}, "buffers": {}, "aux": {}, "apply": plain_apply, "submodules": {}}
    tree.update(kinds)
    return tree


def nested(inner):
    """`inner` placed at path "a/b" below a valid root."""
    return node(submodules={"a": node(submodules={"b": inner})})


def model():
    """Sequential(Linear(3, 4), Dropout(0.5), Linear(4, 2)) and its config."""
    with hax.rng_context(0):
        return nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 2))


def linear(*args, **kwargs):
    with hax.rng_context(1):
        tree, _ = nn.Linear(*args, **kwargs)
    return tree


def problems(tree, global_config=None, unknown_keys=False):
    """The problems `hax.validate` reports, as `(path, key)` pairs (fails if valid).
    Config keys no node reads are left out unless `unknown_keys` (their own tests)."""
    with pytest.raises(hax.ValidationError) as info:
        hax.validate(tree, global_config, unknown_keys=unknown_keys)
    return info.value


def where(err):
    return [(p.path, p.key) for p in err.errors]


# ---------------------------------------------------------------- valid trees


def test_valid_tree_is_returned_unchanged():
    tree, config = model()
    before = [(name, id(leaf)) for name, leaf in hax.named_leaves(tree)]
    assert hax.validate(tree, config) is tree
    assert hax.validate(tree) is tree
    assert hax.validate(tree, None) is tree
    # Not modified in place either: the same leaf objects, the same config.
    assert [(name, id(leaf)) for name, leaf in hax.named_leaves(tree)] == before
    assert config == {"train_mode": True}


def test_validate_reads_only_shapes_and_dtypes():
    """Deleted arrays keep their shape and dtype but have no data: reading it would raise."""
    lin = linear(3, 4)
    lin["params"]["weight"].delete()
    assert hax.validate(lin) is lin
    lin["params"]["bias"] = jnp.zeros((1,))
    lin["params"]["bias"].delete()
    assert where(problems(lin)) == [("", "params.bias")]


def test_valid_bare_nodes():
    for tree in (
        node(),
        hax.empty_tree(),
        node(params={"w": jnp.ones((2, 3)), "tree": {"a": jnp.ones(1), "b": [np.zeros(2)]}}),
        node(buffers={"key": jax.random.key(0), "n": np.int32(3), "e": {}}),
        node(aux={"a": True, "b": 1, "c": 1.5, "d": "s", "e": None, "f": (1, ("x", None, ()))}),
        node(apply=other_apply),
        node(submodules={"x": node(), "0": node(submodules={"deep": node()})}),
    ):
        assert hax.validate(tree) is tree


# ---------------------------------------------------------------- structural rules


def test_missing_kind():
    inner = node()
    del inner["buffers"]
    err = problems(nested(inner))
    assert where(err) == [("a/b", "buffers")]
    assert err.errors[0].found == "nothing"


def test_extra_key():
    err = problems(nested(node(constants={})))
    assert where(err) == [("a/b", "constants")]
    assert "no such key" in err.errors[0].expected


def test_params_that_is_a_list():
    err = problems(nested(node(params=[jnp.ones(2)])))
    assert where(err) == [("a/b", "params")]
    assert err.errors[0].found == "a list"
    assert err.errors[0].expected == "a dict"


@pytest.mark.parametrize(
    ("leaf", "type_name"),
    [([1, 2], "int"), ("weights", "str"), (None, "None"), (0.5, "float"), (3, "int")],
)
def test_param_leaf_that_is_not_an_array(leaf, type_name):
    err = problems(nested(node(params={"good": jnp.ones(2), "w": leaf})))
    assert where(err) == [("a/b", "params.w")]
    assert type_name in err.errors[0].found
    assert "array" in err.errors[0].expected


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Pair:
    """A user pytree node (not a dict, list or tuple)."""

    first: Any
    second: Any


class NamedPair(NamedTuple):
    first: Any
    second: Any


def test_param_pytrees_of_arrays_are_valid():
    tree = node(
        params={
            "nt": NamedPair(jnp.ones(2), np.zeros(1)),
            "nested": {"p": Pair(jnp.ones(1), [jnp.ones(2)])},
            "empty": {},
        }
    )
    assert hax.validate(tree) is tree


def test_user_pytree_param_with_a_bad_leaf():
    err = problems(node(params={"nested": {"p": Pair(jnp.ones(1), "bad")}}))
    assert where(err) == [("", "params.nested")]


def test_user_pytree_param_at_the_top_of_an_entry():
    tree = node(params={"p": Pair(jnp.ones(1), jnp.ones(2))})
    assert hax.validate(tree) is tree


def test_buffer_leaf_that_is_not_an_array():
    err = problems(nested(node(buffers={"count": 0})))
    assert where(err) == [("a/b", "buffers.count")]


def test_nested_pytree_param_with_one_bad_leaf():
    param = {"a": jnp.ones(2), "b": [jnp.ones(1), "oops"], "c": (np.zeros(3),)}
    err = problems(nested(node(params={"w": param})))
    assert where(err) == [("a/b", "params.w")]
    # The bad leaf is located inside the pytree; the good leaves are not named.
    found = err.errors[0].found
    assert "b/1" in found and "str" in found
    assert "c/0" not in found and "b/0" not in found


@pytest.mark.parametrize("value", [[1, 2], {"a": 1}, np.ones(2), jnp.ones(2), (1, [2]), {1, 2}])
def test_aux_value_not_hashable_json(value):
    err = problems(nested(node(aux={"ok": 1, "x": value})))
    assert where(err) == [("a/b", "aux.x")]
    assert "hashable" in err.errors[0].expected


@pytest.mark.parametrize("value", [True, 0, -7, 1.5, "text", None, (), (1, ("a", (None, 2.0)))])
def test_aux_value_allowed(value):
    tree = nested(node(aux={"x": value}))
    assert hax.validate(tree) is tree


@pytest.mark.parametrize("value", [jnp.float32(1), jnp.array(True), np.array(1.0)])
def test_aux_zero_dim_array_rejected(value):
    with pytest.raises(TypeError):
        hash(value)  # the contract says aux is hashable; these are not
    err = problems(node(aux={"x": value}))
    assert where(err) == [("", "aux.x")]


@pytest.mark.parametrize("value", [np.int64(1), np.float32(1.0)])
def test_aux_numpy_scalar_rejected(value):
    with pytest.raises(TypeError):
        json.dumps(value)
    err = problems(node(aux={"x": value}))
    assert where(err) == [("", "aux.x")]


@pytest.mark.parametrize("value", [np.bool_(True), np.float32(1.0)])
def test_numpy_scalars_are_named_as_numpy_types(value):
    """`found a bool` would contradict `expected ... bool ...`: say it is NumPy's."""
    err = problems(node(aux={"x": value}), {"x": value})
    assert where(err) == [("", "aux.x"), ("", "global_config.x")]
    assert [p.found for p in err.errors] == [f"a numpy.{type(value).__name__}"] * 2


def test_aux_non_str_key_with_bad_value():
    err = problems(node(aux={1: [1]}))
    assert ("", "aux.1") in where(err)


def test_aux_non_str_key():
    err = problems(nested(node(aux={1: 2})))
    assert where(err) == [("a/b", "aux.1")]


def test_aux_that_is_not_a_dict():
    err = problems(nested(node(aux=[("a", 1)])))
    assert where(err) == [("a/b", "aux")]


def test_apply_not_callable():
    err = problems(nested(node(apply="linear")))
    assert where(err) == [("a/b", "apply")]
    assert "callable" in err.errors[0].expected
    assert err.errors[0].found == "a str"


def one_arg(x):
    return x


def test_apply_with_a_signature_that_cannot_take_tree_and_config():
    err = problems(nested(node(apply=one_arg)))
    assert where(err) == [("a/b", "apply")]
    assert "(tree, global_config" in err.errors[0].expected
    # Keyword-only parameters cannot take the positional (tree, config) either.
    err = problems(node(apply=lambda *, tree, config: (tree, None)))
    assert where(err) == [("", "apply")]


def test_apply_that_accepts_tree_and_config():
    for fn in (lambda *a: a, lambda t, c, **kw: (t, None), print, other_apply):
        assert hax.validate(node(apply=fn))


@pytest.mark.parametrize(("name", "expected"), [("", "non-empty"), ("a/b", "without '/'")])
def test_bad_submodule_name(name, expected):
    err = problems(nested(node(submodules={"ok": node(), name: node()})))
    assert len(err.errors) == 1
    assert err.errors[0].path == "a/b"
    assert err.errors[0].key in (f"submodules.{name}", f"submodules.{name!r}")
    assert expected in err.errors[0].expected


def test_non_str_submodule_name():
    err = problems(nested(node(submodules={0: node()})))
    assert where(err) == [("a/b", "submodules.0")]


@pytest.mark.parametrize("child", [3, None, [node()], "tree"])
def test_submodule_that_is_not_a_dict(child):
    err = problems(nested(node(submodules={"c": child})))
    assert ("a/b", "submodules.c") in where(err)
    assert all(p.path in ("a/b", "a/b/c") for p in err.errors)


def test_submodules_that_is_not_a_dict():
    err = problems(nested(node(submodules=[node()])))
    assert where(err) == [("a/b", "submodules")]


def test_shared_node_is_reported_at_its_second_path():
    shared = node()
    tree = nested(node(submodules={"x": shared, "y": node(submodules={"z": shared})}))
    err = problems(tree)
    assert where(err) == [("a/b/y/z", "<node>")]
    assert "a/b/x" in err.errors[0].found


def test_shared_node_in_two_subtrees():
    tree, _ = model()
    tree["submodules"]["3"] = tree["submodules"]["0"]
    err = problems(tree)
    assert where(err) == [("3", "<node>")]


def test_self_cycle_does_not_hang():
    inner = node()
    inner["submodules"]["self"] = inner
    err = problems(nested(inner))
    assert where(err) == [("a/b/self", "<node>")]


def test_long_cycle_does_not_hang():
    a = node()
    b = node(submodules={"c": node(submodules={"back": a})})
    a["submodules"]["b"] = b
    err = problems(nested(a))
    assert where(err) == [("a/b/b/c/back", "<node>")]
    assert "a/b" in err.errors[0].found


def test_root_that_is_not_a_dict():
    err = problems([node()])
    assert where(err) == [("", "<node>")]


# ---------------------------------------------------------------- shape rules (Linear, Dropout)


def seq_with(child):
    """Sequential(Linear(3, 4), child, ...) with `child` at path "1" (after construction)."""
    tree, config = model()
    tree["submodules"]["1"] = child
    return tree, config


@pytest.mark.parametrize("shape", [(1,), (64,), (4, 1), ()])
def test_linear_bias_wrong_shape(shape):
    lin = linear(4, 4)
    lin["params"]["bias"] = jnp.zeros(shape)
    tree, _ = seq_with(lin)
    err = problems(tree)
    assert where(err) == [("1", "params.bias")]
    text = str(err.errors[0])
    assert text.startswith("1: params.bias: ")
    assert "expected shape (out_features=4," in text
    found = "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"
    assert f"found shape {found}" in text


def test_linear_weight_wrong_shape():
    lin = linear(3, 4)
    lin["params"]["weight"] = jnp.zeros((3, 4))  # transposed
    err = problems(nested(lin))
    assert where(err) == [("a/b", "params.weight")]
    assert "out_features=4, in_features=3" in err.errors[0].expected
    assert err.errors[0].found == "shape (3, 4)"


def test_linear_aux_and_arrays_disagree():
    """Dimension names bind from aux: arrays consistent with each other but not with aux."""
    lin = linear(3, 4)
    lin["aux"]["out_features"] = 5
    err = problems(lin)
    assert sorted(where(err)) == [("", "params.bias"), ("", "params.weight")]


def test_linear_wrong_dtype():
    lin = linear(3, 4)
    lin["params"]["weight"] = jnp.zeros((4, 3), jnp.int32)
    err = problems(nested(lin))
    assert where(err) == [("a/b", "params.weight")]
    assert "dtype int32" in err.errors[0].found
    assert "Float" in err.errors[0].expected


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32])
def test_linear_float_dtypes_are_valid(dtype):
    lin = linear(3, 4)
    lin["params"] = {k: v.astype(dtype) for k, v in lin["params"].items()}
    assert hax.validate(lin) is lin


def test_linear_without_bias_is_valid():
    lin = linear(3, 4, bias=False)
    assert "bias" not in lin["params"]
    assert hax.validate(lin) is lin
    tree, config = seq_with(lin)
    assert hax.validate(tree, config) is tree


def test_linear_missing_weight():
    lin = linear(3, 4)
    del lin["params"]["weight"]
    err = problems(nested(lin))
    assert where(err) == [("a/b", "params.weight")]
    assert err.errors[0].found == "nothing"


def test_linear_undeclared_param():
    lin = linear(3, 4)
    lin["params"]["scale"] = jnp.ones(4)
    err = problems(nested(lin))
    assert where(err) == [("a/b", "params.scale")]
    assert "Linear" in str(err)


def test_linear_undeclared_buffer():
    lin = linear(3, 4)
    lin["buffers"]["count"] = jnp.zeros((), jnp.int32)
    err = problems(lin)
    assert where(err) == [("", "buffers.count")]


@pytest.mark.parametrize("value", ["3", 3.0, True, None])
def test_linear_aux_wrong_type(value):
    lin = linear(3, 4)
    lin["aux"]["in_features"] = value
    err = problems(nested(lin))
    assert ("a/b", "aux.in_features") in where(err)
    assert all(p.key == "aux.in_features" for p in err.errors)


def test_linear_aux_missing():
    lin = linear(3, 4)
    del lin["aux"]["out_features"]
    err = problems(lin)
    assert where(err) == [("", "aux.out_features")]


@pytest.mark.parametrize(
    "rng", [jnp.zeros(()), jnp.zeros((2,), jnp.uint32), jnp.zeros((), jnp.int32)]
)
def test_dropout_rng_that_is_not_a_key(rng):
    tree, config = model()
    tree["submodules"]["1"]["buffers"]["rng"] = rng
    err = problems(tree, config)
    assert ("1", "buffers.rng") in where(err)
    assert any("dtype" in p.found and "Key" in p.expected for p in err.errors)


def test_dropout_rng_batch_of_keys():
    tree, config = model()
    tree["submodules"]["1"]["buffers"]["rng"] = jax.random.split(jax.random.key(0), 2)
    err = problems(tree, config)
    assert where(err) == [("1", "buffers.rng")]
    assert err.errors[0].found == "shape (2,)"


def test_dropout_aux_p_int_is_accepted_as_float_but_str_is_not():
    tree, config = model()
    tree["submodules"]["1"]["aux"]["p"] = 0
    assert hax.validate(tree, config) is tree
    tree["submodules"]["1"]["aux"]["p"] = "0.5"
    assert where(problems(tree, config)) == [("1", "aux.p")]


# ---------------------------------------------------------------- global config


def test_config_missing_train_mode():
    tree, _ = model()
    err = problems(tree, {})
    assert where(err) == [("", "global_config.train_mode")]
    assert err.errors[0].found == "nothing"
    assert "Dropout" in err.errors[0].expected and "at 1" in err.errors[0].expected


@pytest.mark.parametrize("value", [1, 0, "True", None, 1.0])
def test_config_train_mode_wrong_type(value):
    tree, _ = model()
    err = problems(tree, {"train_mode": value})
    assert where(err) == [("", "global_config.train_mode")]
    assert "bool" in err.errors[0].expected


@pytest.mark.parametrize("value", [(1, 2), jnp.ones(2), np.ones(2), jnp.float32(1), {1, 2}])
def test_config_non_json_value(value):
    tree, _ = model()
    err = problems(tree, {"train_mode": True, "x": value})
    assert where(err) == [("", "global_config.x")]


@pytest.mark.wrong_types
def test_config_non_str_key_and_non_dict_config():
    tree, _ = model()
    assert ("", "global_config.3") in where(problems(tree, {"train_mode": True, 3: 1}))
    err = problems(node(), ["train_mode"])
    assert len(err.errors) == 1 and err.errors[0].key.startswith("global_config")


def test_config_json_values_are_accepted():
    tree, _ = model()
    config = {"train_mode": True, "a": [1, 2.5, "s", None, {"b": [True]}], "c": {"d": {}}}
    assert hax.validate(tree, config, unknown_keys=False) is tree


def test_config_nested_bad_value_key():
    err = problems(node(), {"x": {"a": [1, (2,)]}})
    assert where(err) == [("", "global_config.x.a.1")]


def test_config_int_accepted_for_float_key():
    tree = scaled_node()
    assert hax.validate(tree, {"scale": 1}) is tree


def test_global_config_none_skips_config_checks():
    tree, _ = model()
    assert hax.validate(tree, None) is tree
    assert hax.validate(tree) is tree


def test_config_reader_of_a_nested_node():
    outer = node(submodules={"m": model()[0]})
    err = problems(outer, {})
    assert where(err) == [("", "global_config.train_mode")]
    assert "at m/1" in err.errors[0].expected


# ---------------------------------------------------------------- reporting


def test_every_problem_in_one_error():
    tree, _ = model()
    tree["extra"] = 1
    tree["submodules"]["0"]["params"]["bias"] = jnp.zeros((1,))
    tree["submodules"]["0"]["aux"]["bias"] = "yes"
    tree["submodules"]["1"]["buffers"]["rng"] = jnp.zeros(())
    tree["submodules"]["2"]["apply"] = 7
    tree["submodules"]["3"] = node(params={"w": None}, submodules={"": node()})
    err = problems(tree, {"train_mode": 1})
    assert isinstance(err, ValueError)
    got = set(where(err))
    assert got == {
        ("", "extra"),
        ("0", "params.bias"),
        ("0", "aux.bias"),
        ("1", "buffers.rng"),
        ("2", "apply"),
        ("3", "params.w"),
        ("3", "submodules.''"),
        ("", "global_config.train_mode"),
    }
    # rng is reported for its dtype and its shape is fine: one problem per (path, key)
    # except where both dtype and shape are wrong.
    assert len(err.errors) == len(got)
    lines = str(err).splitlines()
    assert len(lines) == 1 + len(err.errors)
    assert lines[0].startswith(f"{len(err.errors)} problems")
    for line, p in zip(lines[1:], err.errors, strict=True):
        assert line.strip() == str(p)
        assert line.strip().startswith(f"{p.path or '<root>'}: {p.key}: expected ")


def test_problem_str():
    p = hax.schema.Problem("a/b", "params.w", "a str", "an array", "hint here")
    assert str(p) == "a/b: params.w: expected an array, found a str — hint here"
    assert str(hax.schema.Problem("", "apply", "x", "y")) == "<root>: apply: expected y, found x"
    err = hax.ValidationError([p])
    assert isinstance(err, ValueError)
    assert str(err).splitlines() == ["1 problem found by hax.validate:", f"  {p}"]


def test_messages_never_include_array_contents():
    big = 123456.0
    lin = linear(3, 4)
    lin["params"]["bias"] = jnp.full((3,), big)
    lin["params"]["weight"] = jnp.full((4, 2), big, jnp.int32)
    lin["params"]["extra"] = np.full((2,), big)
    tree = node(
        aux={"arr": np.full((2,), big)},
        params={"bad": [jnp.full((2,), big), "s"], "lst": [123456]},
        submodules={"lin": lin},
    )
    err = problems(tree, {"x": jnp.full((2,), big), "y": np.full((2,), big)})
    assert len(err.errors) >= 7
    assert "123456" not in str(err)
    assert all("123456" not in f"{p.found}{p.expected}{p.hint}" for p in err.errors)


# ---------------------------------------------------------------- a user-written layer


class MyParams(TypedDict):
    a: Float[Array, "n m"]
    b: Float[Array, " m"]
    batched: NotRequired[Float[Array, "*batch n"]]
    fixed: NotRequired[Float[Array, "3 n"]]
    bcast: NotRequired[Float[Array, "#n"]]


class MyBuffers(TypedDict):
    count: NotRequired[Int[Array, ""]]
    stats: NotRequired[Float[Array, "*batch m"]]


def my_apply(tree, global_config, x):
    return tree, x @ tree["params"]["a"] + tree["params"]["b"]


register_spec(
    my_apply,
    layer_spec(
        "MyLayer", params=MyParams, buffers=MyBuffers, aux={"n": int}, config={"scale": float}
    ),
)


def my_node(n=2, buffers=None, **shapes):
    params = {name: jnp.zeros(shape) for name, shape in shapes.items()}
    return node(params=params, buffers=buffers or {}, aux={"n": n}, apply=my_apply)


def test_user_layer_valid():
    for tree in (
        my_node(a=(2, 5), b=(5,)),
        my_node(a=(2, 0), b=(0,)),
        my_node(a=(2, 5), b=(5,), batched=(2,), fixed=(3, 2), bcast=(1,)),
        my_node(a=(2, 5), b=(5,), batched=(7, 8, 9, 2), bcast=(2,)),
        my_node(n=4, a=(4, 1), b=(1,), fixed=(3, 4)),
        my_node(a=(2, 5), b=(5,), buffers={"count": jnp.zeros((), jnp.int32)}),
    ):
        assert hax.validate(tree) is tree
    assert hax.validate(my_node(a=(2, 5), b=(5,)), {"scale": 0.5})


def test_user_layer_named_dim_shared_across_arrays():
    err = problems(nested(my_node(a=(2, 5), b=(4,))))
    assert where(err) == [("a/b", "params.b")]
    assert err.errors[0].expected == "shape (m=5,)"
    assert err.errors[0].found == "shape (4,)"


def test_user_layer_named_dim_bound_from_aux():
    err = problems(my_node(a=(3, 5), b=(5,)))
    assert where(err) == [("", "params.a")]
    assert "n=2" in err.errors[0].expected


def test_user_layer_named_dim_shared_between_params_and_buffers():
    tree = my_node(a=(2, 5), b=(5,), buffers={"stats": jnp.zeros((7, 5))})
    assert hax.validate(tree) is tree
    err = problems(my_node(a=(2, 5), b=(5,), buffers={"stats": jnp.zeros((7, 6))}))
    assert where(err) == [("", "buffers.stats")]


def test_user_layer_variadic_dims_shared():
    tree = my_node(a=(2, 5), b=(5,), batched=(7, 8, 2), buffers={"stats": jnp.zeros((7, 8, 5))})
    assert hax.validate(tree) is tree
    err = problems(
        my_node(a=(2, 5), b=(5,), batched=(7, 8, 2), buffers={"stats": jnp.zeros((7, 5))})
    )
    assert where(err) == [("", "buffers.stats")]


@pytest.mark.parametrize("shape", [(), (7, 3), (2, 7)])
def test_user_layer_variadic_still_checks_named_tail(shape):
    err = problems(my_node(a=(2, 5), b=(5,), batched=shape))
    assert where(err) == [("", "params.batched")]


@pytest.mark.parametrize("shape", [(4, 2), (2,), (3, 3), (3, 2, 1)])
def test_user_layer_fixed_dim(shape):
    err = problems(my_node(a=(2, 5), b=(5,), fixed=shape))
    assert where(err) == [("", "params.fixed")]


@pytest.mark.parametrize("shape", [(3,), (2, 2), ()])
def test_user_layer_broadcastable_dim(shape):
    err = problems(my_node(a=(2, 5), b=(5,), bcast=shape))
    assert where(err) == [("", "params.bcast")]


def test_user_layer_required_entries_and_dtypes():
    err = problems(my_node(b=(5,)))
    assert where(err) == [("", "params.a")]
    tree = my_node(a=(2, 5), b=(5,), buffers={"count": jnp.zeros((), jnp.float32)})
    err = problems(tree)
    assert where(err) == [("", "buffers.count")]
    assert "Int" in err.errors[0].expected


def test_user_layer_aux_and_config():
    tree = my_node(a=(2, 5), b=(5,))
    del tree["aux"]["n"]
    assert where(problems(tree)) == [("", "aux.n")]
    err = problems(nested(my_node(a=(2, 5), b=(5,))), {})
    assert where(err) == [("", "global_config.scale")]
    assert "MyLayer at a/b" in err.errors[0].expected


def test_layer_without_spec_gets_structural_checks_only():
    tree = node(params={"a": jnp.zeros((3, 7)), "b": jnp.zeros((11,), jnp.int8)})
    assert hax.validate(tree, {}) is tree
    tree["params"]["c"] = "not an array"
    assert where(problems(tree)) == [("", "params.c")]


def scale_apply(tree, global_config, x):
    return tree, x * global_config["scale"]


register_spec(scale_apply, layer_spec("Scale", config={"scale": float}))


def scaled_node():
    return node(apply=scale_apply)


def test_register_spec_returns_the_function_and_rejects_non_functions():
    assert hax.schema.spec_of(scale_apply).kind == "Scale"
    assert hax.schema.spec_of(plain_apply) is None
    with pytest.raises(TypeError):
        register_spec(print, layer_spec("Print"))


def test_layer_spec_rejects_non_jaxtyping_annotations():
    with pytest.raises(TypeError):
        layer_spec("Bad", params={"w": int})


def optional_apply(tree, global_config, x):
    return tree, x


register_spec(
    optional_apply,
    layer_spec("Optional", aux={"padding_idx": int | None}, config={"mode": str | None}),
)


@pytest.mark.parametrize("value", [None, 3])
def test_spec_aux_and_config_types_may_be_unions(value):
    tree = node(apply=optional_apply, aux={"padding_idx": value})
    assert hax.validate(tree, {"mode": None}) is tree
    assert hax.validate(tree, {"mode": "a"}) is tree


def test_spec_union_types_report_every_member():
    err = problems(node(apply=optional_apply, aux={"padding_idx": "3"}), {"mode": 1})
    assert where(err) == [("", "aux.padding_idx"), ("", "global_config.mode")]
    assert err.errors[0].expected == "an int or None"
    assert err.errors[0].found == "a str"
    assert err.errors[1].expected.startswith("a str or None (read by the Optional at <root>)")
    err = problems(node(apply=optional_apply, aux={}), {})
    assert err.errors[0].expected == "an int or None (the Optional needs it)"
    assert err.errors[1].expected.startswith("a str or None (")


# ---------------------------------------------------------------- deep trees


def test_very_deep_tree():
    depth = 2000
    root = node()
    current = root
    for _ in range(depth):
        child = node(params={"w": jnp.zeros(1)})
        current["submodules"]["c"] = child
        current = child
    assert hax.validate(root) is root
    current["params"]["w"] = "corrupt"
    err = problems(root)
    assert where(err) == [("/".join(["c"] * depth), "params.w")]


# ---------------------------------------------------------------- property-based

NAMES = st.text(alphabet="abcdefgxyz0123456789_", min_size=1, max_size=6)
DTYPES = st.sampled_from([np.float32, np.float16, np.int32, np.bool_])
SHAPES = st.lists(st.integers(0, 4), max_size=3).map(tuple)
AUX_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3).map(tuple),
    max_leaves=6,
)


def positional_only_apply(tree, global_config, /, *args):
    return tree, args


APPLIES = st.sampled_from([plain_apply, other_apply, hax.missing_apply, positional_only_apply])


@st.composite
def arrays(draw):
    shape, dtype = draw(SHAPES), draw(DTYPES)
    array = np.zeros(shape, dtype)
    return jnp.asarray(array) if draw(st.booleans()) else array  # no compile per shape


@st.composite
def array_trees(draw):
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return {"a": draw(arrays()), "b": [draw(arrays())]}
    if kind == 1:
        return (draw(arrays()),)
    return draw(arrays())


@st.composite
def valid_trees(draw, depth=0):
    width = draw(st.integers(0, 3)) if depth < 4 else 0
    return {
        "params": draw(st.dictionaries(NAMES, array_trees(), max_size=3)),
        "buffers": draw(st.dictionaries(NAMES, array_trees(), max_size=2)),
        "aux": draw(st.dictionaries(NAMES, AUX_VALUES, max_size=3)),
        "apply": draw(APPLIES),
        "submodules": draw(st.dictionaries(NAMES, valid_trees(depth + 1), max_size=width)),
    }


def all_nodes(tree):
    """`(path string, node)` for every node, iteratively."""
    out, stack = [], [("", tree)]
    while stack:
        path, n = stack.pop()
        out.append((path, n))
        prefix = f"{path}/" if path else ""
        stack.extend((f"{prefix}{name}", c) for name, c in n["submodules"].items())
    return out


PROPERTY = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROPERTY
@given(valid_trees())
def test_random_valid_trees_validate(tree):
    assert hax.validate(tree) is tree
    assert hax.validate(tree, {"scale": 1.5, "train_mode": False}, unknown_keys=False) is tree


CORRUPTIONS = [
    "drop_kind",
    "unknown_key",
    "param_list",
    "param_str",
    "param_none",
    "aux_list",
    "apply_not_callable",
    "empty_name",
    "slash_name",
    "child_int",
    "shared_child",
]


def corrupt(n, how, draw):
    """Apply corruption `how` to node `n` in place; returns True for child-level ones."""
    if how == "drop_kind":
        del n[draw(st.sampled_from(["params", "buffers", "aux", "apply", "submodules"]))]
    elif how == "unknown_key":
        n[draw(st.sampled_from(["constants", "param", "extra", "Params"]))] = {}
    elif how.startswith("param_"):
        bad = {"param_list": [1, 2], "param_str": "w", "param_none": None}[how]
        names = sorted(n["params"])
        name = draw(st.sampled_from(names)) if names else "new"
        n["params"][name] = bad
    elif how == "aux_list":
        n["aux"][draw(NAMES)] = [1, 2]
    elif how == "apply_not_callable":
        n["apply"] = draw(st.sampled_from([None, 1, "apply", (plain_apply,)]))
    elif how == "empty_name":
        n["submodules"][""] = node()
    elif how == "slash_name":
        n["submodules"]["a/b"] = node()
    elif how == "child_int":
        names = sorted(n["submodules"])
        name = draw(st.sampled_from(names)) if names else "new"
        n["submodules"][name] = 3
        return True
    elif how == "shared_child":
        names = sorted(n["submodules"])
        child = n["submodules"][draw(st.sampled_from(names))] if names else node()
        n["submodules"]["~dup1"] = child
        n["submodules"]["~dup2"] = child
        return True
    return False


@PROPERTY
@given(valid_trees(), st.data())
def test_random_corruption_is_reported_at_its_path(tree, data):
    path, n = data.draw(st.sampled_from(all_nodes(tree)))
    how = data.draw(st.sampled_from(CORRUPTIONS))
    child_level = corrupt(n, how, data.draw)
    with pytest.raises(hax.ValidationError) as info:
        hax.validate(tree)
    paths = [p.path for p in info.value.errors]
    if child_level:
        prefix = f"{path}/" if path else ""
        assert any(p == path or p.startswith(prefix) for p in paths), (how, path, paths)
    else:
        assert path in paths, (how, path, paths)


# ---------------------------------------------------------------- constructors validate


def organizer_apply(tree, global_config, x):
    return tree, x


def test_create_module_validates_registered_child():
    bad = linear(3, 4)
    bad["params"]["bias"] = jnp.zeros((1,))
    org = hax.StateOrganizer()
    org.fc = (bad, {})
    org.scale = jnp.ones(3)
    with pytest.raises(hax.ValidationError) as info:
        org.create_module(organizer_apply)
    assert where(info.value) == [("fc", "params.bias")]


@pytest.mark.wrong_types
def test_create_module_validates_params_and_buffers():
    org = hax.StateOrganizer()
    org.register_param("w", None)
    org.register_buffer("b", "not an array")
    org.register_aux("cfg", [1, 2])
    with pytest.raises(hax.ValidationError) as info:
        org.create_module(organizer_apply)
    assert set(where(info.value)) == {("", "params.w"), ("", "buffers.b"), ("", "aux.cfg")}


def own_keys_apply(tree, config, x):
    return tree, x


def test_create_module_validates_config():
    org = hax.StateOrganizer()
    org.drop = nn.Dropout(0.5, rng=0)
    with pytest.raises(hax.ValidationError) as info:
        org.create_module(hax.reads_config(own_keys_apply, {"x": tuple}), {"x": (1, 2)})
    assert where(info.value) == [("", "global_config.x")]


def test_create_module_returns_a_valid_module():
    org = hax.StateOrganizer()
    org.fc = nn.Linear(3, 4, rng=0)
    org.register_aux("k", (1, "a"))
    tree, config = org.create_module(organizer_apply)
    assert hax.validate(tree, config) is tree


@pytest.mark.wrong_types
def test_sequential_validates_children():
    bad = linear(3, 4)
    bad["params"]["bias"] = jnp.zeros((64,))
    with hax.rng_context(0), pytest.raises(hax.ValidationError) as info:
        nn.Sequential(nn.Linear(2, 3), bad)
    assert where(info.value) == [("1", "params.bias")]

    extra = linear(3, 4)
    extra["constants"] = {}
    with pytest.raises(hax.ValidationError) as info:
        nn.Sequential((extra, {}))
    assert where(info.value) == [("0", "constants")]

    nested_bad = node(submodules={"x": node(apply=3)})
    with pytest.raises(hax.ValidationError) as info:
        nn.Sequential((nested_bad, {}))
    assert where(info.value) == [("0/x", "apply")]


def test_sequential_rejects_a_shared_child():
    lin = nn.Linear(2, 2, rng=0)
    with pytest.raises(hax.ValidationError) as info:
        nn.Sequential(lin, lin)
    assert where(info.value) == [("1", "<node>")]


def test_every_child_is_checked_once_even_under_an_invalid_name():
    linear, _ = nn.Linear(2, 2, rng=0)
    bad_child = {**linear, "params": {"weight": jnp.zeros((3, 3)), "bias": jnp.zeros(2)}}
    root = hax.empty_tree()
    root["submodules"] = {"x": [1, 2], "a/b": bad_child}
    with pytest.raises(hax.ValidationError) as info:
        hax.validate(root)
    assert sorted((p.path, p.key) for p in info.value.errors) == [
        ("", "submodules.'a/b'"),
        ("", "submodules.x"),
        ("'a/b'", "params.weight"),
    ]
