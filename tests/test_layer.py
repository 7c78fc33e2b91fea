"""Tests for the layer records (`hax.nn.layer`): every record is consistent with what HAX
derives from it (specs, `convert`'s converters, the float32 set of mixed precision)."""

import importlib

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jaxtyping import Array, Float
from torch import nn as tnn
from typing_extensions import TypedDict

import hax
from hax.interop import convert, to_torch
from hax.interop._convert import builtin_converters
from hax.nn import _layer, registered_layers
from hax.schema import spec_of

RECORDS = list(registered_layers().values())
TORCH_PATHS = [(record, path) for record in RECORDS for path in record.torch]

# Constructor arguments for torch classes that have no defaults for every argument,
# by class name: a tuple of positional arguments, or a function of the class.
ARGS = {
    "Linear": (3, 4),
    "NonDynamicallyQuantizableLinear": (3, 4),
    "Bilinear": (3, 2, 4),
    "Conv1d": (2, 4, 3),
    "Conv2d": (2, 4, 3),
    "Conv3d": (2, 4, 3),
    "ConvTranspose1d": (2, 4, 3),
    "ConvTranspose2d": (2, 4, 3),
    "MaxPool1d": (2,),
    "MaxPool2d": (2,),
    "AvgPool1d": (2,),
    "AvgPool2d": (2,),
    "AdaptiveAvgPool1d": (2,),
    "AdaptiveAvgPool2d": (2,),
    "AdaptiveMaxPool2d": (2,),
    "BatchNorm1d": (4,),
    "BatchNorm2d": (4,),
    "InstanceNorm1d": lambda cls: cls(4, affine=True, track_running_stats=True),
    "InstanceNorm2d": lambda cls: cls(4, affine=True, track_running_stats=True),
    "LayerNorm": (4,),
    "GroupNorm": (2, 4),
    "RMSNorm": (4,),
    "Embedding": (5, 3),
    "Softmax": (1,),
    "LogSoftmax": (1,),
    "MultiheadAttention": (8, 2),
    "TransformerEncoderLayer": (8, 2, 16),
    "TransformerEncoder": lambda cls: cls(
        tnn.TransformerEncoderLayer(8, 2, 16), 2, enable_nested_tensor=False
    ),
    "TransformerDecoderLayer": (8, 2, 16),
    "TransformerDecoder": lambda cls: cls(tnn.TransformerDecoderLayer(8, 2, 16), 2),
    "Transformer": lambda cls: cls(8, 2, 1, 1, 16, batch_first=True),
    "Sequential": lambda cls: cls(tnn.Linear(3, 4), tnn.ReLU()),
    "Unflatten": (1, (2, 2)),
    "Upsample": lambda cls: cls(scale_factor=2),
    "UpsamplingNearest2d": lambda cls: cls(scale_factor=2),
    "UpsamplingBilinear2d": lambda cls: cls(scale_factor=2),
}


def torch_instance(cls):
    args = ARGS.get(cls.__name__, ())
    try:
        return args(cls) if callable(args) else cls(*args)
    except TypeError as err:
        pytest.fail(f"add simple constructor arguments for {cls.__name__} to ARGS: {err}")


@pytest.mark.parametrize("record", RECORDS, ids=[r.kind for r in RECORDS])
def test_every_record_attaches_its_spec(record):
    assert spec_of(record.apply) is record.spec
    assert record.spec.kind == record.kind
    assert registered_layers()[record.kind] is record


@pytest.mark.parametrize(("record", "path"), TORCH_PATHS, ids=[path for _, path in TORCH_PATHS])
def test_every_torch_path_resolves_and_converts_back_and_forth(record, path):
    module_name, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), name)
    assert cls in record.torch_classes()
    assert issubclass(cls, tnn.Module)
    module = torch_instance(cls)
    tree, _ = convert(module)
    assert tree["apply"] is record.apply
    assert set(tree["aux"]) == set(record.spec.aux)
    state = to_torch(tree)
    fresh = torch_instance(cls)
    fresh.load_state_dict(state, strict=True)
    expected = module.state_dict()
    assert sorted(state) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(state[key].numpy(), value.numpy(), err_msg=key)


def test_the_converter_table_is_the_registry():
    converters = builtin_converters()
    expected = {cls: r.converter for r in RECORDS for cls in r.torch_classes()}
    assert converters == expected
    assert len(converters) == len(TORCH_PATHS)
    assert (
        tnn.Linear in converters
        and tnn.modules.linear.NonDynamicallyQuantizableLinear in converters
    )


def test_the_float32_set_is_the_records_flagged_float32():
    flagged = {r.kind for r in RECORDS if r.float32}
    assert flagged == {
        "BatchNorm1d", "BatchNorm2d", "InstanceNorm1d", "InstanceNorm2d", "GroupNorm",
        "LayerNorm", "RMSNorm", "Softmax", "LogSoftmax",
    }  # fmt: skip
    assert hax.precision.FLOAT32_APPLIES == frozenset(r.apply for r in RECORDS if r.float32)


def test_node_takes_exactly_the_declared_aux():
    record = registered_layers()["Linear"]
    params = {"weight": jnp.zeros((2, 3))}
    tree = record.node(params, in_features=3, out_features=2, bias=False)
    assert tree == {
        "params": params,
        "buffers": {},
        "aux": {"in_features": 3, "out_features": 2, "bias": False},
        "apply": hax.nn.linear_apply,
        "submodules": {},
    }
    assert tree["params"] is not params  # a node of its own
    with pytest.raises(TypeError, match=r"Linear\.node: .* missing \['bias'\], not declared \[\]"):
        record.node(params, in_features=3, out_features=2)
    with pytest.raises(TypeError, match=r"missing \[\], not declared \['padding'\]"):
        record.node(params, in_features=3, out_features=2, bias=False, padding=0)


# ---------------------------------------------------------------- a layer of one's own


class TorchScale(tnn.Module):
    def __init__(self, size):
        super().__init__()
        self.weight = tnn.Parameter(torch.linspace(0.5, 2.0, size))

    def forward(self, x):
        return x * self.weight


class ScaleParams(TypedDict):
    weight: Float[Array, " size"]


def scale_apply(tree, config, x):
    return tree, x * tree["params"]["weight"]


def convert_scale(m, convert_child):
    record = registered_layers()["TestScale"]
    size = m.weight.shape[0]
    return hax.validate(record.node({"weight": jnp.ones(size)}, size=size)), {}


@pytest.fixture
def registry(monkeypatch):
    """A copy of the registry for one test, so records declared here do not outlive it."""
    monkeypatch.setattr(_layer, "_LAYERS", dict(_layer._LAYERS))


def declare_scale(**kwargs):
    return hax.nn.layer(
        "TestScale",
        scale_apply,
        params=ScaleParams,
        aux={"size": int},
        torch=f"{TorchScale.__module__}.TorchScale",
        converter=convert_scale,
        **kwargs,
    )


def test_a_declared_layer_converts_and_validates(registry):
    record = declare_scale()
    assert record.torch_classes() == (TorchScale,)
    model = tnn.Sequential(tnn.Linear(3, 4), TorchScale(4))
    tree, config = convert(model)
    assert tree["submodules"]["1"]["apply"] is scale_apply
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(hax.apply_tree(tree, config, jnp.asarray(x))[1], expected, atol=1e-6)
    bad = record.node({"weight": jnp.ones(3)}, size=4)
    with pytest.raises(hax.ValidationError, match=r"params\.weight"):
        hax.validate(bad)


def test_a_declared_float32_layer_computes_in_float32(registry):
    tree = declare_scale(float32=True).node({"weight": jnp.ones(2)}, size=2)
    mixed = hax.precision.mixed_precision(tree, hax.precision.Policy(compute_dtype="bfloat16"))
    assert scale_apply in mixed["apply"].float32_applies
    assert hax.precision.FLOAT32_APPLIES < mixed["apply"].float32_applies
    assert scale_apply not in hax.precision.FLOAT32_APPLIES


def test_declaring_again_replaces_and_clashes_raise(registry):
    first = declare_scale()
    second = declare_scale()
    assert registered_layers()["TestScale"] is second is not first
    with pytest.raises(ValueError, match="'Linear' is already registered"):
        hax.nn.layer("Linear", scale_apply)
    with pytest.raises(ValueError, match="already the Linear's"):
        hax.nn.layer("OtherLinear", hax.nn.linear_apply)
    assert spec_of(hax.nn.linear_apply).kind == "Linear"
    with pytest.raises(ValueError, match="need a converter"):
        hax.nn.layer("NoConverter", scale_apply, torch="torch.nn.Linear")
    with pytest.raises(ValueError, match="needs torch"):
        hax.nn.layer("NoTorch", scale_apply, converter=convert_scale)


class TorchShift(tnn.Module):
    """A parameter-free layer whose attributes are its constructor's arguments."""

    def __init__(self, amount, scale=1.0):
        super().__init__()
        self.amount, self.scale = amount, scale

    def forward(self, x):
        return (x + self.amount) * self.scale


def shift_apply(tree, config, x):
    return tree, (x + tree["aux"]["amount"]) * tree["aux"]["scale"]


def Shift(amount, scale=1.0):
    return hax.validate(registered_layers()["TestShift"].node(amount=amount, scale=scale)), {}


def test_from_attributes_passes_the_torch_attributes_in_order(registry):
    hax.nn.layer(
        "TestShift",
        shift_apply,
        aux={"amount": float, "scale": float},
        torch=f"{TorchShift.__module__}.TorchShift",
        converter=hax.nn.from_attributes(Shift, "amount", "scale"),
    )
    model = TorchShift(0.5, -2.0)
    tree, config = convert(model)
    assert tree["aux"] == {"amount": 0.5, "scale": -2.0}
    x = np.linspace(-1, 1, 6, dtype=np.float32)
    expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(hax.apply_tree(tree, config, jnp.asarray(x))[1], expected)
    converter = registered_layers()["TestShift"].converter
    assert converter.__qualname__ == "from_attributes(Shift)"
    with pytest.raises(AttributeError, match="amount"):  # names what torch lacks
        converter(tnn.Identity(), lambda name, child: convert(child))
