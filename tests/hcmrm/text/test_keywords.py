"""Keywords with jieba: filters, IDF (corpus and built-in), TF-IDF + NER ranking."""

import math

import pytest

from hcmrm.config import from_dict
from hcmrm.text.keywords import (
    Idf,
    KeywordConfig,
    clean_text,
    document_terms,
    extract_keywords,
    has_content,
    idf_value,
    init_jieba,
    is_candidate,
    load_stopwords,
    rank_keywords,
    tokenize,
)

NEWS = "以色列空袭之后，又一国大军进入叙利亚，俄战机起飞应敌"


def test_init_jieba_is_idempotent_and_tokenize_gives_pos_tags():
    init_jieba()
    init_jieba()
    tokens = tokenize("我爱北京天安门")
    assert "".join(w for w, _ in tokens) == "我爱北京天安门"
    assert ("北京", "ns") in tokens


def test_clean_text_normalises_width_and_spaces_and_cuts():
    assert clean_text("ＩＧＮ　评测\n\t１０分") == "IGN 评测 10分"
    assert clean_text("abcdef", max_chars=3) == "abc"
    assert clean_text(None) == "" and clean_text("") == ""


def test_has_content_needs_a_chinese_character_or_letter():
    assert has_content("原神") and has_content("PS5")
    assert not has_content("2024-08-18 !!") and not has_content("")


def test_stopwords_come_from_the_packaged_file_plus_extra_words():
    words = load_stopwords()
    assert {"视频", "点赞", "什么", "the"} <= words
    assert "原神" not in words
    assert "原神" in load_stopwords(None, ("原神",))
    assert not any(w.startswith("#") for w in words)


def test_is_candidate_filters_length_stopwords_content_and_pos():
    config, stop = KeywordConfig(), load_stopwords()
    assert is_candidate("叙利亚", "ns", config, stop)
    assert is_candidate("评测", "vn", config, stop)  # verbal noun
    assert not is_candidate("起飞", "v", config, stop)  # plain verb: not by default
    assert is_candidate("起飞", "v", KeywordConfig(tfidf_pos=("n", "v")), stop)
    assert not is_candidate("俄", "j", config, stop)  # one character
    assert not is_candidate("视频", "n", config, stop)  # stopword
    assert not is_candidate("2024", "m", config, stop)  # no letters
    assert not is_candidate("超长的一个词" * 3, "n", config, stop)  # longer than max_chars


def test_idf_from_counts_uses_the_smoothed_formula_and_prunes_rare_terms():
    idf = Idf.from_counts({"原神": 1, "游戏": 3, "PS5": 2}, n_docs=3)
    assert idf["原神"] == pytest.approx(math.log(4 / 2) + 1)
    assert idf["游戏"] == pytest.approx(1.0)  # in every document
    assert idf["ps5"] == idf["PS5"]  # terms are case-insensitive
    assert idf["没见过"] == pytest.approx(math.log(4) + 1)  # unseen: df 0
    pruned = Idf.from_counts({"原神": 1, "游戏": 3}, n_docs=3, min_df=2)
    assert "原神" not in pruned.weights and pruned["原神"] == pytest.approx(idf_value(1, 3))
    with pytest.raises(ValueError):
        Idf.from_counts({}, n_docs=0)


def test_idf_from_documents_counts_each_term_once_per_usable_document():
    docs = ["原神 原神 游戏", "游戏 评测", "12345", None]
    idf = Idf.from_documents(docs)
    # two usable documents; 游戏 in both, 原神 in one (counted once despite appearing twice)
    assert idf["游戏"] == pytest.approx(idf_value(2, 2))
    assert idf["原神"] == pytest.approx(idf_value(1, 2))
    assert document_terms("原神 原神 游戏") == ["原神", "游戏"]


def test_builtin_idf_is_jiebas_table_with_its_median_for_unknown_terms():
    idf = Idf.builtin()
    assert idf.source == "jieba" and len(idf) > 100_000
    assert idf["叙利亚"] > idf["中国"]  # rarer word, higher weight
    assert idf["一个不在表里的词xyz"] == idf.default


def test_extract_keywords_ranks_entities_first_and_respects_top_k():
    words = extract_keywords(NEWS)
    assert words[:2] == ["叙利亚", "以色列"]  # named places, boosted
    assert len(words) <= KeywordConfig().top_k
    assert extract_keywords(NEWS, config=KeywordConfig(top_k=1)) == words[:1]
    assert extract_keywords(NEWS) == words  # deterministic


def test_the_idf_changes_the_ranking():
    plain = extract_keywords("原神 评测 游戏", idf=Idf({"原神": 1.0, "评测": 1.0, "游戏": 1.0}, 1.0))
    assert plain == ["原神", "评测", "游戏"]  # equal scores: reading order
    boosted = extract_keywords("原神 评测 游戏", idf=Idf({"游戏": 9.0}, 1.0))
    assert boosted[0] == "游戏"


def test_keywords_are_deduplicated_case_insensitively_and_by_containment():
    idf = Idf({}, 1.0)
    assert extract_keywords("IGN评测 ign 游戏", idf=idf).count("IGN") == 1
    # 北京 is inside the better-ranked 北京大学 (earlier, equal score): dropped unless asked to keep
    assert extract_keywords("北京大学 在 北京", idf=idf) == ["北京大学"]
    keep = KeywordConfig(drop_contained=False)
    assert extract_keywords("北京大学 在 北京", idf=idf, config=keep) == ["北京大学", "北京"]


def test_rank_keywords_reports_scores_and_entity_flags():
    ranked = rank_keywords(NEWS)
    assert ranked[0].entity and ranked[0].score >= ranked[-1].score
    assert [k.score for k in ranked] == sorted((k.score for k in ranked), reverse=True)


def test_verbs_and_idioms_are_a_fallback_only_when_there_is_no_noun():
    assert extract_keywords("夜晚中正在看电视的人。") == ["看电视"]  # 看电视 is jieba's verb
    assert extract_keywords("民心所向，众望所归！") == ["民心所向", "众望所归"]  # idioms
    assert "起飞" not in extract_keywords(NEWS)  # nouns there: verbs stay out


def test_stopwords_and_filters_leave_no_keywords():
    assert extract_keywords("我们今天点赞视频") == []
    assert extract_keywords("") == []


def test_config_validates_and_reads_yaml_lists():
    with pytest.raises(ValueError):
        KeywordConfig(min_chars=5, max_chars=2)
    with pytest.raises(ValueError):
        KeywordConfig(query_sampling="random")
    config = from_dict(KeywordConfig, {"top_k": 3, "tfidf_pos": ["n"]})
    assert config.top_k == 3 and config.tfidf_pos == ("n",)
    with pytest.raises(ValueError, match="unknown key 'topk'"):
        from_dict(KeywordConfig, {"topk": 3})
