"""`convert` with no user code for library-style models: plain attributes in aux,
ModuleList/ModuleDict children run from the parent's apply, subclasses, registration
by dotted path, PRNG buffers, non-persistent buffers, tied weights, safetensors files."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.torch
import torch
from torch import nn as tnn

import hax
from hax.interop import ConversionError, convert, from_torch, register_apply, to_torch


class Stack(tnn.Module):
    """A ModuleList run in a loop, a ModuleDict picked by name, plain attributes, and a
    non-persistent buffer, as Hugging Face and timm blocks are written."""

    def __init__(self):
        super().__init__()
        self.layers = tnn.ModuleList([tnn.Linear(3, 3) for _ in range(11)])
        self.heads = tnn.ModuleDict({"b": tnn.Linear(3, 2), "a": tnn.Linear(3, 4)})
        self.scale = 0.5
        self.head = "a"
        self.dims = [1, 2]
        self.skip = None
        self.register_buffer("offset", torch.arange(3.0), persistent=False)
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))

    def forward(self, x):
        for layer in self.layers:
            x = torch.tanh(layer(x)) * self.scale
        x = x + self.offset + (0 if self.skip is None else 1)
        return self.heads[self.head](x), self.heads["b"](x), [k for k in self.heads]


@hax.organized_apply
def stack_apply(org, x):
    for layer in org.layers:
        x = jnp.tanh(layer(x)) * org.scale
    x = x + org.offset + (0 if org.skip is None else 1)
    return org.heads[org.head](x), org.heads["b"](x), list(org.heads.keys())


register_apply(f"{__name__}.Stack", stack_apply)


def test_modulelist_moduledict_attributes_and_non_persistent_buffers():
    torch.manual_seed(0)
    model = Stack().eval()
    tree, config = convert(model)  # no applies: registered by dotted path
    node = tree
    assert node["aux"] == {
        "scale": 0.5,
        "head": "a",
        "dims": (1, 2),
        "skip": None,
        "non_persistent": ("offset",),
    }
    assert tree["submodules"]["heads"]["aux"]["order"] == ("b", "a")
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    with torch.no_grad():
        a, b, keys = model(torch.from_numpy(x))
    new_tree, (ha, hb, hkeys) = hax.jit(lambda t, x: hax.apply_tree(t, config, x))(tree, x)
    np.testing.assert_allclose(ha, a.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hb, b.numpy(), rtol=1e-5, atol=1e-6)
    assert hkeys == keys == ["b", "a"]
    # the 11 children ran in torch's order (10 after 9, although JAX sorts "10" first)
    assert list(new_tree["submodules"]["layers"]["submodules"]) == sorted(str(i) for i in range(11))
    state = to_torch(new_tree)
    assert "offset" not in state and "count" in state
    fresh = Stack()
    fresh.load_state_dict(state, strict=True)
    with torch.no_grad():
        np.testing.assert_allclose(fresh(torch.from_numpy(x))[0].numpy(), a.numpy(), rtol=1e-6)


def test_organizer_reaches_container_children_by_index_name_and_negative_index():
    torch.manual_seed(1)
    tree, config = convert(Stack())
    seen = []

    @hax.organized_apply
    def probe(org, x):
        seen.append((len(org.layers), org.layers[-1].tree is org.layers[10].tree))
        org.layers[2](x)
        with pytest.raises(IndexError, match="has 11 children; index 11"):
            org.layers[11]
        with pytest.raises(KeyError, match="has no child 'c'"):
            org.heads["c"]
        return [name for name, _ in org.heads.items()]

    out = hax.apply_tree({**tree, "apply": probe}, config, jnp.ones(3))[1]
    assert out == ["b", "a"] and seen == [(11, True)]


class MyLinear(tnn.Linear):
    """Only `__init__` differs: converts as a Linear."""

    def __init__(self):
        super().__init__(3, 2)


class ScaledLinear(tnn.Linear):
    """Overrides forward: must not get Linear's apply."""

    def forward(self, x):
        return super().forward(x) * 2


def test_subclasses_inherit_their_base_only_with_its_forward():
    tree, _ = convert(tnn.Sequential(MyLinear()))
    assert tree["submodules"]["0"]["apply"] is hax.nn.linear_apply
    with pytest.raises(ConversionError) as info:
        convert(tnn.Sequential(ScaledLinear(3, 2), ScaledLinear(2, 2), MyLinear()))
    message = str(info.value)
    line = next(row for row in message.splitlines() if "ScaledLinear" in row)
    assert line == (
        f"  {__name__}.ScaledLinear x2 at 0, 1 (subclasses torch.nn.modules.linear.Linear "
        "but redefines forward)"
    )
    assert "applies={ScaledLinear: scaled_linear_apply}" in message
    tree, _ = convert(tnn.Sequential(ScaledLinear(3, 2)), applies={ScaledLinear: scaled_apply})
    assert tree["submodules"]["0"]["apply"] is scaled_apply


@hax.organized_apply
def scaled_apply(org, x):
    return (x @ org.weight.T + org.bias) * 2


class Noisy(tnn.Module):
    def __init__(self):
        super().__init__()
        self.p = 0.5

    def forward(self, x):
        return torch.nn.functional.dropout(x, self.p, self.training)


def noisy_apply(tree, config, x):
    if not config.get("train_mode", False):
        return tree, x
    key, sub = jax.random.split(tree["buffers"]["rng"])
    keep = jax.random.bernoulli(sub, 1 - tree["aux"]["p"], x.shape)
    return {**tree, "buffers": {"rng": key}}, jnp.where(keep, x / (1 - tree["aux"]["p"]), 0)


register_apply(f"{__name__}.Noisy", noisy_apply, rng=True)


def test_registered_randomness_gets_a_key_buffer_that_torch_never_sees():
    model = tnn.Sequential(tnn.Linear(4, 4), Noisy())
    tree, config = convert(model, rng=3)
    key = tree["submodules"]["1"]["buffers"]["rng"]
    assert jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    new_tree, y = hax.apply_tree(tree, {**config, "train_mode": True}, jnp.ones((200, 4)))
    assert 0.3 < float(jnp.mean(y == 0)) < 0.7
    assert not np.array_equal(
        jax.random.key_data(new_tree["submodules"]["1"]["buffers"]["rng"]), jax.random.key_data(key)
    )
    assert set(to_torch(tree)) == {"0.weight", "0.bias"}


class TinyLM(tnn.Module):
    """An embedding shared with the output head, as GPT-2's `lm_head`."""

    def __init__(self):
        super().__init__()
        self.embed = tnn.Embedding(10, 4)
        self.body = tnn.Linear(4, 4)
        self.head = tnn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids):
        return self.head(torch.tanh(self.body(self.embed(ids))))


@hax.organized_apply
def tiny_lm_apply(org, ids):
    return org.head(jnp.tanh(org.body(org.embed(ids))))


register_apply(f"{__name__}.TinyLM", tiny_lm_apply)


def test_tied_weights_stay_one_leaf_train_as_torch_and_go_back():
    torch.manual_seed(2)
    model = TinyLM()
    tree, config = convert(model)
    names = [name for name, _ in hax.named_leaves(tree)]
    assert "head/params/weight" not in names and "embed/params/weight" in names
    assert tree["submodules"]["head"]["aux"]["tied"] == ("weight",)
    assert "total params: 60 " in hax.summary(tree)  # 40 + 16 + 4, the shared 40 once
    ids = np.array([[1, 2, 3], [4, 5, 9]])
    target = np.random.default_rng(0).normal(size=(2, 3, 10)).astype(np.float32)

    def loss(tree):
        return jnp.mean((hax.apply_tree(tree, config, ids)[1] - target) ** 2)

    for _ in range(3):  # SGD in HAX and in torch: the shared weight gets both gradients
        params, rest = hax.split_tree(tree, ["params"])
        grads = jax.grad(lambda p, rest=rest: loss(hax.merge_trees(p, rest)))(params)
        tree = hax.merge_trees(jax.tree.map(lambda p, d: p - 0.5 * d, params, grads), rest)
        model.zero_grad()
        torch.mean((model(torch.from_numpy(ids)) - torch.from_numpy(target)) ** 2).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.5 * p.grad
    np.testing.assert_allclose(
        tree["submodules"]["embed"]["params"]["weight"],
        model.embed.weight.detach().numpy(),
        rtol=1e-5,
        atol=1e-6,
    )
    state = to_torch(tree)
    assert state["head.weight"] is state["embed.weight"]
    fresh = TinyLM()
    fresh.load_state_dict(state, strict=True)
    with torch.no_grad():
        np.testing.assert_allclose(
            fresh(torch.from_numpy(ids)).numpy(),
            hax.apply_tree(tree, config, ids)[1],
            rtol=1e-5,
            atol=1e-6,
        )
    back = from_torch(fresh, tree)  # the head's key is accepted: torch shares the tensor
    np.testing.assert_array_equal(
        back["submodules"]["embed"]["params"]["weight"],
        tree["submodules"]["embed"]["params"]["weight"],
    )
    untied = fresh.state_dict()
    untied["head.weight"] = untied["head.weight"] + 1
    with pytest.raises(ValueError, match=r"HAX ties it to 'embed\.weight'"):
        from_torch(untied, tree)


def test_from_torch_reads_a_safetensors_file_without_importing_torch(tmp_path):
    torch.manual_seed(3)
    model = tnn.Sequential(tnn.Linear(3, 4), tnn.LayerNorm(4)).to(torch.bfloat16)
    safetensors.torch.save_file(model.state_dict(), tmp_path / "model.safetensors")
    tree, _ = convert(tnn.Sequential(tnn.Linear(3, 4), tnn.LayerNorm(4)).to(torch.bfloat16))
    code = f"""
import sys
sys.modules["torch"] = None
import pickle, hax, jax
tree = pickle.loads({__import__("pickle").dumps(jax.device_get(tree))!r})
for source in ({str(tmp_path)!r}, {str(tmp_path / "model.safetensors")!r}):
    loaded = hax.interop.from_torch(source, tree)["submodules"]
    print(loaded["0"]["params"]["weight"].dtype, float(loaded["1"]["params"]["weight"].sum()))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    expected = float(model[1].weight.float().sum())
    assert out.stdout.splitlines() == [f"bfloat16 {expected}"] * 2


class Base(tnn.Module):
    def __init__(self):
        super().__init__()
        self.fc = tnn.Linear(3, 3)

    def forward(self, x):
        return self.head(self.fc(x))

    def head(self, x):
        return x


class SameForwardOtherHelper(Base):
    """Inherits `forward` but changes a method it calls: it does not compute as `Base`."""

    def head(self, x):
        return x * 2


class OnlyInit(Base):
    def __init__(self):
        super().__init__()
        self.note = "built differently"


@hax.organized_apply
def base_apply(org, x):
    return org.fc(x)


register_apply(f"{__name__}.Base", base_apply)


def test_a_subclass_that_redefines_a_helper_its_forward_calls_is_not_its_base():
    assert convert(OnlyInit())[0]["apply"] is base_apply
    with pytest.raises(ConversionError, match=r"subclasses .*\.Base but redefines head\)"):
        convert(SameForwardOtherHelper())
