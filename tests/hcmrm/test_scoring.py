"""The ad-major engine gives what the model gives pair by pair, encoding each ad's frames once."""

import io
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from hcmrm.model.checkpoint import save_model
from hcmrm.model.frames import decode_frames, stack_videos
from hcmrm.model.network import build_model
from hcmrm.scoring import AdPairs, Scorer, ScoringConfig
from hcmrm.model.tokenizer import Tokenizer


def png(color) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("tiny").eval()


ADS = [
    AdPairs("a1", "红色 连衣裙 夏季", [png((255, 0, 0)), png((200, 10, 10))], ["连衣裙", "夏天的红色长裙子", "手机"]),
    AdPairs("a2", "手机 新款 拍照", [png((0, 0, 255))], ["拍照手机"]),
    AdPairs("text-only", "英语 网课 考试", [], ["英语培训", "考研英语网课推荐"]),
]


def direct(model, query, text, frames):
    """One pair through the model, as its own batch: the reference the engine must match."""
    tokenizer = Tokenizer.from_config(model.config)
    v = model.config.vision
    video = decode_frames(frames, v.image_size, model.config.max_frames, v.mean, v.std)
    with torch.inference_mode():
        memory = model.encode_video(*stack_videos([video], model.config.max_frames))
        enc = tokenizer.encode_pairs([query], [text])
        out = model.relevance(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], memory)
    return out.probs[0].numpy(), float(out.score[0])


def test_engine_scores_equal_the_model_called_pair_by_pair(model):
    scorer = Scorer(model, Tokenizer.from_config(model.config), ScoringConfig(frames_per_chunk=2, pairs_per_batch=3))
    results = scorer.score(ADS)
    assert [r.ad_id for r in results] == ["a1", "a2", "text-only"]
    for ad, result in zip(ADS, results):
        assert result.reason is None and result.probs.shape == (len(ad.queries), 4)
        for i, query in enumerate(ad.queries):
            probs, score = direct(model, query, ad.text, ad.frames)
            np.testing.assert_allclose(result.probs[i], probs, atol=1e-5)
            assert result.score[i] == pytest.approx(score, abs=1e-5)
        assert (result.label == result.probs.argmax(1)).all()
    np.testing.assert_allclose(results[0].probs.sum(1), 1.0, atol=1e-5)


def test_each_ad_is_encoded_once_however_many_queries(model):
    scorer = Scorer(model, Tokenizer.from_config(model.config), ScoringConfig(frames_per_chunk=2, pairs_per_batch=2))
    scorer.score(ADS)
    c = scorer.counters
    assert (c.vision_encodes, c.pairs_scored, c.ads_rejected) == (3, 6, 0)
    assert c.batches == 4  # chunks of <= 2 frame slots: (text-only) 2 pairs in 1 batch; (a2) 1 in 1; (a1) 3 in 2
    naive = Scorer(model, Tokenizer.from_config(model.config))
    naive.score([AdPairs(ad.ad_id, ad.text, ad.frames, [q]) for ad in ADS for q in ad.queries])
    assert naive.counters.vision_encodes == 6  # the per-pair baseline the benchmark compares against


def test_chunks_count_padded_frame_slots_and_keep_text_only_ads_apart(model, monkeypatch):
    """Every ad of a vision pass is padded to the chunk's widest video: a text-only ad next to a framed one
    would carry its masked frame tokens into every pair's cross-attention."""
    shapes = []
    encode = model.encode_video
    monkeypatch.setattr(model, "encode_video", lambda frames, mask: shapes.append(tuple(mask.shape)) or
                        encode(frames, mask))
    ads = [*ADS, AdPairs("text-only 2", "手机 壳", [], ["手机壳"]), AdPairs("a3", "红色", [png((250, 0, 0))], ["红"])]
    Scorer(model, Tokenizer.from_config(model.config), ScoringConfig(frames_per_chunk=4)).score(ads)
    # [ads, frame slots] per vision pass: the text-only ads alone; a2 + a3 (2 x 1 slots); a1 (2 + a1 = 3 x 2 > 4)
    assert shapes == [(2, 0), (2, 1), (1, 2)]

    tokenizer = Tokenizer.from_config(model.config)
    sorted_ = Scorer(model, tokenizer, ScoringConfig(pairs_per_batch=2, sort_by_length=True))
    unsorted = Scorer(model, tokenizer, ScoringConfig(pairs_per_batch=2, sort_by_length=False))
    ads = [*ADS, AdPairs("t1", "英语 网课", [], ["短", "非常非常长的一个查询词语句子"]),
           AdPairs("t2", "英语 网课", [], ["短的", "又一个非常非常长的查询词语"])]
    a, b = sorted_.score(ads), unsorted.score(ads)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.probs, y.probs, atol=1e-5)
    assert sorted_.counters.padded_tokens < unsorted.counters.padded_tokens
    assert sorted_.counters.real_tokens == unsorted.counters.real_tokens


def test_a_text_only_ad_scores_deterministically_whatever_its_batch(model):
    scorer = Scorer(model, Tokenizer.from_config(model.config))
    alone = scorer.score([ADS[2]])[0]
    again = scorer.score([ADS[2]])[0]
    with_videos = scorer.score(ADS)[2]
    assert np.array_equal(alone.probs, again.probs)
    np.testing.assert_allclose(alone.probs, with_videos.probs, atol=1e-6)
    np.testing.assert_allclose(scorer.score([AdPairs("n", ADS[2].text, None, ADS[2].queries)])[0].probs, alone.probs)


def test_undecodable_frames_reject_the_ad_and_spare_the_others(model):
    scorer = Scorer(model, Tokenizer.from_config(model.config))
    bad = AdPairs("bad", "文本", [png((1, 2, 3)), b"not an image"], ["查询"])
    results = scorer.score([bad, ADS[1]])
    assert results[0].probs is None and results[0].reason.startswith("undecodable_frames: frame 1")
    assert results[1].reason is None and results[1].probs.shape == (1, 4)
    assert (scorer.counters.vision_encodes, scorer.counters.ads_rejected) == (1, 1)


@pytest.mark.parametrize("text_attention", ["full", "cached"])
def test_prepare_threads_give_the_same_scores_as_preparing_in_line(text_attention):
    """On an accelerator the next chunk is decoded and tokenised on threads while this one runs: same rows,
    same counters, a rejected ad still rejected alone, whatever the order the threads finish in."""
    torch.manual_seed(0)
    model = build_model("tiny", text_attention=text_attention).eval()
    bad = AdPairs("bad", "文本", [png((1, 2, 3)), b"not an image"], ["查询"])
    ads = [*ADS, bad, *[AdPairs(f"c{i}", f"红色 {i}", [png((i, 0, 0))], ["红", f"红色{i}"]) for i in range(6)]]
    config = {"frames_per_chunk": 2, "pairs_per_batch": 2}  # 6 chunks: several prepared ahead
    inline = Scorer(model, Tokenizer.from_config(model.config), ScoringConfig(prepare_threads=0, **config))
    threaded = Scorer(model, Tokenizer.from_config(model.config), ScoringConfig(prepare_threads=3, **config))
    decoded_on = set()
    decode = threaded._decode
    threaded._decode = lambda ad: decoded_on.add(threading.current_thread().name) or decode(ad)
    for a, b in zip(inline.score(ads), threaded.score(ads)):
        assert (a.ad_id, a.reason) == (b.ad_id, b.reason)
        if a.probs is not None:
            np.testing.assert_array_equal(a.probs, b.probs)
    counts = [{k: v for k, v in vars(s.counters).items() if k != "host_seconds"} for s in (inline, threaded)]
    assert counts[0] == counts[1] and threaded.counters.ads_rejected == 1
    assert inline.counters.host_seconds > 0  # in line, the device waits for all of the host's work
    assert decoded_on and all(name.startswith("hcmrm-prepare") for name in decoded_on)


def test_prepare_threads_default_to_none_on_cpu_and_some_on_an_accelerator(model):
    tokenizer = Tokenizer.from_config(model.config)
    assert Scorer(model, tokenizer).prepare_threads == 0  # a CPU worker has no spare core
    on_gpu = Scorer(model, tokenizer)
    on_gpu.device = torch.device("cuda")  # not moved: the property reads only the device's type
    assert 1 <= on_gpu.prepare_threads <= 8
    assert Scorer(model, tokenizer, ScoringConfig(prepare_threads=2)).prepare_threads == 2


def test_an_error_on_a_prepare_thread_reaches_the_caller(model, monkeypatch):
    scorer = Scorer(model, Tokenizer.from_config(model.config), ScoringConfig(prepare_threads=2, frames_per_chunk=2))

    def broken(texts, max_len, offsets=False):
        raise RuntimeError("tokenizer broke")

    monkeypatch.setattr(scorer.tokenizer, "tokenize", broken)
    with pytest.raises(RuntimeError, match="tokenizer broke"):
        scorer.score(ADS)


def test_from_dir_loads_a_saved_model(model, tmp_path):
    save_model(model, tmp_path / "m")
    scorer = Scorer.from_dir(tmp_path / "m", ScoringConfig())
    np.testing.assert_allclose(
        scorer.score(ADS[:1])[0].probs, Scorer(model, Tokenizer.from_config(model.config)).score(ADS[:1])[0].probs
    )


def test_score_pairs_scores_labeled_pairs_as_ads_in_their_order(model):
    """Offline evaluation's entry: (query, text, frames) rows, grouped by video, answers in row order."""
    rows = [(q, ad.text, ad.frames) for ad in ADS for q in ad.queries]
    rows = rows[::2] + rows[1::2]  # the pairs of one video are not next to each other
    scorer = Scorer(model, Tokenizer.from_config(model.config), ScoringConfig(pairs_per_batch=2))
    probs, score = scorer.score_pairs(*zip(*rows))
    assert scorer.counters.vision_encodes == len(ADS)  # one encode per distinct video, not per pair
    for (query, text, frames), p, s in zip(rows, probs, score):
        expected, value = direct(model, query, text, frames)
        np.testing.assert_allclose(p, expected, atol=1e-5)
        assert s == pytest.approx(value, abs=1e-5)
    with pytest.raises(ValueError, match="pair 1 .*undecodable_frames"):
        scorer.score_pairs(["q", "q"], ["文本", "别的"], [[], [b"not an image"]])


def nan_model(seed: int = 0):
    """A tiny model whose relevance head has a NaN bias: structurally valid, every probability NaN."""
    torch.manual_seed(seed)
    broken = build_model("tiny").eval()
    with torch.no_grad():
        broken.relevance_head.bias.fill_(float("nan"))
    return broken


def save_nan_model(folder):
    """nan_model() saved as a checkpoint folder (config.json and safetensors both read fine)."""
    save_model(nan_model(), folder)
    return folder


def test_non_finite_probabilities_fail_the_call_as_a_model_error():
    from hcmrm.errors import ModelError

    broken = nan_model()
    scorer = Scorer(broken, Tokenizer.from_config(broken.config))
    with pytest.raises(ModelError) as raised:
        scorer.score(ADS)
    line = raised.value.line()
    assert line.startswith("the model produced non-finite probabilities (NaN or inf) for 6 of 6 pairs")
    assert "the model is broken, not the data" in line and raised.value.exit_code == 4
    with pytest.raises(ModelError, match="non-finite"):  # offline evaluation goes through the same check
        scorer.score_pairs(["手机"], ["拍照手机"])


def jpeg(color, size=(320, 180)) -> bytes:
    out = io.BytesIO()
    Image.radial_gradient("L").resize(size).convert("RGB").point(lambda v: (v + color) % 256).save(
        out, format="JPEG", quality=90)
    return out.getvalue()


def test_frames_decoded_on_the_device_score_as_the_hosts_within_jpeg_and_resampling_error(model):
    """frame_decode="device" runs torchvision's decode_jpeg on the model's device (here the CPU: on a GPU it is
    nvJPEG), a chunk's JPEGs in one call, then resizes there; PNGs still decode on the host. The scores agree
    with PIL's decode; the bad frames are rejected with the host's reasons."""
    bad = AdPairs("bad", "文本", [jpeg(5), b"\xff\xd8\xff not a jpeg"], ["查询"])
    truncated = AdPairs("cut", "文本", [jpeg(9)[:2000]], ["查询"])  # its header whole, its scan cut
    ads = [AdPairs("j1", "红色 连衣裙", [jpeg(0), jpeg(60), png((9, 9, 9))], ["连衣裙", "手机"]),
           AdPairs("j2", "手机 拍照", [jpeg(120, (64, 64))], ["拍照手机"]), bad, truncated, ADS[2]]
    tokenizer = Tokenizer.from_config(model.config)
    host = Scorer(model, tokenizer, ScoringConfig(frame_decode="host")).score(ads)
    device = Scorer(model, tokenizer, ScoringConfig(frame_decode="device"))
    assert device.decodes_on_device and not Scorer(model, tokenizer).decodes_on_device  # auto on a CPU: host
    for a, b in zip(host, device.score(ads)):
        assert a.ad_id == b.ad_id and (a.reason is None) == (b.reason is None)
        if a.probs is not None:
            np.testing.assert_allclose(a.probs, b.probs, atol=0.02)
    assert device.counters.vision_encodes == 3 and device.counters.ads_rejected == 2
    reasons = {r.ad_id: r.reason for r in device.score(ads) if r.reason}
    assert reasons["bad"] == host[2].reason  # a header PIL cannot read: refused on the host, before the device
    assert reasons["cut"].startswith("undecodable_frames: frame 0: ")


def test_frame_decode_is_checked():
    with pytest.raises(ValueError, match="frame_decode must be one of auto, device, host, got 'gpu'"):
        ScoringConfig(frame_decode="gpu")
