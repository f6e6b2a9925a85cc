"""BERT-shaped transformer layers written on `F.scaled_dot_product_attention`.

Post-LayerNorm like BERT, so a Hugging Face BERT checkpoint maps one tensor to one tensor:
  attention.self.{query,key,value}  -> attention.{query,key,value}
  attention.output.dense/LayerNorm  -> attention.out / attention.norm
  intermediate.dense                -> mlp.fc
  output.dense/LayerNorm            -> mlp.proj / mlp.norm
Fusion layers add `cross_attention.*` (queries from the text, keys and values from the video memory),
which BERT does not have: it starts fresh.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hcmrm.model.config import TextConfig


class Attention(nn.Module):
    """Multi-head attention + residual + LayerNorm (BERT's BertAttention, post-norm)."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.heads = config.heads
        self.query = nn.Linear(config.hidden, config.hidden)
        self.key = nn.Linear(config.hidden, config.hidden)
        self.value = nn.Linear(config.hidden, config.hidden)
        self.out = nn.Linear(config.hidden, config.hidden)
        self.norm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        self.dropout = config.dropout
        self.attention_dropout = config.attention_dropout

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        return x.view(b, t, self.heads, c // self.heads).transpose(1, 2)  # [B, heads, T, head_dim]

    def keys_values(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split_heads(self.key(source)), self.split_heads(self.value(source))

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor, source: torch.Tensor | None = None,
                keys_values: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """x [B, L, C] attends to source (x itself when None) where key_mask [B, S] is True.

        keys_values, when given, are this layer's precomputed `keys_values(source)` (a video's cross-attention
        keys and values are computed once per video, then gathered per pair).
        """
        q = self.split_heads(self.query(x))
        k, v = keys_values if keys_values is not None else self.keys_values(x if source is None else source)
        mask = key_mask[:, None, None, :].to(torch.bool)  # [B, 1, 1, S], True = may attend
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.attention_dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(x.shape)
        return self.norm(x + F.dropout(self.out(y), self.dropout, self.training))


class MLP(nn.Module):
    """Feed-forward + residual + LayerNorm (BERT's intermediate + output)."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.fc = nn.Linear(config.hidden, config.intermediate)
        self.proj = nn.Linear(config.intermediate, config.hidden)
        self.norm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj(F.gelu(self.fc(x)))
        return self.norm(x + F.dropout(y, self.dropout, self.training))


class Block(nn.Module):
    """One BERT layer; with cross=True, cross-attention to a video memory between self-attention and MLP."""

    def __init__(self, config: TextConfig, cross: bool = False):
        super().__init__()
        self.attention = Attention(config)
        self.cross_attention = Attention(config) if cross else None
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, memory: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None,
                memory_keys_values: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = self.attention(x, mask)
        if self.cross_attention is not None:
            x = self.cross_attention(x, memory_mask, source=memory, keys_values=memory_keys_values)
        return self.mlp(x)


class TextEmbeddings(nn.Module):
    """Word + position + segment embeddings, LayerNorm, dropout (BERT's embeddings)."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.word = nn.Embedding(config.vocab_size, config.hidden)
        self.position = nn.Embedding(config.max_positions, config.hidden)
        self.token_type = nn.Embedding(config.type_vocab_size, config.hidden)
        self.norm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        self.dropout = config.dropout

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        x = self.word(input_ids) + self.position(position_ids) + self.token_type(token_type_ids)
        return F.dropout(self.norm(x), self.dropout, self.training)


def init_bert_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT's initialisation: normal(0, 0.02) weights, zero biases, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
