"""Examples -> tensors: labeled (query, video, grade) pairs for fine-tuning, pre-training triplets.

Collation runs on the CPU (tokenizer, image decoding, jieba); the batches move with `.to(device)`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from hcmrm.config import HCMRMConfig
from hcmrm.frames import FrameDecodeError, decode_frames, stack_videos
from hcmrm.tokenizer import Tokenizer


class _ToDevice:
    def to(self, device):
        return type(self)(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


@dataclass
class LabeledExample:
    query: str  # the search query
    text: str  # the video's keyword sequence / text
    frames: list[bytes] | None  # encoded frames, None or [] for a text-only video
    label: int  # grade 0..3: Bad, Less, Good, Excellent


@dataclass
class LabeledBatch(_ToDevice):
    input_ids: torch.Tensor  # [B, L] `[CLS] query [SEP] text [SEP]`
    attention_mask: torch.Tensor  # [B, L]
    token_type_ids: torch.Tensor  # [B, L]
    frames: torch.Tensor  # [B, F, 3, H, W]
    frame_mask: torch.Tensor  # [B, F] bool
    labels: torch.Tensor  # [B] grades 0..3


def collate_videos(frame_lists: list[list[bytes] | None], config: HCMRMConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode each example's frames and pad them to one batch; a bad frame names its example."""
    videos = []
    for i, frames in enumerate(frame_lists):
        try:
            videos.append(decode_frames(frames, config.vision.image_size, config.max_frames,
                                        config.vision.mean, config.vision.std))
        except FrameDecodeError as error:
            raise FrameDecodeError(f"example {i}: {error}") from error
    return stack_videos(videos, config.max_frames)


def collate_labeled(examples: list[LabeledExample], tokenizer: Tokenizer, config: HCMRMConfig) -> LabeledBatch:
    labels = [int(e.label) for e in examples]
    bad = [lab for lab in labels if not 0 <= lab <= 3]
    if bad:
        raise ValueError(f"labels must be grades 0..3, got {bad[:5]}")
    encoded = tokenizer.encode_pairs([e.query for e in examples], [e.text for e in examples])
    frames, frame_mask = collate_videos([e.frames for e in examples], config)
    return LabeledBatch(**encoded, frames=frames, frame_mask=frame_mask, labels=torch.tensor(labels, dtype=torch.long))
