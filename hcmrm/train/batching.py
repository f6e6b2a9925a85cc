"""Examples -> tensors: labeled (query, video, grade) pairs for fine-tuning, pre-training triplets.

Collation runs on the CPU (tokenizer, image decoding, jieba), in DataLoader workers when the corpus is
streamed; the batches are pinned there (`pin_memory`) and move with `.to(device, non_blocking=True)`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from hcmrm.labels import check_labels
from hcmrm.model.config import HCMRMConfig
from hcmrm.model.frames import FrameDecodeError, decode_frames, stack_videos
from hcmrm.model.tokenizer import Tokenizer


class TensorBatch:
    """A dataclass of tensors that moves and pins as one (DataLoader pins a batch through `pin_memory`)."""

    def to(self, device, non_blocking: bool = False):
        return type(self)(**{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)})

    def pin_memory(self):
        return type(self)(**{f.name: getattr(self, f.name).pin_memory() for f in fields(self)})


@dataclass
class LabeledExample:
    query: str  # the search query
    text: str  # the video's keyword sequence / text
    frames: list[bytes] | None  # encoded frames, None or [] for a text-only video
    label: int  # grade 0..3: Bad, Less, Good, Excellent


@dataclass
class LabeledBatch(TensorBatch):
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
    check_labels(labels)
    encoded = tokenizer.encode_pairs([e.query for e in examples], [e.text for e in examples])
    frames, frame_mask = collate_videos([e.frames for e in examples], config)
    return LabeledBatch(**encoded, frames=frames, frame_mask=frame_mask, labels=torch.tensor(labels, dtype=torch.long))


@dataclass
class PretrainExample:
    pseudo_query: str  # keywords extracted from the video text (TF-IDF + NER)
    context_text: str  # the video text without the pseudo-query
    frames: list[bytes] | None  # encoded frames; None or [] for text corpora


@dataclass
class PretrainBatch(TensorBatch):
    query_ids: torch.Tensor  # [B, Lq] `[CLS] pseudo-query [SEP]`
    query_mask: torch.Tensor  # [B, Lq]
    text_ids: torch.Tensor  # [B, Lt] `[CLS] context text [SEP]`
    text_mask: torch.Tensor  # [B, Lt]
    mlm_ids: torch.Tensor  # [B, Lt] text_ids with whole words masked
    mlm_labels: torch.Tensor  # [B, Lt] original ids at masked tokens, -100 elsewhere
    frames: torch.Tensor  # [B, F, 3, H, W]
    frame_mask: torch.Tensor  # [B, F] bool


def collate_pretrain(examples: list[PretrainExample], tokenizer: Tokenizer, config: HCMRMConfig,
                     generator: torch.Generator | None = None) -> PretrainBatch:
    """Tokenise, whole-word mask the context text (jieba words), decode frames. `generator` fixes the masks."""
    from hcmrm.train.masking import whole_word_mask

    queries = tokenizer.encode_texts([e.pseudo_query for e in examples], config.max_query_len)
    texts = whole_word_mask([e.context_text for e in examples], tokenizer, config.max_text_len,
                            config.mlm_probability, generator)
    frames, frame_mask = collate_videos([e.frames for e in examples], config)
    return PretrainBatch(
        query_ids=queries["input_ids"], query_mask=queries["attention_mask"],
        text_ids=texts["input_ids"], text_mask=texts["attention_mask"],
        mlm_ids=texts["mlm_input_ids"], mlm_labels=texts["mlm_labels"],
        frames=frames, frame_mask=frame_mask,
    )


def pack_pairs(query_ids: torch.Tensor, query_mask: torch.Tensor, text_ids: torch.Tensor,
               text_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """`[CLS] q [SEP]` rows + `[CLS] t [SEP]` rows -> `[CLS] q [SEP] t [SEP]` pair inputs, on tensors.

    The query's padding stays in the middle of the row; HCMRM.encode_text numbers positions over real
    tokens only, so the model sees exactly what Tokenizer.encode_pairs would have produced.
    """
    text_ids, text_mask = text_ids[:, 1:], text_mask[:, 1:]  # drop the text's own [CLS]
    return {
        "input_ids": torch.cat([query_ids, text_ids], dim=1),
        "attention_mask": torch.cat([query_mask, text_mask], dim=1),
        "token_type_ids": torch.cat([torch.zeros_like(query_ids), torch.ones_like(text_ids)], dim=1),
    }
