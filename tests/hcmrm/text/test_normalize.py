"""One normalisation for queries and texts: invisible characters go before anything checks for "empty"."""

import pandas as pd
import pytest

from hcmrm.text.normalize import is_blank, normalize_text

INVISIBLE_ONLY = {
    "zero-width spaces": "\u200b\u200b\u200b",
    "BOM": "\ufeff",
    "zero-width joiners and word joiner": "\u200c\u200d\u2060",
    "bidi marks": "\u200e\u200f\u202a\u202c",
    "control characters": "\x00\x07\x1b\x7f",
    "soft hyphen and whitespace": "\u00ad \t\u3000\n",
}


@pytest.mark.parametrize("text", INVISIBLE_ONLY.values(), ids=INVISIBLE_ONLY.keys())
def test_invisible_only_text_is_blank(text):
    assert normalize_text(text) == "" and is_blank(text)


def test_visible_text_keeps_its_words_with_one_space_between():
    assert normalize_text("\ufeff红色\u200b连衣裙\t\t夏季\x00") == "红色连衣裙 夏季"
    assert normalize_text("  ｉＰｈｏｎｅ　１５ ") == "iPhone 15"  # NFKC: full-width to ASCII, U+3000 to a space
    assert normalize_text("a\nb\rc") == "a b c"  # line breaks separate words: they become spaces
    assert normalize_text(None) == "" and normalize_text("") == ""
    assert not is_blank("。")  # punctuation is visible


def test_keyword_text_and_labeled_pairs_use_it():
    from hcmrm.text.keywords import clean_text
    from hcmrm.train.labeled_data import normalize

    assert clean_text("\u200b红色\u200b连衣裙\ufeff", max_chars=3) == "红色连"
    rows = pd.DataFrame({"query": ["\u200b\u200b", "\ufeffｉＰｈｏｎｅ\u200b", "手机"],
                         "title": ["连衣裙", "手机 拍照", "\ufeff\x07"], "label": [1, 2, 3]})
    data = normalize(rows)
    assert data.pairs["query"].tolist() == ["iPhone"] and data.pairs["title"].tolist() == ["手机 拍照"]
    assert data.rejects["reason"].tolist() == ["empty query", "empty title"]
