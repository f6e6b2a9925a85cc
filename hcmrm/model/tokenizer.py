"""The bert-base-chinese WordPiece tokenizer, packing `[CLS] query [SEP] video text [SEP]`.

Each segment has its own token budget (config.max_query_len, config.max_text_len), so a long video
text never pushes the query out. The vocabulary ships inside the package (hcmrm/assets/vocab.txt).
"""

from __future__ import annotations

from functools import lru_cache
from itertools import chain
from pathlib import Path

import numpy as np
import torch

VOCAB_PATH = Path(__file__).resolve().parents[1] / "assets" / "vocab.txt"

CLS, SEP, PAD, MASK, UNK = "[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]"


@lru_cache(maxsize=4)
def _fast_tokenizer(vocab_path: str):
    from transformers import BertTokenizerFast

    vocab = {}
    with open(vocab_path, encoding="utf-8") as f:
        for index, line in enumerate(f):
            vocab[line.rstrip("\n")] = index
    # transformers 5 ignores vocab_file=; the vocabulary must be passed as vocab=.
    return BertTokenizerFast(vocab=vocab, do_lower_case=True, tokenize_chinese_chars=True)


class Tokenizer:
    def __init__(self, max_query_len: int = 32, max_text_len: int = 128, vocab_path: str | Path = VOCAB_PATH):
        self.max_query_len = max_query_len  # query token budget, special tokens excluded
        self.max_text_len = max_text_len  # video text token budget, special tokens excluded
        self.hf = _fast_tokenizer(str(vocab_path))
        self.cls_id = self.hf.convert_tokens_to_ids(CLS)
        self.sep_id = self.hf.convert_tokens_to_ids(SEP)
        self.pad_id = self.hf.convert_tokens_to_ids(PAD)
        self.mask_id = self.hf.convert_tokens_to_ids(MASK)
        self.unk_id = self.hf.convert_tokens_to_ids(UNK)
        self.special_ids = sorted({self.cls_id, self.sep_id, self.pad_id, self.mask_id, self.unk_id})

    @classmethod
    def from_config(cls, config) -> "Tokenizer":
        return cls(max_query_len=config.max_query_len, max_text_len=config.max_text_len)

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def tokenize(self, texts: list[str], max_len: int, offsets: bool = False):
        """Token ids per text without special tokens, cut to max_len (and their character spans).
        Each distinct text is tokenised once: scoring packs an ad's text with every one of its queries, and
        a day's popular query with many ads."""
        texts = [t if isinstance(t, str) else "" for t in texts]  # None (a null column) = empty text
        distinct = {text: row for row, text in enumerate(dict.fromkeys(texts))}
        if not distinct:
            return ([], []) if offsets else []
        enc = self.hf(list(distinct), add_special_tokens=False, return_offsets_mapping=offsets,
                      return_attention_mask=False, return_token_type_ids=False)
        ids = [enc["input_ids"][distinct[t]][:max_len] for t in texts]
        if offsets:
            return ids, [enc["offset_mapping"][distinct[t]][:max_len] for t in texts]
        return ids

    def _pad(self, rows: list[list[int]], type_from) -> dict[str, torch.Tensor]:
        """Rows padded on the right to the longest; token type 1 from column type_from[i] of row i on.

        Filled through one flat array, not row by row: tokenising the next chunk must keep up with a GPU."""
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        columns = np.arange(int(lengths.max(initial=0)))
        attention_mask = columns[None, :] < lengths[:, None]
        input_ids = np.full(attention_mask.shape, self.pad_id, dtype=np.int64)
        input_ids[attention_mask] = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
        token_type_ids = attention_mask & (columns[None, :] >= np.asarray(type_from, dtype=np.int64)[:, None])
        return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention_mask).long(),
                "token_type_ids": torch.from_numpy(token_type_ids).long()}

    def encode_pairs(self, queries: list[str], texts: list[str]) -> dict[str, torch.Tensor]:
        """`[CLS] query [SEP] text [SEP]`, padded to the longest row; token_type_ids 0 = query, 1 = text."""
        if len(queries) != len(texts):
            raise ValueError(f"{len(queries)} queries but {len(texts)} texts")
        q_ids = self.tokenize(queries, self.max_query_len)
        t_ids = self.tokenize(texts, self.max_text_len)
        rows = [[self.cls_id, *q, self.sep_id, *t, self.sep_id] for q, t in zip(q_ids, t_ids)]
        return self._pad(rows, [len(q) + 2 for q in q_ids])

    def encode_texts(self, texts: list[str], max_len: int) -> dict[str, torch.Tensor]:
        """`[CLS] text [SEP]`, the text cut to max_len tokens (special tokens excluded)."""
        rows = [[self.cls_id, *t, self.sep_id] for t in self.tokenize(texts, max_len)]
        return self._pad(rows, [max_len + 2] * len(rows))  # token type 0 throughout

    def encode_text_segments(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """`text [SEP]`, token_type_ids 1: the video-text half of encode_pairs' rows (the cached text attention
        encodes it once per ad; encode_texts(queries, max_query_len) is the `[CLS] query [SEP]` half)."""
        rows = [[*t, self.sep_id] for t in self.tokenize(texts, self.max_text_len)]
        return self._pad(rows, [0] * len(rows))

    def decode(self, ids) -> str:
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=True)
