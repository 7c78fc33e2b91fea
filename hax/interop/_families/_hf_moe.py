"""Hugging Face's sparse mixture-of-experts blocks (Qwen3-MoE): a top-k router picks
`top_k` experts for each token, and the experts, whose weights are stacked in 3D params
(the classes `use_experts_implementation` wraps), run on the tokens routed to them,
each output weighted by its routing score.

The experts run as one grouped matmul over the token-expert pairs sorted by expert
(`jax.lax.ragged_dot`): the cost is that of the chosen experts only, and the shapes do
not depend on the routing, so it runs under `jit`."""

from typing import Any

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ..._types import GlobalConfig, StructureTree
from ._hf_common import causal_lm_apply, config_reader, constant_aux, register_family
from ._llama import LLAMA_APPLIES, LLAMA_AUX

# The weight layout `experts_apply` runs: the experts' flags and the values it needs.
_EXPERTS_LAYOUT = {
    "is_concatenated": True,
    "is_transposed": False,
    "has_bias": False,
    "has_gate": True,
    "has_post_expert_norm": False,
}


def _check_layout(org: StateOrganizer) -> None:
    for flag, needed in _EXPERTS_LAYOUT.items():
        if getattr(org, flag, needed) != needed:
            raise ValueError(
                f"experts: {flag}={not needed} is not supported: HAX runs experts whose "
                "gate_up_proj is (experts, 2 * intermediate, hidden), gate rows first, with "
                f"no bias and no norm after each expert; a family with {flag}={not needed} "
                "needs its own experts apply"
            )


@organized_apply
def experts_apply(
    org: StateOrganizer,
    hidden_states: jax.Array,
    top_k_index: jax.Array,
    top_k_weights: jax.Array,
) -> jax.Array:
    """`Qwen3MoeExperts` (the eager form of a `use_experts_implementation` class): for
    each `(T, D)` token and each of its `(T, k)` experts, `down_proj[e] @
    (act_fn(gate) * up)` for `gate, up = (gate_up_proj[e] @ x).chunk(2)`, times the
    token's weight for that expert, summed over its experts."""
    _check_layout(org)
    top_k = top_k_index.shape[-1]
    experts = top_k_index.reshape(-1)
    order = jnp.argsort(experts, stable=True)
    tokens = order // top_k
    group_sizes = jnp.bincount(experts, length=org.num_experts)
    gate_up = jax.lax.ragged_dot(
        hidden_states[tokens], org.gate_up_proj.swapaxes(-1, -2), group_sizes
    )
    gate, up = jnp.split(gate_up, 2, axis=-1)
    out = jax.lax.ragged_dot(org.act_fn(gate) * up, org.down_proj.swapaxes(-1, -2), group_sizes)
    out = out * top_k_weights.reshape(-1)[order][:, None]
    return jnp.zeros_like(hidden_states).at[tokens].add(out.astype(hidden_states.dtype))


@organized_apply
def top_k_router_apply(
    org: StateOrganizer, hidden_states: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`Qwen3MoeTopKRouter`: `(logits, scores, indices)`: the `top_k` largest softmax
    probabilities (in float32) of `weight @ x` and their experts, the scores normalised
    to sum to 1 when `norm_topk_prob`, in the logits' dtype."""
    hidden_states = hidden_states.reshape(-1, org.hidden_dim)
    logits = hidden_states @ org.weight.T
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    scores, indices = jax.lax.top_k(probs, org.top_k)
    if org.norm_topk_prob:
        scores = scores / jnp.sum(scores, axis=-1, keepdims=True)
    return logits, scores.astype(logits.dtype), indices


@organized_apply
def sparse_moe_block_apply(org: StateOrganizer, hidden_states: jax.Array) -> jax.Array:
    """`Qwen3MoeSparseMoeBlock`: each token through the experts its `gate` picks."""
    batch, length, hidden = hidden_states.shape
    flat = hidden_states.reshape(-1, hidden)
    _, weights, indices = org.gate(flat)
    out: jax.Array = org.experts(flat, indices, weights)
    return out.reshape(batch, length, hidden)


def moe_causal_lm_apply(
    tree: StructureTree, global_config: GlobalConfig, /, *args: Any, **kwargs: Any
) -> tuple[StructureTree, dict[str, jax.Array]]:
    """`Qwen3MoeForCausalLM`: `causal_lm_apply`, for a model that does not add the
    router's load-balancing loss (`config.output_router_logits` false)."""
    if tree["aux"]["output_router_logits"]:
        raise ValueError(
            "causal LM: config.output_router_logits=True adds the routers' load-balancing "
            "loss, which HAX does not compute; set model.config.output_router_logits = "
            "False before converting"
        )
    return causal_lm_apply(tree, global_config, *args, **kwargs)


register_family(
    {
        **LLAMA_APPLIES,
        "Experts": experts_apply,
        "TopKRouter": top_k_router_apply,
        "SparseMoeBlock": sparse_moe_block_apply,
        "ForCausalLM": moe_causal_lm_apply,
    },
    "qwen3_moe.modeling_qwen3_moe.Qwen3Moe",
    rng={"Attention"},
    aux={
        **LLAMA_AUX,
        "Attention": constant_aux(qk_norm="head"),
        "ForCausalLM": config_reader("output_router_logits"),
    },
)
