"""Word-level MLM: whole-word masking over jieba words (a Chinese word is several WordPiece tokens).

Words are taken in random order while they fit in `probability` of the tokens (at least one word);
each chosen word's tokens all become [MASK] (80%), random tokens (10%) or stay (10%), decided per word.
Labels are the original ids at chosen tokens and -100 elsewhere (ignored by cross-entropy).
"""

from __future__ import annotations

import logging

import jieba
import torch

from hcmrm.model.tokenizer import WORDPIECE, Tokenizer

IGNORE = -100
FIRST_ORDINARY_ID = 106  # bert-base-chinese: ids below are [PAD], [unused*], [UNK], [CLS], [SEP], [MASK], <S>, <T>

jieba.setLogLevel(logging.WARNING)


def word_ids(text: str, offsets: list[tuple[int, int]]) -> list[int]:
    """The jieba word each token belongs to (tokens from their character offsets)."""
    char_to_word = [0] * len(text)
    for index, (_, start, end) in enumerate(jieba.tokenize(text)):
        for c in range(start, end):
            char_to_word[c] = index
    return [char_to_word[start] if start < len(text) else -1 for start, _ in offsets]


def mask_words(ids: list[int], words: list[int], probability: float, mask_id: int, vocab_size: int,
               generator: torch.Generator | None = None,
               first_id: int = FIRST_ORDINARY_ID) -> tuple[list[int], list[int]]:
    """Whole-word masking of one token row (no special tokens) -> (masked ids, labels); random replacements are
    drawn from ids first_id.. (no specials)."""
    by_word: dict[int, list[int]] = {}
    for position, word in enumerate(words):
        by_word.setdefault(word, []).append(position)
    groups = list(by_word.values())
    masked, labels = list(ids), [IGNORE] * len(ids)
    if not ids:
        return masked, labels
    budget = max(1, round(len(ids) * probability))
    order = torch.randperm(len(groups), generator=generator).tolist()
    chosen, total = [], 0
    for k in order:  # words that fit the budget, in random order
        if total + len(groups[k]) <= budget:
            chosen.append(k)
            total += len(groups[k])
    if not chosen:  # every word is longer than the budget: mask one anyway
        chosen = order[:1]
    for k in chosen:
        action = torch.rand((), generator=generator).item()
        for p in groups[k]:
            labels[p] = ids[p]
            if action < 0.8:
                masked[p] = mask_id
            elif action < 0.9:
                masked[p] = int(torch.randint(first_id, vocab_size, (), generator=generator))
    return masked, labels


def whole_word_mask(texts: list[str], tokenizer: Tokenizer, max_len: int, probability: float = 0.15,
                    generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """`[CLS] text [SEP]` rows, their masked copies and MLM labels, all [B, L] (padding labelled -100)."""
    texts = [t if isinstance(t, str) else "" for t in texts]
    first_id = FIRST_ORDINARY_ID if tokenizer.name == WORDPIECE else tokenizer.first_word_id
    ids, offsets = tokenizer.tokenize(texts, max_len, offsets=True)
    rows, masked_rows, label_rows = [], [], []
    for text, row, row_offsets in zip(texts, ids, offsets):
        masked, labels = mask_words(row, word_ids(text, row_offsets), probability, tokenizer.mask_id,
                                    tokenizer.vocab_size, generator, first_id)
        rows.append([tokenizer.cls_id, *row, tokenizer.sep_id])
        masked_rows.append([tokenizer.cls_id, *masked, tokenizer.sep_id])
        label_rows.append([IGNORE, *labels, IGNORE])
    length = max(len(r) for r in rows)
    out = {
        "input_ids": torch.full((len(rows), length), tokenizer.pad_id, dtype=torch.long),
        "attention_mask": torch.zeros((len(rows), length), dtype=torch.long),
        "mlm_input_ids": torch.full((len(rows), length), tokenizer.pad_id, dtype=torch.long),
        "mlm_labels": torch.full((len(rows), length), IGNORE, dtype=torch.long),
    }
    for i, (row, masked, labels) in enumerate(zip(rows, masked_rows, label_rows)):
        out["input_ids"][i, : len(row)] = torch.tensor(row)
        out["attention_mask"][i, : len(row)] = 1
        out["mlm_input_ids"][i, : len(row)] = torch.tensor(masked)
        out["mlm_labels"][i, : len(row)] = torch.tensor(labels)
    return out
