"""Pseudo-queries and context text: pure functions, no Spark."""

import random
from dataclasses import replace

from hcmrm.text.pseudo_query import (
    NO_KEYWORDS,
    NO_TEXT,
    Idf,
    KeywordConfig,
    PretrainText,
    PseudoQuery,
    extract_keywords,
    join_keywords,
    make_pseudo_query,
    pretrain_text,
    rank_keywords,
    remove_keywords,
    sample_keywords,
    video_pseudo_query,
    video_seed,
    video_text,
)
from hcmrm.text.video_text import TextSettings, build_video_text

TITLE = "《原神》纳塔交响音乐现场"
OCR = "伦敦交响乐团演奏 纳塔 主题音乐"
ASR = "指挥家带来原神游戏音乐 米哈游出品"
NEWS = "以色列空袭之后，又一国大军进入叙利亚，俄战机起飞应敌"


def test_video_text_joins_cleaned_non_empty_parts():
    assert video_text("标题", None, "  语音\n文本 ") == "标题 语音 文本"
    assert video_text(None, "", None) == ""
    assert video_text("ａｂｃ", "长长长", None, max_field_chars=2) == "ab 长长"


def test_video_seed_is_stable_and_depends_on_seed_and_video():
    assert video_seed(0, "v1") == video_seed(0, "v1") == 18155801011895808998  # pinned: a rerun must sample alike
    assert len({video_seed(0, "v1"), video_seed(1, "v1"), video_seed(0, "v2")}) == 3


def test_join_keywords_runs_chinese_together_and_spaces_latin_words():
    assert join_keywords(["原神", "纳塔"]) == "原神纳塔"
    assert join_keywords(["IGN", "PS5"]) == "IGN PS5"
    assert join_keywords(["IGN", "评测", "PS5"]) == "IGN评测PS5"


def test_remove_keywords_takes_out_every_occurrence_case_insensitively():
    assert remove_keywords("原神 纳塔 原神PV ign", ["原神", "IGN"]) == "纳塔 PV"
    assert remove_keywords("黑神话悟空", ["悟空", "黑神话悟空"]) == ""  # longest first


def test_pseudo_query_is_1_to_k_top_keywords_missing_from_the_context():
    text = video_text(TITLE, OCR, ASR)
    pool = extract_keywords(text)
    for seed in range(20):
        pq = make_pseudo_query(text, seed=seed)
        assert isinstance(pq, PseudoQuery)
        assert 1 <= len(pq.keywords) <= KeywordConfig().query_max_keywords
        assert set(pq.keywords) <= set(pool)
        assert pq.pseudo_query == join_keywords(pq.keywords)
        assert not any(k.lower() in pq.context_text.lower() for k in pq.keywords)


def test_pseudo_query_sampling_is_seeded():
    text = video_text(TITLE, OCR, ASR)
    assert make_pseudo_query(text, seed=7) == make_pseudo_query(text, seed=7)
    queries = {make_pseudo_query(text, seed=s).pseudo_query for s in range(30)}
    assert len(queries) > 5  # different seeds draw different keyword sets and sizes


def test_top_sampling_takes_the_best_n_in_reading_order():
    config = KeywordConfig(query_min_keywords=2, query_max_keywords=2, query_sampling="top")
    pq = make_pseudo_query(NEWS, config=config)
    best_two = extract_keywords(NEWS)[:2]  # ['叙利亚', '以色列'] by score
    assert sorted(pq.keywords) == sorted(best_two)
    assert pq.keywords == ["以色列", "叙利亚"]  # as they read in the text


def test_sample_keywords_caps_at_what_there_is_and_favours_high_scores():
    ranked = rank_keywords(NEWS)
    many = replace(KeywordConfig(), query_min_keywords=50, query_max_keywords=50)
    assert len(sample_keywords(ranked, random.Random(0), many)) == len(ranked)
    assert sample_keywords([], random.Random(0)) == []
    one = KeywordConfig(query_min_keywords=1, query_max_keywords=1)
    firsts = [sample_keywords(ranked, random.Random(s), one)[0].word for s in range(300)]
    assert firsts.count(ranked[0].word) > firsts.count(ranked[-1].word)


def test_no_pseudo_query_without_usable_keywords():
    assert make_pseudo_query("") is None
    assert make_pseudo_query("我们今天点赞视频 123") is None


def test_pretrain_text_matches_the_separate_public_functions():
    idf = Idf.from_documents([video_text(TITLE, OCR, ASR), NEWS, "原神 新角色 PV"])
    for video_id, (title, ocr, asr) in {"a": (TITLE, OCR, ASR), "b": (NEWS, None, None), "c": (None, OCR, "")}.items():
        got = pretrain_text(video_id, title, ocr, asr, idf, seed=3, max_chars=64)
        pq = video_pseudo_query(video_id, title, ocr, asr, idf, seed=3)
        assert got == PretrainText(
            pseudo_query=pq.pseudo_query,
            keywords=pq.keywords,
            context_text=pq.context_text,
            video_text=build_video_text(title, ocr, asr, idf, TextSettings(max_chars=64)),
        )


def test_video_pseudo_query_weights_title_words_above_ocr_asr_words():
    idf = Idf({}, 1.0)
    one = KeywordConfig(query_min_keywords=1, query_max_keywords=1, query_sampling="top", title_weight=1.0)
    # equal counts and IDF: with no title weight the earlier word wins, with it the title word wins
    assert video_pseudo_query("v", "游戏", "电影", None, idf, one).keywords == ["游戏"]
    assert video_pseudo_query("v", "游戏", "电影 电影", None, idf, one).keywords == ["电影"]
    weighted = replace(one, title_weight=3.0)
    assert video_pseudo_query("v", "游戏", "电影 电影", None, idf, weighted).keywords == ["游戏"]
    # title_weight 1: the same as the plain-text function over the joined video text
    same = replace(KeywordConfig(), title_weight=1.0)
    assert video_pseudo_query("v9", TITLE, OCR, ASR, idf, same, seed=4) == make_pseudo_query(
        video_text(TITLE, OCR, ASR), idf, same, seed=video_seed(4, "v9"))


def test_pretrain_text_gives_a_reason_when_there_is_no_pair():
    assert pretrain_text("v", None, "  ", None) == NO_TEXT
    assert pretrain_text("v", "2024-08-18 #1", None, None) == NO_TEXT
    assert pretrain_text("v", "我们今天点赞视频", None, None) == NO_KEYWORDS
