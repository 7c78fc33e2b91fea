"""`GPT`: a GPT-2-style decoder-only transformer with nanoGPT's names and init.

The tree is flat where nanoGPT nests under `transformer`: `wte`, `wpe`, `drop`, `h`
(a `Sequential` of `Block`s `"0"`, `"1"`, ...), `ln_f` and `lm_head`; a block has
`ln_1`, `attn` (`c_attn`, `c_proj`, `attn_dropout`, `resid_dropout`), `ln_2` and
`mlp` (`c_fc`, `gelu`, `c_proj`, `dropout`). So nanoGPT's
`"transformer.h.0.attn.c_attn.weight"` is `h/0/attn/c_attn/params/weight` here.
Dropout layers hold their PRNG keys in `buffers["rng"]`, which PyTorch does not have.
"""

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from .. import nn
from .._jit import jit
from .._module import apply_tree
from .._organizer import StateOrganizer, organized_init
from .._rng import RngLike, as_key, next_rng_key, resolve_rng, rng_context
from .._types import GlobalConfig, InputArray, Module, StructureTree
from ..nn._layer import layer
from ._resnet import reinit_normal

_STD = 0.02  # nanoGPT's (and GPT-2's) init scale


def _nanogpt_std(n_layer: int) -> Callable[[tuple[str, ...], StructureTree], float | None]:
    """nanoGPT's `_init_weights` and the scaled init of the residual projections: the
    std of each Linear and Embedding weight (`None` for other nodes)."""
    proj_std = _STD / math.sqrt(2 * n_layer)

    def std_of(path: tuple[str, ...], node: StructureTree) -> float | None:
        if node["apply"] not in (nn.linear_apply, nn.embedding_apply):
            return None
        return proj_std if path[-1:] == ("c_proj",) else _STD

    return std_of


# ---------------------------------------------------------------- attention


def causal_self_attention_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[InputArray, "batch seq n_embd"]
) -> tuple[StructureTree, Float[Array, "batch seq n_embd"]]:
    """Multi-head self-attention in which position `t` attends to positions `<= t`,
    with scores scaled by `1/sqrt(head_dim)`; dropout on the attention weights
    (`attn_dropout`) and on the projected output (`resid_dropout`)."""
    org = StateOrganizer(tree, global_config)
    aux: dict[str, Any] = tree["aux"]
    n_head = aux["n_head"]
    batch, seq, n_embd = x.shape
    if n_embd % n_head:
        raise ValueError(
            f"CausalSelfAttention: the input's last dim {n_embd} is not divisible by "
            f"aux n_head={n_head}"
        )
    head_dim = n_embd // n_head
    qkv = org.c_attn(x)  # (batch, seq, 3 * n_embd)
    q, k, v = (
        t.reshape(batch, seq, n_head, head_dim).transpose(0, 2, 1, 3)
        for t in jnp.split(qkv, 3, axis=-1)
    )
    scores = (q @ k.swapaxes(-1, -2)) * (1.0 / math.sqrt(head_dim))
    causal = jnp.tril(jnp.ones((seq, seq), bool))
    scores = jnp.where(causal, scores, -jnp.inf)
    weights = org.attn_dropout(jax.nn.softmax(scores, axis=-1))
    y = (weights @ v).transpose(0, 2, 1, 3).reshape(batch, seq, n_embd)
    return org.get_state(), org.resid_dropout(org.c_proj(y))


@organized_init(causal_self_attention_apply)
def CausalSelfAttention(
    org: StateOrganizer,
    n_embd: int,
    n_head: int,
    dropout: float = 0.0,
    bias: bool = True,
    *,
    rng: RngLike | None = None,
) -> None:
    """Causal multi-head self-attention, as nanoGPT's `CausalSelfAttention`.

    Submodules `c_attn` (`Linear(n_embd, 3 * n_embd)`, the query, key and value
    projections stacked in that order), `c_proj` (`Linear(n_embd, n_embd)`),
    `attn_dropout` and `resid_dropout` (`Dropout(dropout)`); aux `n_head`, `n_embd`.
    The Linears have PyTorch's default init, as in nanoGPT (whose `GPT` re-draws
    them; so does `GPT` here). The config is `{"train_mode": True}`.

    **Arguments:**
    - `n_embd`, `n_head`: the model width and the number of heads (`n_embd % n_head
      == 0`; each head has `n_embd // n_head` dims).
    - `dropout`: the dropout probability of both dropouts.
    - `bias`: whether the Linear layers have biases.
    - `rng`: a PRNG key (or int seed); defaults to the next key of `hax.rng_context`.
    """
    if n_head < 1 or n_embd % n_head:
        raise ValueError(
            f"CausalSelfAttention: n_embd={n_embd} must be divisible by n_head={n_head}"
        )
    with rng_context(resolve_rng(rng, "CausalSelfAttention")):
        org.c_attn = nn.Linear(n_embd, 3 * n_embd, bias)
        org.c_proj = nn.Linear(n_embd, n_embd, bias)
        org.attn_dropout = nn.Dropout(dropout)
        org.resid_dropout = nn.Dropout(dropout)
    org.register_aux("n_head", n_head)
    org.register_aux("n_embd", n_embd)


layer("CausalSelfAttention", causal_self_attention_apply, aux={"n_head": int, "n_embd": int})


# ---------------------------------------------------------------- MLP and Block


def mlp_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[InputArray, "*batch n_embd"]
) -> tuple[StructureTree, Float[Array, "*batch n_embd"]]:
    """`dropout(c_proj(gelu(c_fc(x))))`."""
    org = StateOrganizer(tree, global_config)
    return org.get_state(), org.dropout(org.c_proj(org.gelu(org.c_fc(x))))


@organized_init(mlp_apply)
def MLP(
    org: StateOrganizer,
    n_embd: int,
    dropout: float = 0.0,
    bias: bool = True,
    *,
    rng: RngLike | None = None,
) -> None:
    """The transformer's feed-forward layer, as nanoGPT's `MLP`.

    Submodules `c_fc` (`Linear(n_embd, 4 * n_embd)`), `gelu` (`GELU()`: the exact,
    erf-based GELU of nanoGPT's `nn.GELU()`; GPT-2's original code uses the tanh
    approximation, `GELU("tanh")`), `c_proj` (`Linear(4 * n_embd, n_embd)`) and
    `dropout`. Init and arguments as `CausalSelfAttention`. The config is
    `{"train_mode": True}`.
    """
    with rng_context(resolve_rng(rng, "MLP")):
        org.c_fc = nn.Linear(n_embd, 4 * n_embd, bias)
        org.gelu = nn.GELU()
        org.c_proj = nn.Linear(4 * n_embd, n_embd, bias)
        org.dropout = nn.Dropout(dropout)


layer("MLP", mlp_apply)


def block_apply(
    tree: StructureTree, global_config: GlobalConfig, x: Float[InputArray, "batch seq n_embd"]
) -> tuple[StructureTree, Float[Array, "batch seq n_embd"]]:
    """Pre-norm residual block: `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`."""
    org = StateOrganizer(tree, global_config)
    y = jnp.asarray(x)
    y = y + org.attn(org.ln_1(y))
    y = y + org.mlp(org.ln_2(y))
    return org.get_state(), y


@organized_init(block_apply)
def Block(
    org: StateOrganizer,
    n_embd: int,
    n_head: int,
    dropout: float = 0.0,
    bias: bool = True,
    *,
    rng: RngLike | None = None,
) -> None:
    """A transformer block, as nanoGPT's `Block`: submodules `ln_1` (`LayerNorm`),
    `attn` (`CausalSelfAttention`), `ln_2` (`LayerNorm`), `mlp` (`MLP`). Arguments as
    `CausalSelfAttention`; `bias` also applies to the LayerNorms."""
    with rng_context(resolve_rng(rng, "Block")):
        org.ln_1 = nn.LayerNorm(n_embd, bias=bias)
        org.attn = CausalSelfAttention(n_embd, n_head, dropout, bias)
        org.ln_2 = nn.LayerNorm(n_embd, bias=bias)
        org.mlp = MLP(n_embd, dropout, bias)


layer("Block", block_apply)


# ---------------------------------------------------------------- GPT


def gpt_apply(
    tree: StructureTree, global_config: GlobalConfig, idx: Int[InputArray, "batch seq"]
) -> tuple[StructureTree, Float[Array, "batch seq vocab_size"]]:
    """Next-token logits `(batch, seq, vocab_size)` for token ids `idx`.

    Raises `ValueError` when `seq` exceeds the block size (the number of rows of
    `wpe`'s weight).
    """
    org = StateOrganizer(tree, global_config)
    seq = idx.shape[-1]
    block_size = tree["submodules"]["wpe"]["params"]["weight"].shape[0]
    if seq > block_size:
        raise ValueError(
            f"GPT: cannot run a sequence of length {seq}: the block size (wpe's "
            f"num_embeddings) is {block_size}; crop the input to its last {block_size} "
            "tokens, as `generate` does"
        )
    x = org.drop(org.wte(idx) + org.wpe(jnp.arange(seq)))
    x = org.ln_f(org.h(x))
    return org.get_state(), org.lm_head(x)


def GPT(
    vocab_size: int,
    block_size: int,
    n_layer: int = 4,
    n_head: int = 4,
    n_embd: int = 128,
    dropout: float = 0.0,
    bias: bool = True,
    *,
    rng: RngLike | None = None,
) -> Module:
    """A GPT-2-style decoder-only transformer with nanoGPT's names and init.

    Submodules `wte` (token `Embedding(vocab_size, n_embd)`), `wpe` (position
    `Embedding(block_size, n_embd)`), `drop` (`Dropout`), `h` (a `Sequential` of
    `n_layer` `Block`s), `ln_f` (`LayerNorm`) and `lm_head` (`Linear(n_embd,
    vocab_size, bias=False)`). Run with `gpt_apply(tree, config, idx)`; sample with
    `generate`. `lm_head.weight` is *not* tied to `wte.weight` (nanoGPT ties them):
    they are two separate params.

    Init as nanoGPT: Linear weights and embeddings from `N(0, 0.02^2)`, Linear biases
    zeros, the residual projections (`attn.c_proj`, `mlp.c_proj`) from
    `N(0, (0.02 / sqrt(2 * n_layer))^2)`, LayerNorms ones and zeros. The config is
    `{"train_mode": True}` (dropout on); use `{"train_mode": False}` to evaluate.

    **Arguments:**
    - `vocab_size`, `block_size`: the number of token ids and the longest sequence.
    - `n_layer`, `n_head`, `n_embd`: depth, heads per attention, width
      (`n_embd % n_head == 0`).
    - `dropout`: the probability of every dropout layer.
    - `bias`: whether Linear layers (except `lm_head`) and LayerNorms have biases.
    - `rng`: a PRNG key (or int seed); defaults to the next key of `hax.rng_context`.
    """
    if n_head < 1 or n_embd % n_head:
        raise ValueError(f"GPT: n_embd={n_embd} must be divisible by n_head={n_head}")
    if n_layer < 1 or vocab_size < 1 or block_size < 1:
        raise ValueError(
            f"GPT: vocab_size, block_size and n_layer must be positive, found "
            f"{vocab_size}, {block_size}, {n_layer}"
        )
    org = StateOrganizer()
    with rng_context(resolve_rng(rng, "GPT")):
        org.wte = nn.Embedding(vocab_size, n_embd)
        org.wpe = nn.Embedding(block_size, n_embd)
        org.drop = nn.Dropout(dropout)
        org.h = nn.Sequential(*(Block(n_embd, n_head, dropout, bias) for _ in range(n_layer)))
        org.ln_f = nn.LayerNorm(n_embd, bias=bias)
        org.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        init_key = next_rng_key("GPT")
    tree, config = org.create_module(gpt_apply)  # validated
    # The same shapes and dtypes: no need to validate again.
    return reinit_normal(tree, init_key, _nanogpt_std(n_layer)), config


layer("GPT", gpt_apply)


# ---------------------------------------------------------------- sampling


def generate(
    tree: StructureTree,
    global_config: GlobalConfig,
    idx: Int[InputArray, "batch seq"],
    max_new_tokens: int,
    *,
    rng: RngLike,
    temperature: float | InputArray = 1.0,
    top_k: int | None = None,
) -> Int[Array, "batch total"]:
    """Extend `idx` by `max_new_tokens` tokens sampled one at a time, as nanoGPT's
    `GPT.generate`: each step runs the model in eval mode (no dropout) on the last
    `block_size` tokens, divides the last position's logits by `temperature`, keeps
    the `top_k` largest (all when `None`) and samples from their softmax. `top_k=1`
    is greedy decoding.

    The tokens live in one fixed-size buffer and the steps run in a
    `jax.lax.fori_loop`, compiled (with `hax.jit`) once per model, prompt shape,
    `max_new_tokens` and `top_k`; it also runs inside `jit`. Each step recomputes
    the whole window (there is no key/value cache).

    **Arguments:**
    - `tree`, `global_config`: a `GPT` module.
    - `idx`: the prompt, `(batch, seq)` integer token ids, `seq >= 1`.
    - `max_new_tokens`: how many tokens to append.
    - `rng`: a PRNG key (or int seed); step `i` samples with `fold_in(rng, i)`.
    - `temperature`: `> 0`; below 1 sharpens, above 1 flattens the distribution.
    - `top_k`: sample among the `top_k` most likely tokens only.

    **Returns:** `(batch, seq + max_new_tokens)` token ids, the prompt first.
    """
    idx = jnp.asarray(idx)
    if idx.ndim != 2 or idx.shape[1] < 1 or not jnp.issubdtype(idx.dtype, jnp.integer):
        raise ValueError(
            f"generate: idx must be (batch, seq) integer token ids with seq >= 1, found "
            f"shape {tuple(idx.shape)} and dtype {idx.dtype}"
        )
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"generate: max_new_tokens must be an int >= 0, found {max_new_tokens!r}")
    if isinstance(temperature, int | float) and temperature <= 0:
        raise ValueError(
            f"generate: temperature must be > 0, found {temperature}; use top_k=1 for "
            "greedy decoding"
        )
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"generate: top_k must be None or an int >= 1, found {top_k!r}")
    return _sample(
        tree,
        global_config,
        idx,
        max_new_tokens,
        as_key(rng),
        jnp.asarray(temperature, jnp.float32),
        top_k,
    )


@jit
def _sample(
    tree: StructureTree,
    global_config: GlobalConfig,
    idx: jax.Array,
    max_new_tokens: int,
    key: jax.Array,
    temperature: jax.Array,
    top_k: int | None,
) -> jax.Array:
    """`generate`'s loop; `max_new_tokens`, `top_k` and the config are static."""
    batch, seq = idx.shape
    block_size = tree["submodules"]["wpe"]["params"]["weight"].shape[0]
    vocab_size = tree["submodules"]["lm_head"]["params"]["weight"].shape[0]
    total = seq + max_new_tokens
    window = min(block_size, total)
    eval_config = {**global_config, "train_mode": False}
    buffer = jnp.zeros((batch, total), idx.dtype).at[:, :seq].set(idx)

    def step(i: jax.Array, buffer: jax.Array) -> jax.Array:
        n = seq + i  # tokens so far; the next one goes to position n
        start = jnp.maximum(n - window, 0)
        # While n < window, the window's positions n.. hold padding the causal mask hides.
        context = jax.lax.dynamic_slice_in_dim(buffer, start, window, axis=1)
        _, logits = apply_tree(tree, eval_config, context)
        logits = jax.lax.dynamic_index_in_dim(logits, n - 1 - start, axis=1, keepdims=False)
        logits = logits / temperature
        if top_k is not None:
            kth = jax.lax.top_k(logits, min(top_k, vocab_size))[0][:, -1:]
            logits = jnp.where(logits < kth, -jnp.inf, logits)
        token = jax.random.categorical(jax.random.fold_in(key, i), logits, axis=-1)
        return jax.lax.dynamic_update_slice_in_dim(
            buffer, token[:, None].astype(buffer.dtype), n, axis=1
        )

    out: jax.Array = jax.lax.fori_loop(0, max_new_tokens, step, buffer)
    return out
