"""Tests for `hax.models`: ResNet and GPT against PyTorch models with the same names.

The PyTorch references are written here in torchvision's and nanoGPT's structure
(neither library is a dependency). Models are built once per module and every
computation runs jitted: eager construction and eager applies compile op by op.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from torch import nn as tnn

import hax
import hax.models
from hax.nn import functional as F

# XLA's CPU backend compiles about twice as fast without LLVM optimisations.
FAST = {"xla_backend_optimization_level": 0}


def build(constructor, *args, **kwargs):
    """A model built in one compiled program (see the module docstring)."""
    return hax.jit(constructor, compiler_options=FAST)(*args, **kwargs)


def torch_name(leaf_path):
    """`"layer1/0/conv1/params/weight"` -> `"layer1.0.conv1.weight"`."""
    *node, _kind, key = leaf_path.split("/")
    return ".".join([*node, key])


def state_names(tree):
    """The PyTorch `state_dict` names of a tree's leaves; Dropout PRNG keys (which
    PyTorch has no counterpart for) are left out."""
    return {
        torch_name(path)
        for path, leaf in hax.named_leaves(tree)
        if not jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)
    }


def load_torch_state(tree, module):
    """`tree` holding `module`'s state: `"a.b.weight"` goes to node `a/b`, into `params`
    for a torch parameter and `buffers` for a torch buffer, with the same shape."""
    param_names = {name for name, _ in module.named_parameters()}
    for name, value in module.state_dict().items():
        *names, key = name.split(".")
        path = tuple(names)
        kind = "params" if name in param_names else "buffers"
        node = hax.get_subtree(tree, path)
        old = node[kind][key]
        assert old.shape == tuple(value.shape), name
        new = jnp.asarray(value.detach().numpy().copy()).astype(old.dtype)
        tree = hax.set_subtree(tree, path, {**node, kind: {**node[kind], key: new}})
    return tree


def assert_state_matches(tree, module, atol=1e-5):
    """Every leaf of `module.state_dict()` equals the tree's leaf of the same name."""
    for name, value in module.state_dict().items():
        *names, key = name.split(".")
        path = tuple(names)
        node = hax.get_subtree(tree, path)
        kind = "params" if key in node["params"] else "buffers"
        np.testing.assert_allclose(
            np.asarray(node[kind][key]), value.detach().numpy().copy(), atol=atol, err_msg=name
        )


# ---------------------------------------------------------------- ResNet reference


class TorchBasicBlock(tnn.Module):
    """torchvision's `BasicBlock` (expansion 1, BatchNorm2d)."""

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(planes)
        self.relu = tnn.ReLU(inplace=True)
        self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class TorchResNet(tnn.Module):
    """torchvision's `ResNet` with `BasicBlock`, a `width` and an optional small stem."""

    def __init__(self, layers, num_classes, width, small_input):
        super().__init__()
        if small_input:
            self.conv1 = tnn.Conv2d(3, width, 3, 1, 1, bias=False)
        else:
            self.conv1 = tnn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = tnn.BatchNorm2d(width)
        self.relu = tnn.ReLU(inplace=True)
        self.maxpool = tnn.Identity() if small_input else tnn.MaxPool2d(3, 2, 1)
        inplanes = width
        for i, blocks in enumerate(layers):
            planes, stride = width * 2**i, 1 if i == 0 else 2
            downsample = None
            if stride != 1 or inplanes != planes:
                downsample = tnn.Sequential(
                    tnn.Conv2d(inplanes, planes, 1, stride, bias=False), tnn.BatchNorm2d(planes)
                )
            stage = [TorchBasicBlock(inplanes, planes, stride, downsample)]
            stage += [TorchBasicBlock(planes, planes) for _ in range(blocks - 1)]
            setattr(self, f"layer{i + 1}", tnn.Sequential(*stage))
            inplanes = planes
        self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
        self.fc = tnn.Linear(inplanes, num_classes)
        for m in self.modules():  # random BatchNorm state, so a mix-up would show
            if isinstance(m, tnn.BatchNorm2d):
                tnn.init.uniform_(m.weight, 0.5, 1.5)
                tnn.init.normal_(m.bias, 0.0, 0.2)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 1.5)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


WIDTH, CLASSES = 8, 10
RESNET_CASES = {  # small_input: input shape
    True: (4, 3, 16, 16),
    False: (4, 3, 32, 32),
}


@pytest.fixture(scope="module")
def resnets():
    """`small_input -> (tree, config)`, built by the constructor with seed 0."""
    return {
        small: build(hax.models.resnet18, CLASSES, width=WIDTH, small_input=small, rng=0)
        for small in RESNET_CASES
    }


def resnet_forward(tree, x, train):
    """The eval output, and with `train` the train output and the updated tree."""
    _, y_eval = hax.apply_tree(tree, {"train_mode": False}, x)
    if not train:
        return y_eval, None, None
    new_tree, y_train = hax.apply_tree(tree, {"train_mode": True}, x)
    return y_eval, y_train, new_tree


# Train mode once: the stems differ only before layer1 (and each case costs a compile).
@pytest.mark.parametrize("small_input, train", [(True, True), (False, False)])
def test_resnet18_matches_torch(resnets, small_input, train):
    torch.manual_seed(0)
    torch_model = TorchResNet((2, 2, 2, 2), CLASSES, WIDTH, small_input)
    tree, config = resnets[small_input]
    assert config == {"train_mode": True}
    # torchvision's names, one to one (the point of the model)
    assert state_names(tree) == set(torch_model.state_dict())
    tree = hax.validate(load_torch_state(tree, torch_model), config)

    x = np.random.default_rng(0).normal(size=RESNET_CASES[small_input]).astype(np.float32)
    y_eval, y_train, new_tree = hax.jit(resnet_forward, compiler_options=FAST)(
        tree, jnp.asarray(x), train
    )
    with torch.no_grad():
        want_eval = torch_model.eval()(torch.from_numpy(x)).numpy()
        want_train = torch_model.train()(torch.from_numpy(x)).numpy()
    assert y_eval.shape == (4, CLASSES)
    for got, want in ((y_eval, want_eval), (y_train, want_train))[: 1 + train]:
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-4 * scale, rtol=1e-4)
    if not train:
        return
    # one training step updated every BatchNorm's running statistics as PyTorch did
    assert int(new_tree["submodules"]["bn1"]["buffers"]["num_batches_tracked"]) == 1
    assert_state_matches(new_tree, torch_model, atol=1e-4)


def test_resnet_structure(resnets):
    small, default = resnets[True][0], resnets[False][0]
    sub = small["submodules"]
    assert set(sub) == {
        *("conv1", "bn1", "relu", "maxpool"),
        *("layer1", "layer2", "layer3", "layer4", "avgpool", "fc"),
    }
    assert sub["maxpool"]["apply"] is hax.nn.identity_apply
    assert default["submodules"]["maxpool"]["apply"] is hax.nn.max_pool2d_apply
    assert sub["conv1"]["aux"]["kernel_size"] == (3, 3) and sub["conv1"]["aux"]["stride"] == (1, 1)
    assert default["submodules"]["conv1"]["aux"]["kernel_size"] == (7, 7)
    # a downsample shortcut exactly where the shape changes
    for i in range(1, 5):
        blocks = sub[f"layer{i}"]["submodules"]
        assert ("downsample" in blocks["0"]["submodules"]) == (i > 1)
        assert "downsample" not in blocks["1"]["submodules"]
    assert sub["fc"]["params"]["weight"].shape == (CLASSES, 8 * WIDTH)
    hax.validate(small, resnets[True][1])


def test_resnet_init_statistics(resnets):
    tree = resnets[False][0]
    convs = [
        (path, node["params"]["weight"])
        for path, node in hax.named_nodes(tree)
        if node["apply"] is hax.nn.conv2d_apply
    ]
    assert len(convs) == 20  # 1 stem + 8 blocks x 2 + 3 downsamples
    checked = 0
    for path, w in convs:
        assert "bias" not in hax.get_subtree(tree, path)["params"]
        fan_out, fan_in = w.shape[0] * w.shape[2] * w.shape[3], w.size // w.shape[0]
        if w.size < 2000:
            continue
        w = np.asarray(w)
        tol = 5 / math.sqrt(2 * w.size)  # five standard errors of a sample std
        assert abs(w.std() / math.sqrt(2 / fan_out) - 1) < tol, path
        assert abs(w.mean()) < 5 * w.std() / math.sqrt(w.size), path
        if fan_in != fan_out:  # fan_out, not fan_in: the two differ by sqrt(2) here
            assert abs(w.std() / math.sqrt(2 / fan_in) - 1) > 0.2, path
        checked += 1
    assert checked >= 10
    # normal, not uniform: excess kurtosis 0 (a uniform's is -1.2)
    w = np.asarray(convs[-1][1]).ravel()
    assert abs(((w - w.mean()) ** 4).mean() / w.var() ** 2 - 3) < 0.2
    for _, node in hax.named_nodes(tree):
        if node["apply"] is hax.nn.batch_norm2d_apply:
            np.testing.assert_array_equal(node["params"]["weight"], 1.0)
            np.testing.assert_array_equal(node["params"]["bias"], 0.0)
    fc = np.asarray(tree["submodules"]["fc"]["params"]["weight"])  # PyTorch's Linear init
    bound = 1 / math.sqrt(8 * WIDTH)
    assert np.abs(fc).max() <= bound and abs(fc.std() / (bound / math.sqrt(3)) - 1) < 0.2


def test_resnet_constructor_errors():
    with pytest.raises(ValueError, match="downsample"):
        hax.models.BasicBlock(8, 16, stride=2, rng=0)
    with pytest.raises(ValueError, match="4 positive ints"):
        hax.models.ResNet((2, 2, 2), rng=0)


# ---------------------------------------------------------------- GPT reference


class TorchCausalSelfAttention(tnn.Module):
    """nanoGPT's `CausalSelfAttention` (the explicit-mask path, mask built per call)."""

    def __init__(self, n_embd, n_head, dropout, bias):
        super().__init__()
        self.c_attn = tnn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = tnn.Linear(n_embd, n_embd, bias=bias)
        self.attn_dropout = tnn.Dropout(dropout)
        self.resid_dropout = tnn.Dropout(dropout)
        self.n_head, self.n_embd = n_head, n_embd

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
        att = self.attn_dropout(TF.softmax(att.masked_fill(~causal, float("-inf")), dim=-1))
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class TorchMLP(tnn.Module):
    def __init__(self, n_embd, dropout, bias):
        super().__init__()
        self.c_fc = tnn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.gelu = tnn.GELU()
        self.c_proj = tnn.Linear(4 * n_embd, n_embd, bias=bias)
        self.dropout = tnn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class TorchBlock(tnn.Module):
    def __init__(self, n_embd, n_head, dropout, bias):
        super().__init__()
        self.ln_1 = tnn.LayerNorm(n_embd, bias=bias)
        self.attn = TorchCausalSelfAttention(n_embd, n_head, dropout, bias)
        self.ln_2 = tnn.LayerNorm(n_embd, bias=bias)
        self.mlp = TorchMLP(n_embd, dropout, bias)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TorchGPT(tnn.Module):
    """nanoGPT's `GPT` without the `transformer` wrapper and without weight tying."""

    def __init__(self, vocab_size, block_size, n_layer, n_head, n_embd, dropout, bias):
        super().__init__()
        self.wte = tnn.Embedding(vocab_size, n_embd)
        self.wpe = tnn.Embedding(block_size, n_embd)
        self.drop = tnn.Dropout(dropout)
        self.h = tnn.ModuleList(TorchBlock(n_embd, n_head, dropout, bias) for _ in range(n_layer))
        self.ln_f = tnn.LayerNorm(n_embd, bias=bias)
        self.lm_head = tnn.Linear(n_embd, vocab_size, bias=False)
        for m in self.modules():  # non-trivial LayerNorms, so a mix-up would show
            if isinstance(m, tnn.LayerNorm):
                tnn.init.uniform_(m.weight, 0.5, 1.5)
                if m.bias is not None:
                    tnn.init.normal_(m.bias, 0.0, 0.2)

    def forward(self, idx):
        pos = torch.arange(idx.shape[1])
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


GPT_ARGS = {"vocab_size": 64, "block_size": 16, "n_layer": 2, "n_head": 4, "n_embd": 64}
DROPOUT = 0.1  # on in the built config: generate and eval must switch it off
BATCH = 3


@pytest.fixture(scope="module")
def gpt():
    """`(native, torch_loaded, config, torch_model)`: the constructor's GPT and the same
    tree holding a PyTorch reference's weights."""
    tree, config = build(hax.models.GPT, **GPT_ARGS, dropout=DROPOUT, rng=0)
    torch.manual_seed(0)
    torch_model = TorchGPT(**GPT_ARGS, dropout=DROPOUT, bias=True).eval()
    assert state_names(tree) == set(torch_model.state_dict())  # nanoGPT's names
    return tree, load_torch_state(tree, torch_model), config, torch_model


def gpt_logits(tree, config, idx):
    return hax.apply_tree(tree, {**config, "train_mode": False}, idx)[1]


GPT_LOGITS = hax.jit(gpt_logits, compiler_options=FAST)  # shared: one compile per shape


def tokens(shape, seed=0):
    return np.random.default_rng(seed).integers(0, GPT_ARGS["vocab_size"], shape)


def test_gpt_matches_torch_and_is_causal(gpt):
    _, tree, config, torch_model = gpt
    assert config == {"train_mode": True}
    hax.validate(tree, config)
    t = GPT_ARGS["block_size"]
    idx = tokens((2 * BATCH, t))
    idx[BATCH:, : t // 2] = idx[:BATCH, : t // 2]  # rows 3..5: rows 0..2 with a new future
    logits = GPT_LOGITS(tree, config, jnp.asarray(idx))
    with torch.no_grad():
        want = torch_model(torch.from_numpy(idx)).numpy()
    assert logits.shape == (2 * BATCH, t, GPT_ARGS["vocab_size"])
    np.testing.assert_allclose(np.asarray(logits), want, atol=1e-4, rtol=1e-4)
    # changing tokens from t // 2 on leaves the logits before t // 2 unchanged
    first, second = np.asarray(logits[:BATCH]), np.asarray(logits[BATCH:])
    np.testing.assert_allclose(first[:, : t // 2], second[:, : t // 2], atol=1e-6)
    assert np.abs(first[:, t // 2 :] - second[:, t // 2 :]).max() > 1e-3


def test_gpt_rejects_sequences_longer_than_block_size(gpt):
    tree, _, config, _ = gpt
    idx = jnp.zeros((1, GPT_ARGS["block_size"] + 1), jnp.int32)
    with pytest.raises(ValueError, match="block size"):
        hax.apply_tree(tree, config, idx)


def test_generate_shape_determinism_and_greedy_decoding(gpt):
    _, tree, config, _ = gpt
    prompt, new, block = 5, 13, GPT_ARGS["block_size"]  # 18 > 16 tokens: cropping
    idx = jnp.asarray(tokens((BATCH, prompt), seed=1))
    generate = hax.jit(hax.models.generate, compiler_options=FAST)
    a = generate(tree, config, idx, new, rng=jax.random.key(0))
    b = generate(tree, config, idx, new, rng=jax.random.key(0))
    c = generate(tree, config, idx, new, rng=jax.random.key(1))
    assert a.shape == (BATCH, prompt + new) and a.dtype == idx.dtype
    np.testing.assert_array_equal(a[:, :prompt], idx)
    np.testing.assert_array_equal(a, b)
    assert (np.asarray(a) != np.asarray(c)).any()
    assert ((0 <= np.asarray(a)) & (np.asarray(a) < GPT_ARGS["vocab_size"])).all()

    greedy = np.asarray(generate(tree, config, idx, new, rng=jax.random.key(2), top_k=1))
    # argmax decoding with gpt_apply: token n is the argmax at the last position of
    # the window greedy[:, max(0, n - block):n]. Every window of `block` tokens in one
    # batched call; windows shorter than `block` are the prefix's first positions
    # (causality, tested above).
    starts = range(prompt + new - block)
    windows = np.concatenate([greedy[:, s : s + block] for s in starts])
    assert windows.shape == (2 * BATCH, block)  # the shape compiled above
    logits = np.asarray(GPT_LOGITS(tree, config, jnp.asarray(windows)))
    logits = logits.reshape(len(starts), BATCH, block, -1)
    expected = np.concatenate(
        [
            logits[0, :, prompt - 1 : block - 1].argmax(-1),  # n < block
            logits[:, :, -1].argmax(-1).T,  # n >= block: the window ending at n - 1
        ],
        axis=1,
    )
    np.testing.assert_array_equal(greedy[:, prompt:], expected)


def test_gpt_init_statistics(gpt):
    tree, _, _, _ = gpt
    proj_std = 0.02 / math.sqrt(2 * GPT_ARGS["n_layer"])
    seen = set()
    for path, node in hax.named_nodes(tree):
        w = node["params"].get("weight")
        if node["apply"] in (hax.nn.linear_apply, hax.nn.embedding_apply):
            std = proj_std if path[-1] == "c_proj" else 0.02
            w = np.asarray(w)
            assert abs(w.std() / std - 1) < 5 / math.sqrt(2 * w.size), path
            assert abs(w.mean()) < 5 * std / math.sqrt(w.size), path
            if "bias" in node["params"]:
                np.testing.assert_array_equal(node["params"]["bias"], 0.0)
            seen.add(path[-1])
        elif node["apply"] is hax.nn.layer_norm_apply:
            np.testing.assert_array_equal(w, 1.0)
            np.testing.assert_array_equal(node["params"]["bias"], 0.0)
    assert seen == {"wte", "wpe", "c_attn", "c_proj", "c_fc", "lm_head"}
    assert "bias" not in tree["submodules"]["lm_head"]["params"]
    # not tied: two separate arrays
    assert (
        tree["submodules"]["lm_head"]["params"]["weight"]
        is not (tree["submodules"]["wte"]["params"]["weight"])
    )
    attn = hax.get_subtree(tree, "h/1/attn")
    assert attn["aux"] == {"n_head": GPT_ARGS["n_head"], "n_embd": GPT_ARGS["n_embd"]}
    assert hax.get_subtree(tree, "h/0/mlp/gelu")["aux"] == {"approximate": "none"}


def test_gpt_constructor_errors():
    with pytest.raises(ValueError, match="divisible"):
        hax.models.GPT(16, 8, n_head=3, n_embd=16, rng=0)


def gpt_loss(params, rest, config, idx):
    new_tree, logits = hax.apply_tree(hax.merge_trees(params, rest), config, idx[:, :-1])
    targets = idx[:, 1:]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    return loss, new_tree


def gpt_train_step(tree, config, idx, lr):
    params, rest = hax.split_tree(tree, ["params"])
    (loss, new_tree), grads = jax.value_and_grad(gpt_loss, has_aux=True)(params, rest, config, idx)
    params = jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)
    _, new_rest = hax.split_tree(new_tree, ["params"])  # the advanced dropout keys
    return hax.merge_trees(params, new_rest), loss


def test_gpt_trains_under_hax_jit(gpt):
    tree, _, config, _ = gpt
    idx = jnp.tile(jnp.arange(4), (2, 4))  # 0 1 2 3 0 1 2 3 ...: easy to learn
    step = hax.jit(gpt_train_step, compiler_options=FAST)
    losses = []
    for _ in range(8):
        new_tree, loss = step(tree, config, idx, jnp.asarray(0.05))
        old, new = (t["submodules"]["drop"]["buffers"]["rng"] for t in (tree, new_tree))
        assert not np.array_equal(jax.random.key_data(old), jax.random.key_data(new))
        tree = new_tree
        losses.append(float(loss))
    assert losses[0] > math.log(GPT_ARGS["vocab_size"]) - 0.5  # near-uniform at init
    assert losses[-1] < 0.5 * losses[0], losses
    hax.validate(tree, config)


# ---------------------------------------------------------------- convert from PyTorch


def test_convert_torch_resnet_runs_with_the_zoo_applies():
    """`hax.interop.convert` of a torchvision-style ResNet-18, with the zoo's applies for
    the two custom classes: outputs equal PyTorch's in eval and train mode."""
    torch.manual_seed(1)
    torch_model = TorchResNet((2, 2, 2, 2), CLASSES, WIDTH, small_input=True).eval()
    tree, config = hax.interop.convert(
        torch_model,
        applies={
            TorchResNet: hax.models.resnet_apply,
            TorchBasicBlock: hax.models.basic_block_apply,
        },
    )
    assert config == {"train_mode": False}
    x = np.random.default_rng(0).normal(size=RESNET_CASES[True]).astype(np.float32)
    y_eval, y_train, new_tree = hax.jit(resnet_forward)(tree, jnp.asarray(x), True)
    with torch.no_grad():
        ref_eval = torch_model(torch.from_numpy(x)).numpy()
        torch_model.train()
        ref_train = torch_model(torch.from_numpy(x)).numpy()
    for y, ref in ((y_eval, ref_eval), (y_train, ref_train)):
        scale = max(1.0, float(np.abs(ref).max()))
        np.testing.assert_allclose(y, ref, atol=1e-4 * scale, rtol=1e-4)
    assert_state_matches(new_tree, torch_model, atol=1e-4)  # running stats after the step


class TorchTinyEncoder(tnn.Module):
    """Token embedding, learned positions, a 2-layer pre-norm TransformerEncoder with a
    final LayerNorm, and a linear head."""

    def __init__(self, vocab=11, d=16, heads=4, seq=9):
        super().__init__()
        self.embed = tnn.Embedding(vocab, d)
        self.pos = tnn.Parameter(torch.randn(seq, d) * 0.1)
        layer = tnn.TransformerEncoderLayer(
            d, heads, 32, dropout=0.1, batch_first=True, norm_first=True
        )
        self.encoder = tnn.TransformerEncoder(
            layer, 2, norm=tnn.LayerNorm(d), enable_nested_tensor=False
        )
        self.head = tnn.Linear(d, vocab)

    def forward(self, tokens, padding):
        x = self.embed(tokens) + self.pos[: tokens.shape[1]]
        return self.head(self.encoder(x, src_key_padding_mask=padding))


@hax.organized_apply
def tiny_encoder_apply(org, tokens, padding):
    x = org.embed(tokens) + org.pos[: tokens.shape[1]]
    return org.head(org.encoder(x, src_key_padding_mask=padding))


def test_convert_small_transformer_encoder_matches_torch():
    torch.manual_seed(0)
    torch_model = TorchTinyEncoder().eval()
    tree, config = hax.interop.convert(torch_model, applies={TorchTinyEncoder: tiny_encoder_apply})
    names = {
        name.replace("/params/", "/").replace("params/", "")
        for name, _ in hax.named_leaves(tree, ["params"])
    }
    assert names == {k.replace(".", "/") for k, _ in torch_model.named_parameters()}
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 11, size=(3, 9))
    padding = np.zeros((3, 9), bool)
    padding[1, 6:] = True
    with torch.no_grad():
        ref = torch_model(torch.from_numpy(tokens), torch.from_numpy(padding)).numpy()

    @hax.jit
    def run(tree, tokens, padding):
        return hax.apply_tree(tree, config, tokens, padding)[1]

    y = run(tree, jnp.asarray(tokens), jnp.asarray(padding))
    np.testing.assert_allclose(y, ref, atol=1e-5 * max(1.0, float(np.abs(ref).max())), rtol=1e-5)
