"""Global-config keys: a key no node reads (a typo) is reported with the nearest known
key, in `validate` and in debug mode; users declare the keys their own applies read."""

import jax.numpy as jnp
import pytest

import hax
from hax import nn


def model():
    with hax.rng_context(0):
        return nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5))


def test_a_pytorch_habit_is_caught_with_the_key_it_meant():
    tree, config = model()
    with pytest.raises(hax.ValidationError) as info:
        hax.validate(tree, {**config, "training": False})
    (problem,) = info.value.errors
    assert problem.key == "global_config.training"
    assert "did you mean 'train_mode'?" in str(problem)
    with pytest.raises(hax.ValidationError, match=r"trian_mode.*did you mean 'train_mode'"):
        hax.validate(tree, {"trian_mode": False, "train_mode": True})


def test_debug_mode_checks_the_keys_at_the_root_call():
    tree, config = model()
    x = jnp.ones((2, 3))
    with hax.debug(), pytest.raises(hax.ValidationError, match="did you mean 'train_mode'"):
        hax.apply_tree(tree, {**config, "training": False}, x)
    with hax.debug():  # the children see the whole config: no false alarms below the root
        hax.apply_tree(tree, {**config, "train_mode": False}, x)


def test_train_mode_is_always_allowed():
    tree, _ = nn.Linear(3, 3, rng=0)  # reads no config at all
    assert hax.validate(tree, {"train_mode": False}) is tree


def temperature_apply(tree, config, x):
    return tree, x / config["temperature"]


def test_users_declare_their_own_keys():
    tree = hax.empty_tree(temperature_apply)
    with pytest.raises(hax.ValidationError, match=r"hax\.reads_config"):
        hax.validate(tree, {"temperature": 2.0})
    declared = hax.empty_tree(hax.reads_config(scaled_apply, {"temperature": float}))
    assert hax.validate(declared, {"temperature": 2.0}) is declared
    with pytest.raises(hax.ValidationError, match=r"global_config\.temperature: expected a float"):
        hax.validate(declared, {"temperature": "hot"})
    with pytest.raises(hax.ValidationError, match=r"temperatur.*did you mean 'temperature'"):
        hax.validate(declared, {"temperatur": 2.0, "temperature": 2.0})


def scaled_apply(tree, config, x):
    return tree, x / config["temperature"]


@hax.organized_apply(config={"scale": float})
def scaled_mlp_apply(org, x):
    return org.fc(x) * org.global_config["scale"]


@hax.organized_init(scaled_mlp_apply, {"scale": 2.0})
def ScaledMLP(org):
    org.fc = nn.Linear(3, 3, rng=0)


def test_organized_applies_declare_keys_and_wrappers_keep_them():
    tree, config = ScaledMLP()
    assert config == {"scale": 2.0}
    wrapped = hax.surgery.wrap(tree, "", lambda inner, t, c, x: inner(t, c, x))
    assert hax.validate(wrapped, config) is wrapped
    assert hax.schema.config_of(wrapped["apply"]) == {"scale": float}


@pytest.mark.parametrize(
    "declare",
    [
        lambda: hax.reads_config(len, {"temperature": float}),
        lambda: hax.schema.register_spec(
            len, hax.schema.spec_of(nn.Linear(2, 2, rng=0)[0]["apply"])
        ),
    ],
)
def test_declaring_on_a_callable_without_attributes_says_what_to_do(declare):
    """A builtin takes no attributes: the error names it and says to wrap it."""
    with pytest.raises(
        TypeError, match=r"to <built-in function len>; wrap it in a module-level def"
    ):
        declare()
