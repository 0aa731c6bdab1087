"""A GPT-style character transformer (nanoGPT's shape): pre-LN blocks of causal self-attention
and an MLP, learned positions, a linear head over the vocabulary.

Each block, on x (B, T, C):

    x = x + proj(attention(qkv(LN(x))))          causal, heads of C / num_heads
    x = x + fc2(GELU(fc1(LN(x))))                fc1: C → 4C, fc2: 4C → C

It speaks the recurrent models' interface, ``logits, state = model(tokens, state)``, so
``CharLanguageModel``'s truncated-BPTT loop and ``train.py sample`` drive it unchanged: the
"state" is the most recent ``context`` tokens (B, ≤ context), int64, carried from one batch to
the next. Each call attends over [carried tokens; new tokens], at most ``context`` positions, and
returns logits for the new tokens only; so the first character of a batch still sees the end of
the previous one, as a recurrent model's state would let it.

Initialisation: every linear weight normal with std 1 / sqrt(fan_in) (the gain-1 Kaiming
variance ``hyper.wrap`` gives generated linear weights, so a wrapped and a plain transformer
start alike), biases zero, embeddings normal(0, 0.02) as in GPT-2. Names read
``blocks.<l>.attn.qkv.weight``, ``blocks.<l>.mlp.fc1.weight``...: ``hyper.wrap`` places every
block's matrices in stage ``blocks`` with block index l, so ``tying_groups`` ties layers.

Axes: b batch, t time, h head, d head features, c model features.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from hyper import SourceSpec, Wrapped
from models.family import family_source

State = tuple[Tensor, ...]
# The weights the hypernetwork generates in HyperCharTransformer: every block's four matrices.
BLOCK_MATRICES = ("blocks.*",)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention over (B, T, C), fused by ``scaled_dot_product_attention``."""

    def __init__(self, *, embed_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, C) -> (B, T, C)
        q, k, v = rearrange(self.qkv(x), "b t (n h d) -> n b h t d", n=3, h=self.num_heads)
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(rearrange(y, "b h t d -> b t (h d)"))


class MLP(nn.Module):
    def __init__(self, *, embed_dim: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed_dim, 4 * embed_dim)
        self.fc2 = nn.Linear(4 * embed_dim, embed_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.fc2(F.gelu(self.fc1(x))))


class Block(nn.Module):
    """Pre-LN transformer block: x + attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, *, embed_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(embed_dim)
        self.attn = CausalSelfAttention(embed_dim=embed_dim, num_heads=num_heads, dropout=dropout)
        self.ln2 = nn.LayerNorm(embed_dim)
        self.mlp = MLP(embed_dim=embed_dim, dropout=dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.dropout(self.attn(self.ln1(x)))
        return x + self.mlp(self.ln2(x))


class CharTransformer(nn.Module):
    """Next-character transformer: tokens (B, T) → logits (B, T, vocab_size), with a token state.

    Args:
        vocab_size: number of distinct characters (embedding rows and head outputs).
        num_layers: transformer blocks (nanoGPT's character default: 6).
        num_heads: attention heads per block; must divide ``embed_dim``.
        embed_dim: model width C (nanoGPT's character default: 384).
        context: most positions one call attends over (learned positions); batches longer than
            this are refused.
        dropout: dropout on attention weights, the residual branches and the embeddings.
    """

    default_include = BLOCK_MATRICES  # what hyper.wrap generates when given no include

    def __init__(
        self,
        *,
        vocab_size: int,
        num_layers: int = 6,
        num_heads: int = 6,
        embed_dim: int = 384,
        context: int = 256,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_arguments(vocab_size, num_layers, num_heads, embed_dim, context, dropout)
        self.vocab_size = vocab_size
        self.context = context
        self.config: dict[str, Any] = dict(
            vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads,
            embed_dim=embed_dim, context=context, dropout=dropout,
        )
        self.token_embedding = nn.Embedding(vocab_size, embed_dim)
        self.position_embedding = nn.Embedding(context, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(embed_dim=embed_dim, num_heads=num_heads, dropout=dropout) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, vocab_size)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=1 / math.sqrt(module.in_features))
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """No tokens seen yet; passing ``None`` as state to ``forward`` does the same."""
        return (torch.zeros(batch_size, 0, dtype=torch.long, device=device),)

    def forward(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        if tokens.dim() != 2 or tokens.dtype != torch.long:
            raise ValueError(f"tokens must be an int64 (batch, time) tensor, got {tokens.dtype} {tuple(tokens.shape)}")
        if tokens.shape[1] > self.context:
            raise ValueError(f"at most context={self.context} tokens per call, got {tokens.shape[1]}")
        past = state[0] if state is not None else tokens[:, :0]
        keep = min(past.shape[1], self.context - tokens.shape[1])  # the latest tokens that still fit
        seen = torch.cat([past[:, past.shape[1] - keep :], tokens], 1)  # (B, S), S <= context
        positions = torch.arange(seen.shape[1], device=tokens.device)
        x = self.dropout(self.token_embedding(seen) + self.position_embedding(positions))  # (B, S, C)
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.norm(x[:, -tokens.shape[1] :]))  # (B, T, V): the new tokens only
        return logits, (seen,)


def _check_arguments(vocab_size: int, num_layers: int, num_heads: int, embed_dim: int, context: int, dropout: float) -> None:
    for name, value in dict(vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads,
                            embed_dim=embed_dim, context=context).items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if embed_dim % num_heads:
        raise ValueError(f"num_heads must divide embed_dim={embed_dim}, got {num_heads}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")


class HyperCharTransformer(Wrapped):
    """A ``CharTransformer`` whose blocks' matrices (qkv, proj, fc1, fc2) come from a weight
    source: ``hyper.wrap(CharTransformer(...), source)`` as a class (the matrices are those
    ``CharTransformer`` declares), so that a config (and the vocabulary size read off the data)
    can name it.

    Args:
        vocab_size: number of distinct characters.
        num_layers: transformer blocks.
        num_heads: attention heads per block.
        embed_dim: model width C (a multiple of the source's tile).
        context: most positions one call attends over.
        dropout: dropout on attention, residual branches and embeddings.
        source: the weight source (``Hyper(embedding_dim=16)``, ``LowRank(rank=4)``, ...);
            default ``Hyper()``.
        embedding_dim, hidden_dim, tile_channels, tying_groups: ``Hyper``'s knobs by name, instead
            of ``source`` (older configs and checkpoints); unset ones take ``Hyper``'s defaults.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        num_layers: int = 6,
        num_heads: int = 6,
        embed_dim: int = 384,
        context: int = 256,
        dropout: float = 0.0,
        source: SourceSpec | None = None,
        embedding_dim: int | None = None,
        hidden_dim: int | None = None,
        tile_channels: int | None = None,
        tying_groups: int | None = None,
    ) -> None:
        target = CharTransformer(
            vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads,
            embed_dim=embed_dim, context=context, dropout=dropout,
        )
        spec = family_source(
            source, embedding_dim=embedding_dim, hidden_dim=hidden_dim, tile_channels=tile_channels, tying_groups=tying_groups
        )
        super().__init__(target=target, source=spec)
