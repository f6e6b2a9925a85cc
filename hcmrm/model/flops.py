"""FLOP of scoring, counted by torch.utils.flop_counter on the real forward passes: per pair and per ad,
for the `full` and the `cached` text attention (docs/scoring.md, benchmarks/flop_per_pair.py).

A pair of `full` runs `[CLS] query [SEP] text [SEP]` through every layer; a pair of `cached` runs only
`[CLS] query [SEP]`, its ad's video text having run once (HCMRM.encode_video_text). Both share the ad's video
encode. Amortised over N queries per ad: full = pair + video / N, cached = pair + (text + video) / N.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from hcmrm.model.network import HCMRM

# torch counts the CUDA attention kernels but not the CPU one SDPA picks (2.x): count it the same way.
_CPU_SDPA = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
if _CPU_SDPA not in flop_counter.flop_registry and _CPU_SDPA.default not in flop_counter.flop_registry:
    @flop_counter.register_flop_formula(_CPU_SDPA)
    def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


@dataclass
class PairFlops:
    query_len: int  # query tokens, special tokens excluded
    text_len: int  # video-text tokens, special tokens excluded
    frames: int  # frames per ad through the vision tower
    queries_per_ad: int  # N, the pairs sharing one ad's per-ad work
    video_per_ad: int  # encode_video (ViT + projection + cross-attention keys/values), both modes
    full_per_pair: int  # relevance on the packed pair
    cached_text_per_ad: int  # encode_video_text (cached only)
    cached_per_pair: int  # relevance_cached: [CLS] + query against the cached text

    @property
    def full_amortised(self) -> float:
        return self.full_per_pair + self.video_per_ad / self.queries_per_ad

    @property
    def cached_amortised(self) -> float:
        return self.cached_per_pair + (self.cached_text_per_ad + self.video_per_ad) / self.queries_per_ad

    def as_dict(self) -> dict:
        text_only = self.full_per_pair / (self.cached_per_pair + self.cached_text_per_ad / self.queries_per_ad)
        return {**asdict(self), "full_amortised": round(self.full_amortised), "cached_amortised": round(self.cached_amortised),
                "ratio_without_video": round(text_only, 2),
                "ratio_amortised": round(self.full_amortised / self.cached_amortised, 2)}


def counted(fn, *args) -> int:
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops()


def pair_flops(full: HCMRM, cached: HCMRM, query_len: int, text_len: int, frames: int = 4,
               queries_per_ad: int = 40, batch: int = 2) -> PairFlops:
    """FLOP of one ad of `frames` frames and `text_len` text tokens, and of one of its pairs (queries of
    `query_len` tokens), for the same architecture with full and with cached text attention.
    Per-pair figures are a batch of `batch` equal pairs divided by `batch` (FLOP are linear in the batch)."""
    if full.cached_text or not cached.cached_text:
        raise ValueError("pair_flops needs a text_attention: full model and a text_attention: cached model")
    c = full.config
    device = next(full.parameters()).device
    first = c.text.first_word_id
    cls_id, sep_id = torch.tensor([101], device=device), torch.tensor([102], device=device)  # bert-base-chinese's
    query = torch.arange(first, first + query_len, device=device) % c.text.vocab_size
    text = torch.arange(first + 1000, first + 1000 + text_len, device=device) % c.text.vocab_size
    img = c.vision.image_size
    with torch.inference_mode():
        video_args = (torch.zeros(1, frames, 3, img, img, device=device),
                      torch.ones(1, frames, dtype=torch.bool, device=device))
        video_per_ad = counted(full.encode_video, *video_args)
        video = full.encode_video(*video_args).index_select([0] * batch)
        cached_video = cached.encode_video(*video_args)
        ids = torch.cat([cls_id, query, sep_id, text, sep_id])
        types = (torch.arange(len(ids), device=device) >= query_len + 2).long()
        pair = (ids.repeat(batch, 1), torch.ones_like(ids).repeat(batch, 1), types.repeat(batch, 1), video)
        full_per_pair = counted(full.relevance, *pair) // batch
        segment = torch.cat([text, sep_id])[None]
        segment_args = (segment, torch.ones_like(segment), cached_video)
        text_per_ad = counted(cached.encode_video_text, *segment_args)
        cache = cached.encode_video_text(*segment_args).select([0] * batch)
        q_ids = torch.cat([cls_id, query, sep_id]).repeat(batch, 1)
        cached_per_pair = counted(cached.relevance_cached, q_ids, torch.ones_like(q_ids), cache,
                                  cached_video.index_select([0] * batch)) // batch
    return PairFlops(query_len, text_len, frames, queries_per_ad, video_per_ad, full_per_pair, text_per_ad,
                     cached_per_pair)
