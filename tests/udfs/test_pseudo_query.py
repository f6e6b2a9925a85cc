"""The mapInPandas adapters give, row for row, what the pure functions give."""

import io

import pytest
from PIL import Image
from pyspark.testing import assertDataFrameEqual

from hcmrm.text.keywords import Idf, document_terms, has_content
from hcmrm.text.pseudo_query import NO_KEYWORDS, NO_TEXT, pretrain_text, video_text
from hcmrm.text.video_text import TextSettings, build_video_text
from udfs.pseudo_query import PAIR_SCHEMA, TERMS_SCHEMA, document_terms_frame, pretrain_rows_frame

pytestmark = pytest.mark.spark

VIDEOS_SCHEMA = "video_id string, title string, ocr_text string, asr_text string, frames array<binary>, dt string"


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


VIDEOS = [
    ("v1", "《原神》纳塔交响音乐现场", "伦敦交响乐团演奏", "米哈游出品", [png(), png()], "2024-08-18"),
    ("v2", "以色列空袭之后，叙利亚战机起飞", None, None, [], "2024-08-18"),
    ("v3", None, "  ", None, [png()], "2024-08-18"),  # no text
    ("v4", "我们今天点赞视频", None, None, None, "2024-08-19"),  # only stopwords
    ("v5", "北京大学 开学典礼", None, None, [png(), b"not an image"], "2024-08-19"),  # bad 2nd frame
]


@pytest.fixture
def videos(spark):
    return spark.createDataFrame(VIDEOS, VIDEOS_SCHEMA)


def test_document_terms_frame_gives_each_usable_videos_distinct_terms(spark, videos):
    texts = [video_text(t, o, a) for _, t, o, a, _, _ in VIDEOS]
    expected = [(document_terms(text),) for text in texts if has_content(text)]
    got = document_terms_frame(videos)
    # v3 has no text: no row. v4 has text without candidate terms: a row with no terms (it counts in n_docs).
    assert got.count() == 4
    assertDataFrameEqual(got, spark.createDataFrame(expected, TERMS_SCHEMA))


def test_pretrain_rows_frame_matches_pretrain_text_and_rejects_with_reasons_keeping_the_video_text(spark, videos):
    idf = Idf.from_documents([video_text(t, o, a) for _, t, o, a, _, _ in VIDEOS])
    got = pretrain_rows_frame(videos, spark.sparkContext.broadcast(idf), seed=5, max_sequence_chars=40)

    expected = []
    for video_id, title, ocr, asr, frames, dt in VIDEOS:
        result = pretrain_text(video_id, title, ocr, asr, idf, seed=5, max_chars=40)
        n = len(frames or [])
        problems = []
        if video_id == "v5":
            result = "bad_frames: frame 1: cannot identify image"
            problems = [(1, False, "cannot identify image")]
        if isinstance(result, str):  # no pair, but scoring still reads the video's text
            text = build_video_text(title, ocr, asr, idf, TextSettings(max_chars=40))
            expected.append((video_id, dt, None, None, None, text, frames, n, result, problems))
        else:
            expected.append((video_id, dt, result.pseudo_query, result.keywords, result.context_text,
                             result.video_text, frames, n, None, problems))
    assertDataFrameEqual(got, spark.createDataFrame(expected, PAIR_SCHEMA))
    reasons = {r.video_id: r.reason for r in got.select("video_id", "reason").collect()}
    assert reasons == {"v1": None, "v2": None, "v3": NO_TEXT, "v4": NO_KEYWORDS,
                       "v5": "bad_frames: frame 1: cannot identify image"}


def test_pretrain_rows_frame_without_idf_uses_jiebas(spark, videos):
    one = videos.where("video_id = 'v2'")
    row = pretrain_rows_frame(one, None, seed=0).first()
    expected = pretrain_text("v2", VIDEOS[1][1], None, None, None, seed=0)
    assert (row.pseudo_query, row.keywords, row.video_text) == (
        expected.pseudo_query, expected.keywords, expected.video_text)


def test_every_videos_frames_are_checked_even_when_its_text_is_rejected(spark):
    # a rejected text keeps its own reason, but video_texts still records the frames scoring would decode
    videos = spark.createDataFrame([("v6", None, None, None, [png(), b"junk", b""], "2024-08-19")], VIDEOS_SCHEMA)
    row = pretrain_rows_frame(videos, None).first()
    assert row.reason == NO_TEXT
    assert [tuple(p) for p in row.frame_problems] == [(1, False, "cannot identify image"), (2, False, "empty bytes")]
