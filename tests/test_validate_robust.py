"""`hax.validate` on hostile and extreme input: self-containing and very deep values,
array-likes that are not arrays, user objects that raise, aux flags that disagree
with the params, and the exact pre-check and config walk that must agree with the
pydantic schemas. Every such input gives a `ValidationError` (or passes), never a
crash, and leaves the interpreter working."""

import collections
import dataclasses
import tracemalloc
from typing import Any, NamedTuple, NotRequired
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from jaxtyping import Array, Float
from typing_extensions import TypedDict

import hax
from hax import nn
from hax._leaves import name_problems
from hax.schema import (
    CONFIG_ADAPTER,
    NODE_ADAPTER,
    PYTREE_DEPTH_LIMIT,
    layer_spec,
    register_spec,
)
from hax.schema._config import _value_path, json_problems
from hax.schema._errors import describe
from hax.schema._precheck import node_passes
from hax.schema._values import ARRAY_CLASSES

# ---------------------------------------------------------------- helpers


def plain_apply(tree, global_config, x):
    return tree, x


def node(**kinds):
    tree = {"params": {}, "buffers": {}, "aux": {}, "apply": plain_apply, "submodules": {}}
    tree.update(kinds)
    return tree


def problems(tree, global_config=None):
    """The problems `hax.validate` reports; config keys no node reads are left out
    (the configs here test the JSON rules, with keys of their own)."""
    with pytest.raises(hax.ValidationError) as info:
        hax.validate(tree, global_config, unknown_keys=False)
    return info.value


def where(err):
    return [(p.path, p.key) for p in err.errors]


def linear(*args, **kwargs):
    tree, _ = nn.Linear(*args, rng=0, **kwargs)
    return tree


def assert_interpreter_works():
    """A RecursionError deep inside JAX's C++ flattening used to leave it broken."""
    assert jnp.ones(2).tolist() == [1.0, 1.0]
    assert jax.tree_util.tree_leaves({"a": [1, 2]}) == [1, 2]


def nest(leaf, depth, wrap):
    for _ in range(depth):
        leaf = wrap(leaf)
    return leaf


# ---------------------------------------------------------------- params: cycles and depth


@pytest.mark.parametrize("kind", ["params", "buffers"])
def test_params_dict_that_contains_itself_is_a_problem(kind):
    entries = {"w": jnp.ones(2)}
    entries["self"] = entries
    err = problems(node(submodules={"a": node(**{kind: entries})}))
    assert where(err) == [("a", f"{kind}.self")]
    assert "contains itself" in err.errors[0].found
    assert "without cycles" in err.errors[0].expected
    assert_interpreter_works()


def test_param_list_that_contains_itself_deeper_down():
    inner = [jnp.ones(1)]
    inner.append({"back": inner})
    err = problems(node(params={"w": inner}))
    assert where(err) == [("", "params.w")]
    assert err.errors[0].found == "a list that contains itself at 1/back"
    assert_interpreter_works()


@pytest.mark.parametrize(
    "wrap",
    [lambda x: {"a": x}, lambda x: [x], lambda x: (x,)],
    ids=["dict", "list", "tuple"],
)
@pytest.mark.parametrize("depth", [1_000, 5_000])
def test_params_pytree_nested_past_the_limit_is_a_problem(wrap, depth):
    err = problems(node(params={"w": nest(jnp.ones(2), depth, wrap)}))
    assert where(err) == [("", "params.w")]
    assert f"at most {PYTREE_DEPTH_LIMIT} levels deep" in err.errors[0].expected
    assert_interpreter_works()


def test_params_pytree_at_the_depth_limit_is_valid_and_jax_can_flatten_it():
    deep = nest(jnp.ones(2), PYTREE_DEPTH_LIMIT, lambda x: {"a": x})
    tree = node(params={"w": deep})
    assert hax.validate(tree) is tree
    assert len(jax.tree_util.tree_leaves(tree["params"])) == 1
    tree["params"]["w"] = {"a": deep}
    assert where(problems(tree)) == [("", "params.w")]


def test_shared_param_subtree_is_not_a_cycle():
    shared = [jnp.ones(1), jnp.ones(2)]
    tree = node(params={"w": {"a": shared, "b": shared}, "v": shared})
    assert hax.validate(tree) is tree


def test_param_dict_with_keys_jax_cannot_sort():
    err = problems(node(params={"w": {1: jnp.ones(1), "a": jnp.ones(1)}}))
    assert where(err) == [("", "params.w")]
    assert "whose flattening raised" in err.errors[0].found
    assert_interpreter_works()


# ---------------------------------------------------------------- array-likes


class Tensor:
    """Looks like an array (shape, dtype) but is not a JAX or NumPy one."""

    shape = (4, 3)
    dtype = object()


@pytest.mark.parametrize(
    ("make", "type_name"),
    [
        (Tensor, "Tensor"),
        (lambda: mock.Mock(shape=(4, 3), dtype=object()), "Mock"),
        (mock.MagicMock, "MagicMock"),
        (lambda: mock.Mock(shape=(4, 3), dtype="float32"), "Mock"),
    ],
)
def test_array_like_param_of_a_layer_is_a_problem(make, type_name):
    lin = linear(3, 4)
    lin["params"]["weight"] = make()
    err = problems(lin)
    assert where(err) == [("", "params.weight")]
    assert err.errors[0].expected.startswith("a JAX or NumPy array")
    assert err.errors[0].found == f"a {type_name}"


def test_torch_tensor_param_is_a_problem():
    torch = pytest.importorskip("torch")
    for tensor in (torch.zeros(4, 3), torch.zeros(4, 3, dtype=torch.int32)):
        lin = linear(3, 4)
        lin["params"]["weight"] = tensor
        err = problems(lin)
        assert where(err) == [("", "params.weight")]
        assert err.errors[0].found == "a Tensor"
        assert "expected a JAX or NumPy array" in str(err)


def test_object_that_claims_to_be_a_jax_array_but_has_no_readable_shape():
    fake = mock.Mock(spec=jax.Array)  # isinstance(fake, jax.Array) is True
    assert isinstance(fake, jax.Array)
    lin = linear(3, 4)
    lin["params"]["weight"] = fake
    err = problems(lin)
    assert where(err) == [("", "params.weight")]
    assert "whose shape or dtype raised" in err.errors[0].found


# ---------------------------------------------------------------- aux and config depth


@pytest.mark.parametrize("depth", [340, 5_000])
def test_deeply_nested_aux_tuple(depth):
    tree = node(aux={"x": nest((), depth, lambda x: (x, 1))})
    assert hax.validate(tree) is tree
    tree["aux"]["x"] = nest([1], depth, lambda x: (1, x))  # a list at the bottom
    err = problems(tree)
    assert where(err) == [("", "aux.x")]
    assert err.errors[0].found == "a tuple"


@pytest.mark.parametrize("depth", [260, 3_000])
@pytest.mark.parametrize("wrap", [lambda x: {"a": x}, lambda x: [x]], ids=["dict", "list"])
def test_deeply_nested_config(depth, wrap):
    tree = node()
    assert hax.validate(tree, {"k": nest(None, depth, wrap)}, unknown_keys=False) is tree
    err = problems(tree, {"k": nest((1,), depth, wrap)})
    assert len(err.errors) == 1
    key = err.errors[0].key
    assert key.startswith("global_config.k.") and key.count(".") == depth + 1
    assert err.errors[0].found == "a tuple"


@pytest.mark.parametrize(("key", "named"), [(b"k", "b'k'"), (1.5, "'1.5'"), ((1,), "(1,)")])
def test_config_key_that_is_not_a_str_is_named(key, named):
    err = problems(node(), {"a": {"ok": 1, key: 2}})
    assert where(err) == [("", f"global_config.a.{named}")]
    assert err.errors[0].found == describe(key)


def test_config_that_contains_itself():
    config: dict[str, Any] = {"a": [1]}
    config["a"].append(config)
    err = problems(node(), config)
    assert where(err) == [("", "global_config.a.1")]
    assert "contains itself" in err.errors[0].found


def test_shared_config_subvalue_is_not_a_cycle():
    shared = {"x": [1, 2]}
    assert hax.validate(node(), {"a": shared, "b": [shared, shared]}, unknown_keys=False)


# ---------------------------------------------------------------- user objects that raise


class Raising:
    """Every dunder a checker might touch raises; `__call__` works."""

    def __eq__(self, other):
        raise RuntimeError("__eq__")

    def __hash__(self):
        raise RuntimeError("__hash__")

    def __repr__(self):
        raise RuntimeError("__repr__")

    def __str__(self):
        raise RuntimeError("__str__")

    def __bool__(self):
        raise RuntimeError("__bool__")

    def __len__(self):
        raise RuntimeError("__len__")

    def __call__(self, tree, global_config, *args):
        return tree, args


class Hostile:
    """Like `Raising`, with a working `repr`, so that hypothesis can show examples."""

    def __eq__(self, other):
        raise RuntimeError("__eq__")

    def __hash__(self):
        raise RuntimeError("__hash__")

    def __bool__(self):
        raise RuntimeError("__bool__")

    def __len__(self):
        raise RuntimeError("__len__")

    def __repr__(self):
        return "Hostile()"

    def __call__(self, tree, global_config, *args):
        return tree, args


class RaisingSignature:
    def __call__(self, *args):
        return args

    @property
    def __signature__(self):
        raise RuntimeError("__signature__")


class RaisingShape:
    @property
    def shape(self):
        raise RuntimeError("shape")

    dtype = np.dtype("float32")


class RaisingKey:
    """Hashable once (it is a dict key), raising in every other dunder."""

    def __hash__(self):
        return 7

    def __eq__(self, other):
        raise RuntimeError("__eq__")

    def __repr__(self):
        raise RuntimeError("__repr__")

    def __str__(self):
        raise RuntimeError("__str__")


@pytest.mark.parametrize("value", [Raising(), (1, Raising()), [Raising()]])
def test_aux_value_whose_dunders_raise(value):
    err = problems(node(aux={"x": value}))
    assert where(err) == [("", "aux.x")]
    assert "hashable JSON-like" in err.errors[0].expected


class RaisingHash:
    def __hash__(self):
        raise RuntimeError("__hash__")

    def __call__(self, tree, global_config, *args):
        return tree, args


def test_callable_apply_whose_hash_raises_is_a_valid_apply():
    """Applies are cached by identity: their `__hash__` never runs."""
    tree = node(apply=RaisingHash(), submodules={"a": node(apply=RaisingHash())})
    assert hax.validate(tree) is tree


@pytest.mark.parametrize("apply", [Raising(), RaisingSignature()])
def test_apply_whose_signature_cannot_be_read(apply):
    """`inspect.signature` compares the callable (`__eq__`) and reads `__signature__`."""
    err = problems(node(submodules={"a": node(apply=apply)}))
    assert where(err) == [("a", "apply")]
    assert err.errors[0].found == f"a {type(apply).__name__} whose signature raised RuntimeError"


@pytest.mark.parametrize("value", [Raising(), RaisingShape()])
def test_param_whose_dunders_or_shape_raise(value):
    lin = linear(3, 4)
    lin["params"]["weight"] = value
    err = problems(lin)
    assert where(err) == [("", "params.weight")]
    assert err.errors[0].found == f"a {type(value).__name__}"


def test_aux_dimension_whose_eq_raises_while_a_shape_is_wrong():
    lin = linear(3, 4)
    lin["aux"]["out_features"] = Raising()  # compared with the weight's rows in the hint
    lin["params"]["bias"] = jnp.zeros(3)
    err = problems(lin)
    assert set(where(err)) == {("", "aux.out_features"), ("", "params.bias")}


def test_names_whose_dunders_raise():
    key = RaisingKey()
    tree = node(params={key: jnp.ones(1)}, aux={key: 1}, submodules={key: node(apply=3)})
    err = problems(tree)
    assert [p.key.split(".")[0] for p in err.errors if p.path == ""] == [
        "params",
        "aux",
        "submodules",
    ]
    assert [(p.path, p.key) for p in err.errors if p.path] == [("<RaisingKey>", "apply")]


@pytest.mark.wrong_types
def test_config_objects_whose_dunders_raise():
    tree, _ = nn.Dropout(0.5, rng=0)
    err = problems(tree, {"train_mode": True, "x": Raising(), "y": [Raising()]})
    assert where(err) == [("", "global_config.x"), ("", "global_config.y.0")]

    class RaisingMapping(collections.abc.Mapping):
        def __getitem__(self, key):
            raise RuntimeError("__getitem__")

        def __iter__(self):
            raise RuntimeError("__iter__")

        def __len__(self):
            raise RuntimeError("__len__")

    err = problems(tree, RaisingMapping())
    assert all(p.key.startswith("global_config") for p in err.errors)


def test_dict_subclass_node_whose_methods_raise():
    class Node(dict):
        def get(self, *args):
            raise RuntimeError("get")

        def items(self):
            raise RuntimeError("items")

        def __getitem__(self, key):
            raise RuntimeError("__getitem__")

    tree = node(submodules={"a": Node(node())})
    err = problems(tree)  # whatever the schema says of a dict subclass, never a crash
    assert all(p.path in ("", "a") for p in err.errors)
    assert_interpreter_works()


# ---------------------------------------------------------------- layer entries


@pytest.mark.parametrize("empty", [[], (), {}])
def test_empty_pytree_where_a_layer_declares_an_array(empty):
    lin = linear(3, 4)
    lin["params"]["weight"] = empty
    err = problems(lin)
    assert where(err) == [("", "params.weight")]
    assert err.errors[0].found == describe(empty)
    assert err.errors[0].expected == "an array (out_features=4, in_features=3)"


def test_pytree_of_arrays_where_a_layer_declares_one_array():
    lin = linear(3, 4)
    lin["params"]["bias"] = [jnp.zeros(4)]
    err = problems(lin)
    assert where(err) == [("", "params.bias")]
    assert err.errors[0].found == "a list"


def test_a_non_array_entry_is_reported_once():
    lin = linear(3, 4)
    lin["params"]["weight"] = ["not an array"]
    err = problems(lin)
    assert where(err) == [("", "params.weight")]
    assert "non-array leaves" in err.errors[0].found


def _mha(**kwargs):
    return nn.MultiheadAttention(8, 2, rng=0, **kwargs)[0]


def flagged(layer, with_it, without_it, kind, name):
    """A case: constructors with the flag(s) on and off, and the entry they decide."""
    return pytest.param(with_it, without_it, kind, name, id=f"{layer}-{kind}.{name}")


FLAGGED = [
    flagged("Linear", lambda: linear(3, 4), lambda: linear(3, 4, bias=False), "params", "bias"),
    flagged(
        "Bilinear",
        lambda: nn.Bilinear(2, 3, 4, rng=0)[0],
        lambda: nn.Bilinear(2, 3, 4, bias=False, rng=0)[0],
        "params",
        "bias",
    ),
    *[
        flagged(
            conv.__name__,
            lambda conv=conv: conv(2, 4, 3, rng=0)[0],
            lambda conv=conv: conv(2, 4, 3, bias=False, rng=0)[0],
            "params",
            "bias",
        )
        for conv in (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)
    ],
    flagged(
        "BatchNorm1d",
        lambda: nn.BatchNorm1d(4)[0],
        lambda: nn.BatchNorm1d(4, affine=False)[0],
        "params",
        "weight",
    ),
    flagged(
        "BatchNorm2d(bias=False)",
        lambda: nn.BatchNorm2d(4)[0],
        lambda: nn.BatchNorm2d(4, bias=False)[0],
        "params",
        "bias",
    ),
    flagged(
        "BatchNorm2d(affine=False)",
        lambda: nn.BatchNorm2d(4)[0],
        lambda: nn.BatchNorm2d(4, affine=False)[0],
        "params",
        "bias",
    ),
    *[
        flagged(
            "BatchNorm1d",
            lambda: nn.BatchNorm1d(4)[0],
            lambda: nn.BatchNorm1d(4, track_running_stats=False)[0],
            "buffers",
            name,
        )
        for name in ("running_mean", "running_var", "num_batches_tracked")
    ],
    flagged(
        "LayerNorm",
        lambda: nn.LayerNorm(4)[0],
        lambda: nn.LayerNorm(4, elementwise_affine=False)[0],
        "params",
        "weight",
    ),
    flagged(
        "LayerNorm",
        lambda: nn.LayerNorm(4)[0],
        lambda: nn.LayerNorm(4, bias=False)[0],
        "params",
        "bias",
    ),
    flagged(
        "RMSNorm",
        lambda: nn.RMSNorm(4)[0],
        lambda: nn.RMSNorm(4, elementwise_affine=False)[0],
        "params",
        "weight",
    ),
    flagged(
        "GroupNorm",
        lambda: nn.GroupNorm(2, 4)[0],
        lambda: nn.GroupNorm(2, 4, affine=False)[0],
        "params",
        "weight",
    ),
    flagged(
        "GroupNorm",
        lambda: nn.GroupNorm(2, 4)[0],
        lambda: nn.GroupNorm(2, 4, bias=False)[0],
        "params",
        "bias",
    ),
    flagged("MultiheadAttention", _mha, lambda: _mha(bias=False), "params", "in_proj_bias"),
    flagged("MultiheadAttention", lambda: _mha(add_bias_kv=True), _mha, "params", "bias_k"),
    flagged("MultiheadAttention", lambda: _mha(add_bias_kv=True), _mha, "params", "bias_v"),
]


@pytest.mark.parametrize(("with_it", "without_it", "kind", "name"), FLAGGED)
def test_optional_entry_must_agree_with_its_aux_flag(with_it, without_it, kind, name):
    full, bare = with_it(), without_it()
    assert name in full[kind] and name not in bare[kind]
    assert hax.validate(full) is full and hax.validate(bare) is bare

    del full[kind][name]  # the flags say it is there
    err = problems(node(submodules={"m": full}))
    assert where(err) == [("m", f"{kind}.{name}")]
    assert err.errors[0].found == "nothing"
    assert "=True means the" in err.errors[0].hint

    bare[kind][name] = with_it()[kind][name]  # the flags say it is not
    err = problems(bare)
    assert where(err) == [("", f"{kind}.{name}")]
    assert err.errors[0].expected == "no entry"
    assert "=False means the" in err.errors[0].hint


def test_linear_bias_flag_messages():
    lin = linear(3, 4)
    del lin["params"]["bias"]
    assert str(problems(lin).errors[0]) == (
        "<root>: params.bias: expected an array (out_features=4,), found nothing"
        " — aux bias=True means the Linear has params.bias"
    )
    lin = linear(3, 4, bias=False)
    lin["params"]["bias"] = jnp.zeros(4)
    assert str(problems(lin).errors[0]) == (
        "<root>: params.bias: expected no entry, found an entry"
        " — aux bias=False means the Linear has no params.bias"
    )


def test_flag_of_the_wrong_type_is_reported_once():
    lin = linear(3, 4)
    lin["aux"]["bias"] = "yes"
    assert where(problems(lin)) == [("", "aux.bias")]


class ScaleParams(TypedDict):
    scale: NotRequired[Float[Array, " n"]]


def scale_apply(tree, global_config, x):
    return tree, x


register_spec(
    scale_apply,
    layer_spec(
        "Scale",
        params=ScaleParams,
        aux={"n": int, "learned": bool, "enabled": bool},
        present_if={"scale": ("learned", "enabled")},
    ),
)


@pytest.mark.parametrize(("learned", "enabled"), [(True, True), (True, False), (False, True)])
def test_user_layer_with_two_flags(learned, enabled):
    aux = {"n": 2, "learned": learned, "enabled": enabled}
    present = node(apply=scale_apply, aux=aux, params={"scale": jnp.ones(2)})
    absent = node(apply=scale_apply, aux=aux)
    valid, invalid = (present, absent) if learned and enabled else (absent, present)
    assert hax.validate(valid) is valid
    err = problems(invalid)
    assert where(err) == [("", "params.scale")]
    if not (learned and enabled):
        off = [f"{f}=False" for f, v in (("learned", learned), ("enabled", enabled)) if not v]
        assert err.errors[0].hint == f"aux {' and '.join(off)} means the Scale has no params.scale"


class RequiredParams(TypedDict):
    w: Float[Array, " n"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"params": RequiredParams, "aux": {"on": bool}, "present_if": {"w": "on"}},  # required
        {"params": ScaleParams, "aux": {"on": bool}, "present_if": {"other": "on"}},  # unknown
        {"params": ScaleParams, "aux": {"on": int}, "present_if": {"scale": "on"}},  # not bool
        {"params": ScaleParams, "present_if": {"scale": "on"}},  # undeclared flag
    ],
)
def test_present_if_must_name_optional_entries_and_bool_flags(kwargs):
    with pytest.raises(TypeError, match=r"present_if (names|flag)"):
        layer_spec("Bad", **kwargs)


# ---------------------------------------------------------------- deep trees: paths


def chain(depth, name="child"):
    root = current = linear(2, 2)
    for _ in range(depth - 1):
        child = linear(2, 2)
        current["submodules"][name] = child
        current = child
    return root, current


def test_deep_chain_reports_the_full_path():
    root, bottom = chain(3_000)
    assert hax.validate(root) is root
    bottom["params"]["bias"] = jnp.zeros(3)
    bottom["submodules"]["x"] = root  # a cycle back to the top
    err = problems(root)
    assert where(err) == [
        ("/".join(["child"] * 2_999), "params.bias"),
        ("/".join(["child"] * 2_999 + ["x"]), "<node>"),
    ]
    assert err.errors[1].found == "the same node object as at <root>"


def _peak_bytes_per_node(tree, n_nodes):
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        hax.validate(tree)
        return (tracemalloc.get_traced_memory()[1] - base) / n_nodes
    finally:
        tracemalloc.stop()


def test_memory_is_linear_in_depth():
    """Paths are shared links, made strings only for problems: a chain 8x deeper costs
    about the same memory per node (a path string per node made it grow with depth)."""
    shallow = _peak_bytes_per_node(chain(1_000, "block")[0], 1_000)
    deep = _peak_bytes_per_node(chain(8_000, "block")[0], 8_000)
    assert deep < 1.5 * shallow + 64
    assert deep < 1024


# ---------------------------------------------------------------- pre-check vs schema


def one_arg(x):
    return x


def kw_only(*, tree, config):
    return tree


class Pair(NamedTuple):
    a: Any
    b: Any


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Box:
    item: Any


class StrName(str):
    pass


GOOD_LEAVES = st.sampled_from(
    [np.zeros(2), np.float32(1), np.int64(3), np.zeros((0, 3), np.int8), jnp.ones(2)]
)
# Hostile objects are built, not sampled: hypothesis hashes what it samples from.
BAD_LEAVES = st.sampled_from(
    [None, 1, 1.5, "w", b"w", Tensor(), RaisingShape(), mock.Mock(shape=(1,))]
) | st.builds(Hostile)
LEAVES = st.one_of(GOOD_LEAVES, GOOD_LEAVES, BAD_LEAVES)
ARRAY_TREES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3),
        st.tuples(inner, inner).map(lambda t: Pair(*t)),
        inner.map(Box),
    ),
    max_leaves=6,
)
AUX_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=3))
AUX_VALUES = st.recursive(
    st.one_of(
        AUX_SCALARS,
        AUX_SCALARS,
        st.sampled_from([np.int64(1), np.float32(1), jnp.float32(1), (1, [1]), {1}]),
        st.builds(Hostile),
    ),
    lambda inner: st.lists(inner, max_size=3).map(tuple),
    max_leaves=6,
)
KEYS = st.one_of(
    st.text(max_size=4),
    st.text(max_size=4),
    st.integers(0, 3),
    st.sampled_from([StrName("s"), "\ud800", "a/b", "", (1,)]),
)
APPLIES = st.sampled_from(
    [plain_apply, print, one_arg, kw_only, RaisingSignature(), "apply", None, 3]
) | st.builds(Hostile)


def child_nodes():
    return st.one_of(
        st.just(node()),
        st.builds(node),
        st.sampled_from([{1: 2}, {StrName("params"): {}}, 3, None, [node()]]),
        st.builds(lambda: collections.OrderedDict(node())),
    )


def containers(values, keys=KEYS):
    return st.one_of(
        st.dictionaries(keys, values, max_size=3),
        st.dictionaries(keys, values, max_size=3),
        st.dictionaries(keys, values, max_size=3).map(collections.OrderedDict),
        st.lists(values, max_size=2),
        st.none(),
    )


GOOD_ARRAY_TREES = st.recursive(
    GOOD_LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=2),
        st.dictionaries(st.text(max_size=2), inner, max_size=2),
        st.tuples(inner, inner).map(lambda t: Pair(*t)),
    ),
    max_leaves=4,
)
GOOD_PARTS = {
    "params": st.dictionaries(st.text(max_size=4), GOOD_ARRAY_TREES, max_size=3),
    "buffers": st.dictionaries(st.text(max_size=4), GOOD_ARRAY_TREES, max_size=2),
    "aux": st.dictionaries(st.text(max_size=4), AUX_SCALARS, max_size=3),
    "apply": st.sampled_from([plain_apply, print]) | st.builds(RaisingHash),
    "submodules": st.dictionaries(st.text(min_size=1, max_size=4), st.builds(node), max_size=2),
}
ANY_PARTS = {
    "params": containers(ARRAY_TREES),
    "buffers": containers(ARRAY_TREES),
    "aux": containers(AUX_VALUES),
    "apply": APPLIES,
    "submodules": containers(child_nodes(), KEYS | st.text(max_size=4)),
}


@st.composite
def random_nodes(draw):
    """Nodes whose parts are each right most of the time and anything otherwise, so that
    valid nodes and nodes wrong in one or two places are both common."""
    parts = {
        kind: draw(GOOD_PARTS[kind] if draw(st.integers(0, 4)) else ANY_PARTS[kind])
        for kind in GOOD_PARTS
    }
    if not draw(st.integers(0, 5)):
        del parts[draw(st.sampled_from(sorted(parts)))]
    out: dict[Any, Any] = dict(parts)
    if not draw(st.integers(0, 5)):
        out[draw(st.sampled_from(["extra", 1, StrName("apply"), StrName("params")]))] = None
    return collections.OrderedDict(out) if not draw(st.integers(0, 5)) else out


ROBUST = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def schema_accepts(n):
    try:
        NODE_ADAPTER.validate_python(n)
    except pydantic.ValidationError:
        return False
    return True


@ROBUST
@given(random_nodes())
def test_precheck_accepts_only_what_the_schema_accepts(n):
    if node_passes(n):
        assert schema_accepts(n)
        assert name_problems(n) == []


@ROBUST
@given(
    st.dictionaries(st.text(max_size=4), ARRAY_TREES.filter(lambda t: True), max_size=3),
    st.dictionaries(st.text(max_size=4), AUX_VALUES, max_size=3),
    st.dictionaries(st.text(min_size=1, max_size=4), st.builds(node), max_size=2),
)
def test_precheck_proves_plain_valid_nodes_valid(params, aux, submodules):
    """On nodes of exact types the pre-check is exact: it is the fast path, not a filter
    that sends everything on to pydantic."""
    n = node(params=params, aux=aux, submodules=submodules)
    plain = all(name and "/" not in name and type(v) in ARRAY_CLASSES for name, v in params.items())
    assert node_passes(n) == (schema_accepts(n) and plain)


# ---------------------------------------------------------------- config walk vs schema


def schema_json_problems(config):
    """What the whole-config pydantic schema reports, as `(key, found)`."""
    try:
        CONFIG_ADAPTER.validate_python(config)
    except pydantic.ValidationError as err:
        return [
            (".".join(["global_config", *_value_path(config, e["loc"])]), describe(e.get("input")))
            for e in err.errors(include_url=False, include_input=True)
        ]
    return []


JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=3),
    st.sampled_from([(1,), {1}, b"x", np.float64(1.5), np.int64(2), jnp.float32(1), StrName("s")]),
    st.builds(Hostile),
)
JSON_KEYS = st.one_of(
    st.text(max_size=3), st.text(max_size=3), st.integers(0, 3), st.just(StrName("k"))
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(JSON_KEYS, inner, max_size=3),
        st.dictionaries(JSON_KEYS, inner, max_size=2).map(collections.OrderedDict),
        st.lists(inner, max_size=2).map(tuple),
    ),
    max_leaves=8,
)


@ROBUST
@given(st.one_of(st.dictionaries(JSON_KEYS, JSON_VALUES, max_size=4), JSON_VALUES))
def test_config_walk_reports_what_the_schema_reports(config):
    assert json_problems(config) == schema_json_problems(config)
