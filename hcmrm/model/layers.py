"""BERT-shaped transformer layers written on `F.scaled_dot_product_attention`.

Post-LayerNorm like BERT, so a Hugging Face BERT checkpoint maps one tensor to one tensor:
  attention.self.{query,key,value}  -> attention.{query,key,value}
  attention.output.dense/LayerNorm  -> attention.out / attention.norm
  intermediate.dense                -> mlp.fc
  output.dense/LayerNorm            -> mlp.proj / mlp.norm
Fusion layers add `cross_attention.*` (queries from the text, keys and values from the video memory),
which BERT does not have: it starts fresh.
With config.lora_rank > 0 the self-attention and feed-forward matrices are LoRALinear: the pretrained matrix
plus a trainable low-rank update (`merge_lora` folds it in for inference).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hcmrm.model.config import TextConfig


class LoRALinear(nn.Linear):
    """W x + b + (alpha / r) B A x: the matrix W and bias stay frozen, A [r, in] and B [out, r] train (B starts at 0,
    so a loaded checkpoint gives the same outputs until it is trained)."""

    def __init__(self, n_in: int, n_out: int, rank: int, alpha: float):
        super().__init__(n_in, n_out)
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, n_in))
        self.lora_b = nn.Parameter(torch.zeros(n_out, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.weight.requires_grad_(False)
        self.bias.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + F.linear(F.linear(x, self.lora_a), self.lora_b) * self.scale

    def merged(self) -> nn.Linear:
        """A plain nn.Linear computing the same function."""
        plain = nn.Linear(self.in_features, self.out_features, device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            plain.weight.copy_(self.weight + self.scale * (self.lora_b @ self.lora_a).to(self.weight.dtype))
            plain.bias.copy_(self.bias)
        return plain


def linear(config: TextConfig, n_in: int, n_out: int, adapted: bool) -> nn.Linear:
    """A LoRALinear when the config asks for adapters and this matrix takes one, else nn.Linear."""
    if adapted and config.lora_rank > 0:
        return LoRALinear(n_in, n_out, config.lora_rank, config.lora_alpha)
    return nn.Linear(n_in, n_out)


def merge_lora(model: nn.Module) -> int:
    """Replace every LoRALinear of `model` by its merged nn.Linear, in place; returns how many."""
    targets = [(name, m) for name, m in model.named_modules() if isinstance(m, LoRALinear)]
    for name, module in targets:
        parent_name, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, leaf, module.merged())
    return len(targets)


class Attention(nn.Module):
    """Multi-head attention + residual + LayerNorm (BERT's BertAttention, post-norm)."""

    def __init__(self, config: TextConfig, adapted: bool = True):
        super().__init__()
        self.heads = config.heads
        self.query = linear(config, config.hidden, config.hidden, adapted)
        self.key = linear(config, config.hidden, config.hidden, adapted)
        self.value = linear(config, config.hidden, config.hidden, adapted)
        self.out = linear(config, config.hidden, config.hidden, adapted)
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
        keys and values are computed once per video, then gathered per pair). A key_mask [B, L, S] says per
        query row which keys it may see (the cached text attention, hcmrm.model.network).
        """
        q = self.split_heads(self.query(x))
        k, v = keys_values if keys_values is not None else self.keys_values(x if source is None else source)
        if key_mask.dim() == 3:
            mask = key_mask[:, None, :, :].to(torch.bool)  # [B, 1, L, S]
        else:
            mask = key_mask[:, None, None, :].to(torch.bool)  # [B, 1, 1, S], True = may attend
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.attention_dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(x.shape)
        return self.norm(x + F.dropout(self.out(y), self.dropout, self.training))


class MLP(nn.Module):
    """Feed-forward + residual + LayerNorm (BERT's intermediate + output)."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.fc = linear(config, config.hidden, config.intermediate, True)
        self.proj = linear(config, config.intermediate, config.hidden, True)
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
        self.cross_attention = Attention(config, adapted=False) if cross else None  # new: trains in full
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, memory: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None,
                memory_keys_values: tuple[torch.Tensor, torch.Tensor] | None = None,
                self_keys_values: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """self_keys_values: this layer's self-attention keys and values when they are not x's own (the
        cached text attention: a pair's query rows attend to their own keys plus the ad's cached text keys)."""
        x = self.attention(x, mask, keys_values=self_keys_values)
        if self.cross_attention is not None:
            x = self.cross_attention(x, memory_mask, source=memory, keys_values=memory_keys_values)
        return self.mlp(x)


NO_MATCH, TOKEN_MATCH, BIGRAM_MATCH = 0, 1, 2  # match ids: the token occurs on the other side (alone, in a bigram)


def match_ids(input_ids: torch.Tensor, token_type_ids: torch.Tensor, attention_mask: torch.Tensor,
              first_word_id: int) -> torch.Tensor:
    """[B, L] match id of each token: does it occur on the other side of the pair, and inside a shared bigram?

    Computed from the ids alone, so every caller (training, the scoring engine) gets it without a new input.
    A shared bigram (two neighbouring tokens, in order, on both sides) is the word-level signal: Chinese
    WordPiece tokens are single characters, and a shared run of two or more is a shared word or name.
    """
    real = attention_mask.to(torch.bool) & (input_ids >= first_word_id)
    same = input_ids[:, :, None] == input_ids[:, None, :]  # [B, L, L]
    across = (token_type_ids[:, :, None] != token_type_ids[:, None, :]) & real[:, :, None] & real[:, None, :]
    token = (same & across).any(-1)
    pair = real[:, :-1] & real[:, 1:] & (token_type_ids[:, :-1] == token_type_ids[:, 1:])  # bigram starting at i
    shared = (same[:, :-1, :-1] & same[:, 1:, 1:] & across[:, :-1, :-1] & pair[:, None, :]).any(-1) & pair
    bigram = torch.zeros_like(token)
    bigram[:, :-1] |= shared
    bigram[:, 1:] |= shared
    return torch.where(bigram, BIGRAM_MATCH, torch.where(token, TOKEN_MATCH, NO_MATCH))


class TextEmbeddings(nn.Module):
    """Word + position + segment (+ match) embeddings, LayerNorm, dropout (BERT's embeddings).

    The match embedding is zero-initialised (see reset_match): a loaded BERT checkpoint gives the same
    outputs until the model is trained with it.
    """

    def __init__(self, config: TextConfig):
        super().__init__()
        self.word = nn.Embedding(config.vocab_size, config.hidden)
        self.position = nn.Embedding(config.max_positions, config.hidden)
        self.token_type = nn.Embedding(config.type_vocab_size, config.hidden)
        self.match = nn.Embedding(3, config.hidden) if config.match_embeddings else None
        self.first_word_id = config.first_word_id
        self.norm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        self.dropout = config.dropout

    def reset_match(self) -> None:
        if self.match is not None:
            nn.init.zeros_(self.match.weight)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, token_type_ids: torch.Tensor,
                attention_mask: torch.Tensor | None = None, match: torch.Tensor | None = None) -> torch.Tensor:
        """match: precomputed match ids [B, L] (the cached text attention's); else computed from the ids."""
        x = self.word(input_ids) + self.position(position_ids) + self.token_type(token_type_ids)
        if self.match is not None and match is None and attention_mask is not None:
            match = match_ids(input_ids, token_type_ids, attention_mask, self.first_word_id)
        if self.match is not None and match is not None:
            x = x + self.match(match)
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
