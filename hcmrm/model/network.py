"""HCMRM: a text encoder, a vision tower and a fusion encoder that cross-attends to the video (ALBEF's split).

Scoring a pair is two steps, so that each video is encoded once however many queries it has:
  video = model.encode_video(frames, frame_mask)                  # once per video
  out = model.relevance(input_ids, attention_mask, token_type_ids, video.index_select(pair_to_video))
With `text_attention: cached` a third step moves the video text's work from the pair to the ad:
  text = model.encode_video_text(text_ids, text_mask, video)       # once per ad: every layer's text keys/values
  out = model.relevance_cached(query_ids, query_mask, text.select(pair_to_ad), video.index_select(pair_to_ad))
which equals model.relevance on the packed pair of the same (cached) model: there, video-text tokens attend
only to the video text (and cross-attend to the video), while [CLS] and the query attend to everything.
The video memory is the frames' ViT tokens projected to the fusion width (plus a learned per-frame
embedding), followed by one learned "no image" token that is never masked: a video without frames
cross-attends to that token alone, so it scores from its text, deterministically, and no attention row is
ever fully masked (no NaN).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

import torch
from torch import nn

from hcmrm.config import override
from hcmrm.model.config import HCMRMConfig, preset
from hcmrm.model.heads import PretrainHeads, RelevanceHead
from hcmrm.model.layers import NO_MATCH, Block, TextEmbeddings, init_bert_weights, match_ids
from hcmrm.model.losses import expected_grade, relevance_probs
from hcmrm.model.vision import build_vision_tower, frame_tokens


@dataclass
class VideoMemory:
    """What the fusion encoder cross-attends to, computed once per video."""

    embeds: torch.Tensor  # [B, T, hidden] frame tokens then the "no image" token
    mask: torch.Tensor  # [B, T] bool, True = real token
    pooled: torch.Tensor | None = None  # [B, vision width] mean of the frames' CLS tokens (zeros without frames)
    has_frames: torch.Tensor | None = None  # [B] bool, the video has at least one frame
    keys_values: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # per fusion layer, [B, heads, T, head_dim]

    def __len__(self) -> int:
        return self.embeds.shape[0]

    def _map(self, fn) -> "VideoMemory":
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                values[f.name] = None
            elif f.name == "keys_values":
                values[f.name] = [(fn(k), fn(v)) for k, v in value]
            else:
                values[f.name] = fn(value)
        return VideoMemory(**values)

    def index_select(self, index: torch.Tensor) -> "VideoMemory":
        """Rows gathered by index: pairs -> their video's memory (index [P] of row numbers)."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.embeds.device)
        return self._map(lambda t: t.index_select(0, index))

    def to(self, device) -> "VideoMemory":
        return self._map(lambda t: t.to(device))


@dataclass
class TextCache:
    """The video text's self-attention keys and values at every layer (cached text attention), once per ad."""

    keys_values: list[tuple[torch.Tensor, torch.Tensor]]  # text layers then fusion layers, [A, heads, T, head_dim]
    mask: torch.Tensor  # [A, T] bool, True = real token (`t [SEP]`, padded on the right)
    ids: torch.Tensor  # [A, T] token ids: the query side's match ids are computed against them

    def __len__(self) -> int:
        return self.mask.shape[0]

    def select(self, index: torch.Tensor, width: int | None = None) -> "TextCache":
        """Rows gathered by index (pairs -> their ad's text), cut to the first `width` tokens."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.mask.device)

        def pick(t: torch.Tensor) -> torch.Tensor:  # keys/values [A, heads, T, d]; mask and ids [A, T]
            t = t.index_select(0, index)
            return t[:, :, :width] if t.dim() == 4 else t[:, :width]

        return TextCache([(pick(k), pick(v)) for k, v in self.keys_values], pick(self.mask), pick(self.ids))


def cached_attention_mask(attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
    """[B, L, L] self-attention mask of the cached text attention: video-text rows (type 1) see only the real
    video-text keys; [CLS], query and padding rows see every real key."""
    text = token_type_ids.to(torch.bool)
    return attention_mask.to(torch.bool)[:, None, :] & (~text[:, :, None] | text[:, None, :])


@dataclass
class RelevanceOutput:
    logits: torch.Tensor  # hierarchical: [B, 3] (r, g, b) logits; bce: [B, 1]
    probs: torch.Tensor  # [B, 4] p_bad, p_less, p_good, p_excellent (fp32, rows sum to 1)
    score: torch.Tensor  # [B] p1 + 2 p2 + 3 p3


class HCMRM(nn.Module):
    def __init__(self, config: HCMRMConfig):
        super().__init__()
        self.config = config
        t = config.text
        self.embeddings = TextEmbeddings(t)
        self.text_layers = nn.ModuleList(Block(t) for _ in range(t.text_layers))
        self.fusion_layers = nn.ModuleList(Block(t, cross=True) for _ in range(t.fusion_layers))
        self.relevance_head = RelevanceHead(config)
        self.heads = PretrainHeads(config)
        init_bert_weights(self)  # before the vision tower, which keeps timm's own initialisation
        self.embeddings.reset_match()
        self.vision = build_vision_tower(config.vision)
        self.video_proj = nn.Linear(config.vision.width, t.hidden)  # ViT tokens -> fusion width
        self.frame_embed = nn.Parameter(torch.zeros(max(config.max_frames, 1), t.hidden))  # which frame a token is from
        self.no_image = nn.Parameter(torch.randn(t.hidden) * 0.02)  # the always-visible memory token
        init_bert_weights(self.video_proj)

    # --- video ---------------------------------------------------------------------------------
    def encode_video(self, frames: torch.Tensor, frame_mask: torch.Tensor, keys_values: bool = True) -> VideoMemory:
        """frames [B, F, 3, H, W], frame_mask [B, F] bool -> the video memory; only real frames go through the ViT.

        keys_values=True also computes each fusion layer's cross-attention keys and values once per video.
        """
        b, f = frame_mask.shape
        if f > self.frame_embed.shape[0]:
            raise ValueError(f"{f} frames per video, the model was built for max_frames={self.config.max_frames}")
        frame_mask = frame_mask.to(torch.bool)
        hidden = self.config.text.hidden
        width = self.config.vision.width
        per_frame = self.config.vision.tokens_per_frame
        dtype = self.video_proj.weight.dtype
        n_real = int(frame_mask.sum())
        if n_real:
            images = frames[frame_mask].to(self.vision.patch_embed.proj.weight.dtype)
            tokens = frame_tokens(self.vision, images)  # [N, per_frame, width]
            grid = tokens.new_zeros((b, f, per_frame, width))
            grid[frame_mask] = tokens
            counts = frame_mask.sum(1, keepdim=True).clamp(min=1).to(grid.dtype)
            pooled = grid[:, :, 0].sum(1) / counts
            embeds = self.video_proj(grid) + self.frame_embed[:f, None, :].to(dtype)
            embeds = embeds * frame_mask[:, :, None, None].to(embeds.dtype)  # padded frames are exact zeros
            embeds = embeds.reshape(b, f * per_frame, hidden)
            token_mask = frame_mask[:, :, None].expand(b, f, per_frame).reshape(b, f * per_frame)
        else:  # a batch of text-only videos skips the ViT
            pooled = frames.new_zeros((b, width), dtype=dtype)
            embeds = frames.new_zeros((b, 0, hidden), dtype=dtype)
            token_mask = frame_mask.new_zeros((b, 0))
        no_image = self.no_image.to(embeds.dtype).expand(b, 1, hidden)
        embeds = torch.cat([embeds, no_image], dim=1)
        mask = torch.cat([token_mask, token_mask.new_ones((b, 1))], dim=1)
        kv = [layer.cross_attention.keys_values(embeds) for layer in self.fusion_layers] if keys_values else None
        return VideoMemory(embeds, mask, pooled, frame_mask.any(dim=1), kv)

    def empty_video(self, batch_size: int, device=None) -> VideoMemory:
        """The memory of batch_size text-only videos."""
        img = self.config.vision.image_size
        device = device or self.no_image.device
        return self.encode_video(torch.zeros((batch_size, 0, 3, img, img), device=device),
                                 torch.zeros((batch_size, 0), dtype=torch.bool, device=device))

    # --- text ----------------------------------------------------------------------------------
    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The text encoder: [B, L] ids -> [B, L, hidden].

        Positions count real tokens only (cumsum of the mask), so padding anywhere in a row is invisible:
        the pre-trainer concatenates a padded query and a padded text and gets the fine-tuning positions.
        """
        attention_mask = attention_mask.to(torch.bool)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if self.cached_text:
            return self._encode_text_cached(input_ids, attention_mask, token_type_ids)
        position_ids = (attention_mask.long().cumsum(1) - 1).clamp(min=0)
        match = None if self.config.text.match_text_side else self._query_side_match(input_ids, token_type_ids,
                                                                                     attention_mask)
        x = self.embeddings(input_ids, position_ids, token_type_ids, attention_mask, match=match)
        for layer in self.text_layers:
            x = layer(x, attention_mask)
        return x

    text_features = encode_text

    def fuse(self, text: torch.Tensor, attention_mask: torch.Tensor, video: VideoMemory,
             token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The fusion encoder: text states [B, L, hidden] cross-attend to the video memory -> [B, L, hidden].

        token_type_ids (pair rows) are needed by the cached text attention only: without them every token
        sees every token, as with `full`.
        """
        if len(video) != text.shape[0]:
            raise ValueError(f"{text.shape[0]} texts but {len(video)} videos; gather with video.index_select(pair_to_video)")
        attention_mask = attention_mask.to(torch.bool)
        if self.cached_text and token_type_ids is not None:
            attention_mask = cached_attention_mask(attention_mask, token_type_ids)
        x = text
        for i, layer in enumerate(self.fusion_layers):
            kv = video.keys_values[i] if video.keys_values is not None else None
            x = layer(x, attention_mask, memory=video.embeds, memory_mask=video.mask, memory_keys_values=kv)
        return x

    # --- cached text attention (config.text_attention == "cached") ----------------------------------
    @property
    def cached_text(self) -> bool:
        return self.config.text_attention == "cached"

    def _cached_positions(self, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        """The query segment counts from 0; the video text from max_query_len + 2 whatever the query's length
        (as if every query filled its budget), so its states do not depend on the query."""
        text = token_type_ids.to(torch.bool)
        query_pos = ((attention_mask & ~text).long().cumsum(1) - 1).clamp(min=0)
        text_pos = ((attention_mask & text).long().cumsum(1) - 1).clamp(min=0) + self.config.max_query_len + 2
        return torch.where(text, text_pos, query_pos)

    def _query_side_match(self, input_ids, token_type_ids, attention_mask) -> torch.Tensor | None:
        """Match ids with the video-text side's dropped (NO_MATCH): they depend on the query, which per-ad caching
        forbids. The query side keeps its match ids (computed per pair from both sides' ids)."""
        if self.embeddings.match is None:
            return None
        ids = match_ids(input_ids, token_type_ids, attention_mask, self.config.text.first_word_id)
        return ids.masked_fill(token_type_ids.to(torch.bool), NO_MATCH)

    def _encode_text_cached(self, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        x = self.embeddings(input_ids, self._cached_positions(attention_mask, token_type_ids), token_type_ids,
                            attention_mask, match=self._query_side_match(input_ids, token_type_ids, attention_mask))
        mask = cached_attention_mask(attention_mask, token_type_ids)
        for layer in self.text_layers:
            x = layer(x, mask)
        return x

    def _layer_memory(self, layer_index: int, video: VideoMemory) -> dict:
        fusion = layer_index - len(self.text_layers)
        if fusion < 0:
            return {}
        kv = video.keys_values[fusion] if video.keys_values is not None else None
        return {"memory": video.embeds, "memory_mask": video.mask, "memory_keys_values": kv}

    def encode_video_text(self, text_ids: torch.Tensor, text_mask: torch.Tensor, video: VideoMemory) -> TextCache:
        """Once per ad: `t [SEP]` rows [A, T] (Tokenizer.encode_text_segments) and the ads' video memory -> the
        video text's self-attention keys and values at every layer."""
        if not self.cached_text:
            raise ValueError("encode_video_text needs a model with text_attention: cached")
        mask = text_mask.to(torch.bool)
        types = torch.ones_like(text_ids)
        x = self.embeddings(text_ids, self._cached_positions(mask, types), types, mask,
                            match=self._query_side_match(text_ids, types, mask))
        layers = [*self.text_layers, *self.fusion_layers]
        keys_values = []
        for i, layer in enumerate(layers):
            keys_values.append(layer.attention.keys_values(x))
            if i + 1 < len(layers):  # the last layer's output is never read, only its keys and values
                x = layer(x, mask, self_keys_values=keys_values[-1], **self._layer_memory(i, video))
        return TextCache(keys_values, mask, text_ids)

    def relevance_cached(self, query_ids: torch.Tensor, query_mask: torch.Tensor, text: TextCache,
                         video: VideoMemory) -> RelevanceOutput:
        """Per pair: `[CLS] q [SEP]` rows [P, Lq] (Tokenizer.encode_texts) against their ads' TextCache and
        VideoMemory, gathered per pair -> what `relevance` gives on the packed pair, for [CLS] + query only."""
        if not self.cached_text:
            raise ValueError("relevance_cached needs a model with text_attention: cached")
        if len(text) != query_ids.shape[0] or len(video) != query_ids.shape[0]:
            raise ValueError(f"{query_ids.shape[0]} queries, {len(text)} texts, {len(video)} videos; gather per pair")
        mask = query_mask.to(torch.bool)
        types = torch.zeros_like(query_ids)
        match = None
        if self.embeddings.match is not None:  # the query side's match ids, against the ad's text ids
            both = torch.cat([query_ids, text.ids], 1), torch.cat([types, torch.ones_like(text.ids)], 1)
            match = match_ids(*both, torch.cat([mask, text.mask], 1), self.config.text.first_word_id)
            match = match[:, : query_ids.shape[1]]
        x = self.embeddings(query_ids, self._cached_positions(mask, types), types, mask, match=match)
        key_mask = torch.cat([mask, text.mask], 1)
        layers = [*self.text_layers, *self.fusion_layers]
        for i, layer in enumerate(layers):
            k, v = layer.attention.keys_values(x)
            text_k, text_v = text.keys_values[i]
            kv = torch.cat([k, text_k.to(k.dtype)], 2), torch.cat([v, text_v.to(v.dtype)], 2)
            if i + 1 == len(layers):
                x = x[:, :1]  # only [CLS] is read after the last layer
            x = layer(x, key_mask, self_keys_values=kv, **self._layer_memory(i, video))
        return self._relevance_output(self.relevance_head(x[:, 0]))

    # --- relevance -----------------------------------------------------------------------------
    def relevance(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor,
                  video: VideoMemory) -> RelevanceOutput:
        """`[CLS] query [SEP] video text [SEP]` pairs and their videos' memory -> grades and score."""
        text = self.encode_text(input_ids, attention_mask, token_type_ids)
        fused = self.fuse(text, attention_mask, video, token_type_ids)
        return self._relevance_output(self.relevance_head(fused[:, 0]))

    def _relevance_output(self, logits: torch.Tensor) -> RelevanceOutput:
        probs = relevance_probs(logits, self.config.head)
        return RelevanceOutput(logits=logits, probs=probs, score=expected_grade(probs))

    def forward(self, input_ids, attention_mask, token_type_ids, frames, frame_mask) -> RelevanceOutput:
        """One video per pair: encode_video then relevance."""
        return self.relevance(input_ids, attention_mask, token_type_ids, self.encode_video(frames, frame_mask))

    # --- bookkeeping ---------------------------------------------------------------------------
    def pretrained_parameter_names(self) -> set[str]:
        """Parameters that come from config.text.base (embeddings, self-attention, feed-forward) and their
        low-rank adapters; empty without a base. The cross-attention, match embedding, vision and heads are new."""
        if not self.config.text.base:
            return set()
        fusion_part = re.compile(r"fusion_layers\.\d+\.(attention|mlp)\.")
        return {n for n, _ in self.named_parameters()
                if (n.startswith("embeddings.") and not n.startswith("embeddings.match."))
                or n.startswith("text_layers.") or fusion_part.match(n)}

    def tower_parameters(self) -> dict[str, int]:
        """Parameter counts per part: text, fusion, vision (with the projection to fusion width), heads."""
        parts = {"text": 0, "fusion": 0, "vision": 0, "heads": 0}
        for name, p in self.named_parameters():
            top = name.split(".", 1)[0]
            part = {"embeddings": "text", "text_layers": "text", "fusion_layers": "fusion", "vision": "vision",
                    "video_proj": "vision", "frame_embed": "vision", "no_image": "vision"}.get(top, "heads")
            parts[part] += p.numel()
        parts["total"] = sum(parts.values())
        return parts


def build_model(config_or_preset_name: HCMRMConfig | str = "tiny", **overrides) -> HCMRM:
    """HCMRM from a config or a preset name (+ overrides, see hcmrm.model.config.preset)."""
    if isinstance(config_or_preset_name, str):
        config = preset(config_or_preset_name, **overrides)
    else:
        config = config_or_preset_name
        if overrides:
            config = override(config, overrides)
    return HCMRM(config)
