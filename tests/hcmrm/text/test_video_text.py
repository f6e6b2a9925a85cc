"""The one text the model reads about a video, and the record of the settings that made it."""

import json
from dataclasses import replace

from hcmrm.config import from_dict
from hcmrm.text.keywords import Idf, KeywordConfig, extract_keywords, tokenize
from hcmrm.text.pseudo_query import video_text
from hcmrm.text.video_text import TextSettings, build_video_text, describe, fingerprint, video_text_from_tokens

TITLE = "《原神》纳塔交响音乐现场"
OCR = "伦敦交响乐团演奏 纳塔 主题音乐"
ASR = "指挥家带来原神游戏音乐 米哈游出品"


def test_the_title_whole_then_new_ocr_asr_keywords_best_first():
    text = build_video_text(TITLE, OCR, ASR, settings=TextSettings(max_chars=40))
    assert text.startswith(TITLE) and len(text) <= 40
    added = text[len(TITLE):].split()
    assert added and all(k not in TITLE for k in added)  # 纳塔, 原神 are in the title already
    assert set(added) <= set(extract_keywords(video_text(None, OCR, ASR), config=KeywordConfig(top_k=100)))


def test_bounds_and_empty_inputs():
    assert build_video_text(TITLE, None, None) == TITLE
    assert build_video_text(None, None, None) == ""
    assert build_video_text("长" * 200, OCR, None, settings=TextSettings(max_chars=16)) == "长" * 16
    assert build_video_text(None, OCR, None).split()[0] in extract_keywords(OCR)
    assert len(build_video_text(TITLE, OCR * 20, ASR * 20, settings=TextSettings(max_chars=30))) <= 30
    assert build_video_text(" ａｂｃ\n标题 ", None, None) == "abc 标题"  # cleaned like every text field


def test_the_settings_reach_the_text():
    plain = build_video_text(TITLE, OCR, ASR)
    first = plain[len(TITLE):].split()[0]
    without = TextSettings(replace(KeywordConfig(), extra_stopwords=(first,)))
    assert first not in build_video_text(TITLE, OCR, ASR, settings=without).split()
    # the IDF ranks the OCR/ASR keywords: one that makes the first keyword common moves it back
    common = Idf({first.lower(): 0.01}, default=5.0)
    assert build_video_text(TITLE, OCR, ASR, common).split()[1] != first


def test_from_tokens_is_the_same_function_for_callers_that_tokenized_already():
    tokens = tokenize(OCR) + tokenize(ASR)
    settings = TextSettings(max_chars=48)
    assert video_text_from_tokens(TITLE, tokens, None, settings) == build_video_text(TITLE, OCR, ASR, None, settings)


def test_the_recorded_settings_change_with_anything_that_changes_the_text():
    base = describe(TextSettings(), None)
    assert json.loads(json.dumps(base)) == base and base["idf"]["source"] == "jieba" and base["max_chars"] == 128
    assert from_dict(KeywordConfig, base["keywords"]) == KeywordConfig()  # the record rebuilds the settings
    sampling_only = replace(KeywordConfig(), top_k=3, query_sampling="top", idf_source="stored")
    assert describe(TextSettings(sampling_only), None) == base  # pseudo-query settings make the same texts
    corpus = Idf.from_counts({"原神": 2, "音乐": 1}, 3)
    other_corpus = Idf.from_counts({"原神": 1, "音乐": 1}, 3)
    variants = [
        describe(TextSettings(max_chars=64), None),
        describe(TextSettings(replace(KeywordConfig(), hmm=False)), None),
        describe(TextSettings(), corpus),
        describe(TextSettings(), other_corpus),
    ]
    prints = {fingerprint(d) for d in [base, *variants]}
    assert len(prints) == 5  # each change of settings or IDF gives another fingerprint
    assert fingerprint(describe(TextSettings(), corpus)) == fingerprint(variants[2])  # and the same ones the same
    assert variants[2]["idf"]["source"] == "corpus" and variants[2]["idf"]["terms"] == 2
