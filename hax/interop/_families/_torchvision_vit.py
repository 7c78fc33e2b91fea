"""torchvision's `VisionTransformer` (`vit_b_16`, `vit_l_32`, ... at any size): patch
projection and class token, the encoder with learned position embeddings, and its
pre-norm blocks. Their `nn.MultiheadAttention` converts to `hax.nn.MultiheadAttention`,
`MLPBlock` as the `Sequential` it is, and `heads` as a named `Sequential`."""

import jax
import jax.numpy as jnp

from ..._organizer import StateOrganizer, organized_apply
from ..._types import InputArray
from ._registry import register_all


@organized_apply
def encoder_block_apply(org: StateOrganizer, input: InputArray) -> jax.Array:
    """`EncoderBlock`: pre-norm self-attention and MLP, each with a residual."""
    if input.ndim != 3:
        raise ValueError(f"Expected (batch_size, seq_length, hidden_dim) got {input.shape}")
    x: jax.Array = org.ln_1(input)
    x, _ = org.self_attention(x, x, x, need_weights=False)
    x = org.dropout(x)
    x = x + input
    y: jax.Array = org.mlp(org.ln_2(x))
    return x + y


@organized_apply
def encoder_apply(org: StateOrganizer, input: InputArray) -> jax.Array:
    """`Encoder`: position embeddings, dropout, the blocks, the final norm."""
    if input.ndim != 3:
        raise ValueError(f"Expected (batch_size, seq_length, hidden_dim) got {input.shape}")
    input = input + org.pos_embedding
    out: jax.Array = org.ln(org.layers(org.dropout(input)))
    return out


@organized_apply
def vision_transformer_apply(org: StateOrganizer, x: InputArray) -> jax.Array:
    """`VisionTransformer`: the logits of the class token."""
    n, _, h, w = x.shape
    p = org.patch_size
    if h != org.image_size or w != org.image_size:
        raise ValueError(
            f"Wrong image size! Expected {org.image_size}x{org.image_size} but got {h}x{w}!"
        )
    x = org.conv_proj(x)
    x = x.reshape(n, org.hidden_dim, (h // p) * (w // p)).transpose(0, 2, 1)
    batch_class_token = jnp.broadcast_to(org.class_token, (n, *org.class_token.shape[1:]))
    x = jnp.concatenate([batch_class_token, x], axis=1)
    x = org.encoder(x)
    out: jax.Array = org.heads(x[:, 0])
    return out


register_all(
    "torchvision.models.vision_transformer.",
    {
        "EncoderBlock": encoder_block_apply,
        "Encoder": encoder_apply,
        "VisionTransformer": vision_transformer_apply,
    },
)
