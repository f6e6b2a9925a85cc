"""The scoring engine: (query, video ad) pairs -> HCMRM relevance, ad-major.

Billions of pairs but far fewer ads, so the cost follows the ads: each ad's frames are decoded
and run through the vision tower once, and the resulting VideoMemory is shared by every query
of that ad. Pairs of many ads are batched together, sorted by token count so a batch carries
little padding. No Spark here (udfs/score.py adapts it), so its raw speed is measured alone.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hcmrm.errors import ModelError
from hcmrm.labels import GRADE_NAMES
from hcmrm.model.frames import (
    DeviceFrames, FrameDecodeError, FrameLimits, OversizedFrameError, decode_frames, decode_on_device,
    frames_for_device, normalize_pixels, stack_videos,
)
from hcmrm.tables import OVERSIZED_FRAME, UNDECODABLE_FRAMES
from hcmrm.text.normalize import normalize_text


FRAME_DECODE = ("auto", "device", "host")


@dataclass(frozen=True)
class ScoringConfig:
    frames_per_chunk: int = 256  # frames per vision forward pass: a chunk of ads holds at most this many
    pairs_per_batch: int = 128  # (query, ad) pairs per fusion forward pass
    sort_by_length: bool = True  # order a chunk's pairs by token count before batching, to cut padding
    sort_window: int = 64  # a chunk holds at most this many batches of pairs (bounds tokenized memory)
    bf16: bool = True  # bf16 autocast on CUDA; CPU always runs float32
    torch_threads: int | None = None  # torch threads per Python worker; None: the Spark task's cpus (udfs.score)
    frame_limits: FrameLimits = field(default_factory=FrameLimits)  # caps checked before a frame is decoded
    # Threads that decode and tokenise the next chunk while the device runs this one. None: 0 on CPU, where
    # Spark already runs a worker per core and no core is spare; up to 8 on an accelerator, which would
    # otherwise wait on the CPU (4 JPEG frames per ad cost more CPU time than the ad's pairs cost a GPU).
    prepare_threads: int | None = None
    # Where JPEG frames are decoded and resized: "device" (torchvision.io.decode_jpeg, nvJPEG on a GPU, a
    # chunk's frames in one call), "host" (PIL on the prepare threads), "auto": the device on a GPU, else the
    # host. Other formats are always decoded on the host; limits are checked on the host either way.
    frame_decode: str = "auto"

    def __post_init__(self):
        if self.frame_decode not in FRAME_DECODE:
            raise ValueError(f"frame_decode must be one of {', '.join(FRAME_DECODE)}, got {self.frame_decode!r}")


@dataclass
class AdPairs:
    """One ad and the queries it is scored against."""

    ad_id: str
    text: str  # the video text the model reads (hcmrm.text.video_text; the `video_texts` table)
    frames: Sequence[bytes]  # encoded frames (JPEG/PNG), possibly none: the ad is then scored on text alone
    queries: Sequence[str]


@dataclass
class AdScores:
    """The relevance of every query of one ad, in the order of AdPairs.queries."""

    ad_id: str
    probs: np.ndarray | None  # [n, 4] P(Bad), P(Less), P(Good), P(Excellent); None when rejected
    score: np.ndarray | None  # [n] p1 + 2 p2 + 3 p3, in 0..3; None when rejected
    reason: str | None = None  # why every pair of this ad was rejected (its frames), else None

    @property
    def label(self) -> np.ndarray | None:
        return None if self.probs is None else self.probs.argmax(axis=1)


@dataclass
class ScoringCounters:
    """What the engine really did, summed over its calls (the job reports them)."""

    vision_encodes: int = 0  # ads whose frames went through model.encode_video
    pairs_scored: int = 0  # pairs through model.relevance
    ads_rejected: int = 0  # ads whose frames could not be decoded or were unusable
    batches: int = 0  # fusion forward passes
    padded_tokens: int = 0  # token slots of those passes, padding included
    real_tokens: int = 0  # token slots holding real tokens
    host_seconds: float = 0.0  # the scoring thread's time decoding/tokenising in line or waiting for the prepare threads

    def snapshot(self) -> "ScoringCounters":
        return ScoringCounters(**vars(self))

    def minus(self, before: "ScoringCounters") -> "ScoringCounters":
        return ScoringCounters(**{k: v - getattr(before, k) for k, v in vars(self).items()})


@dataclass
class PreparedChunk:
    """A chunk's CPU work, maybe still running on the prepare threads: each ad's decoded frames (or the reason
    they are unusable) and the tokens of all its pairs (Scorer._tokenize)."""

    videos: list[Future]  # per ad: (uint8 frames [f, 3, H, W] | None, reason | None)
    tokens: Future  # dict of token tensors, every ad's pairs in order


class _InlineExecutor:
    """submit() runs the call at once: the prepare path without threads, with the same Futures."""

    def submit(self, fn, *args) -> Future:
        future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as error:  # re-raised by future.result(), as from a thread
            future.set_exception(error)
        return future

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


def check_finite(results: Sequence[AdScores]) -> None:
    """Raise ModelError when any probability or score is NaN or infinite: a broken model (NaN weights,
    an overflow) must fail the day before anything is written, never be written as label 0."""
    scored = [r for r in results if r.probs is not None]
    bad = sum(int((~np.isfinite(r.probs).all(axis=1) | ~np.isfinite(r.score)).sum()) for r in scored)
    if bad:
        total = sum(len(r.probs) for r in scored)
        first = next(r.ad_id for r in scored if not (np.isfinite(r.probs).all() and np.isfinite(r.score).all()))
        raise ModelError(f"the model produced non-finite probabilities (NaN or inf) for {bad} of {total} pairs "
                         f"(first in ad {first}); the model is broken, not the data")


@dataclass
class Scorer:
    """A model on one device, ready to score ads; keep one per Python worker (or per GPU)."""

    model: torch.nn.Module
    tokenizer: object  # hcmrm.model.tokenizer.Tokenizer
    config: ScoringConfig = field(default_factory=ScoringConfig)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    counters: ScoringCounters = field(default_factory=ScoringCounters)
    _tokenizer_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self):
        self.device = torch.device(self.device)
        self.model = self.model.to(self.device).eval()
        self.vision_config = self.model.config.vision
        self.max_frames = self.model.config.max_frames

    @classmethod
    def from_dir(cls, model_dir: str | Path, config: ScoringConfig | None = None, device="cpu") -> "Scorer":
        """Load a model folder written by hcmrm.model.checkpoint.save_model (e.g. downloaded from the registry)."""
        from hcmrm.model.checkpoint import load_model
        from hcmrm.model.tokenizer import Tokenizer

        model = load_model(model_dir)
        return cls(model, Tokenizer.from_config(model.config), config or ScoringConfig(), torch.device(device))

    def score(self, ads: Sequence[AdPairs]) -> list[AdScores]:
        """Score every query of every ad; each ad's frames are encoded exactly once per call.

        Ads are taken in order of frame count (text-only ads together, so a text-only pair
        cross-attends to one memory token, not to a framed neighbour's masked frame tokens) and cut
        into chunks: one vision pass per chunk, the chunk's pairs sorted by length and batched.
        """
        order = sorted(range(len(ads)), key=lambda i: self._frame_count(ads[i]))
        results: list[AdScores | None] = [None] * len(ads)
        for chunk, prepared in self._prepared(ads, list(self._chunks(ads, order))):
            for i, result in zip(chunk, self._score_chunk([ads[i] for i in chunk], prepared)):
                results[i] = result
        check_finite(results)
        return results

    @property
    def prepare_threads(self) -> int:
        if self.config.prepare_threads is not None:
            return self.config.prepare_threads
        return 0 if self.device.type == "cpu" else min(8, os.cpu_count() or 1)

    def _prepared(self, ads: Sequence[AdPairs], chunks: list[list[int]]) -> Iterator[tuple[list[int], PreparedChunk]]:
        """Each chunk with its CPU work submitted one chunk ahead: while the device runs chunk k, the prepare
        threads decode and tokenise chunk k + 1 (in line, without threads, when prepare_threads is 0)."""
        threads = self.prepare_threads
        with ThreadPoolExecutor(threads, thread_name_prefix="hcmrm-prepare") if threads else _InlineExecutor() as pool:
            ahead = None
            for chunk in chunks:
                chunk_ads = [ads[i] for i in chunk]
                started = time.perf_counter()  # in line, the work itself runs here
                submitted = (chunk, PreparedChunk([pool.submit(self._decode, ad) for ad in chunk_ads],
                                                  pool.submit(self._tokenize, chunk_ads)))
                self.counters.host_seconds += time.perf_counter() - started
                if ahead is not None:
                    yield ahead
                ahead = submitted
            if ahead is not None:
                yield ahead

    def score_pairs(self, queries: Sequence[str], texts: Sequence[str],
                    frames: Sequence[Sequence[bytes] | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(probs [N, 4], score [N]) of (query, video text[, frames]) pairs, in their order.

        Pairs that share a video (same text and frames) become one ad, so offline evaluation runs
        exactly what the nightly job runs. Undecodable frames are an error here, not a reject.
        """
        if len(queries) != len(texts) or (frames is not None and len(frames) != len(queries)):
            raise ValueError(f"{len(queries)} queries, {len(texts)} texts and {len(frames or [])} frame lists")
        ads: dict[tuple, AdPairs] = {}
        rows: dict[tuple, list[int]] = {}  # the pairs of each ad, by position in the input
        for i, (query, text) in enumerate(zip(queries, texts)):
            video = list(frames[i] or []) if frames is not None else []
            key = (text, tuple(video))
            if key not in ads:
                ads[key] = AdPairs(f"video {len(ads)}", text, video, [])
                rows[key] = []
            ads[key].queries.append(query)
            rows[key].append(i)
        probs = np.empty((len(queries), len(GRADE_NAMES)), dtype=np.float32)
        score = np.empty(len(queries), dtype=np.float32)
        for key, result in zip(ads, self.score(list(ads.values()))):
            if result.reason is not None:
                raise ValueError(f"pair {rows[key][0]} (text {key[0][:40]!r}): {result.reason}")
            probs[rows[key]] = result.probs
            score[rows[key]] = result.score
        return probs, score

    def _frame_count(self, ad: AdPairs) -> int:
        return min(len(ad.frames or ()), self.max_frames)

    def _chunks(self, ads: Sequence[AdPairs], order: list[int]):
        """Consecutive ads (in order of frame count) while their padded frame slots fit one vision pass and
        their pairs one sort window. Every ad of a chunk is padded to its widest video, so the budget counts
        slots, not frames: text-only ads then never share a chunk with framed ones, where each would carry
        (and its pairs cross-attend over) a framed neighbour's masked tokens."""
        max_pairs = self.config.pairs_per_batch * self.config.sort_window
        chunk, widest, pairs = [], 0, 0
        for i in order:
            f, q = self._frame_count(ads[i]), len(ads[i].queries)
            slots = (len(chunk) + 1) * max(widest, f)
            if chunk and (slots > self.config.frames_per_chunk or (f > 0) != (widest > 0) or pairs + q > max_pairs):
                yield chunk
                chunk, widest, pairs = [], 0, 0
            chunk.append(i)
            widest, pairs = max(widest, f), pairs + q
        if chunk:
            yield chunk

    # -- one chunk of ads: one vision pass, then their pairs in length-sorted batches --

    def _score_chunk(self, ads: Sequence[AdPairs], prepared: PreparedChunk) -> list[AdScores]:
        started = time.perf_counter()  # the device idles while the host catches up
        videos, reasons = zip(*(future.result() for future in prepared.videos))
        prepared.tokens.exception()  # waits for the tokens too (read below, once the frames are on the device)
        self.counters.host_seconds += time.perf_counter() - started
        if self.decodes_on_device:
            videos, reasons = self._decode_on_device(videos, reasons)
        kept = [i for i, r in enumerate(reasons) if r is None]
        self.counters.ads_rejected += len(ads) - len(kept)
        results = [AdScores(ad.ad_id, None, None, reason) for ad, reason in zip(ads, reasons)]
        if not kept:
            return results
        tokens = prepared.tokens.result()
        first = np.cumsum([0] + [len(ad.queries) for ad in ads])  # each ad's first pair in `tokens`
        pair_rows = torch.from_numpy(np.concatenate([np.arange(first[i], first[i + 1]) for i in kept]))

        with self._inference():
            memory = self.model.encode_video(*self._frames_on_device([videos[i] for i in kept]))
            self.counters.vision_encodes += len(kept)
            # Pair j of the kept ads belongs to the row ad_row[j] of `memory`.
            ad_row = np.concatenate([np.full(len(ads[i].queries), row, dtype=np.int64) for row, i in enumerate(kept)])
            if getattr(self.model, "cached_text", False):
                probs, score = self._score_pairs_cached(_rows(tokens["query"], pair_rows),
                                                        _rows(tokens["text"], torch.tensor(kept)), ad_row, memory)
            else:
                probs, score = self._score_pairs(_rows(tokens["pair"], pair_rows), ad_row, memory)

        offset = 0
        for i in kept:
            n = len(ads[i].queries)
            results[i] = AdScores(ads[i].ad_id, probs[offset : offset + n], score[offset : offset + n])
            offset += n
        return results

    def _frames_on_device(self, videos: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The chunk's uint8 frames padded, copied to the device (from pinned memory, without waiting, on a
        GPU) and normalised there; padded slots stay 0, as the model's masked frames always were."""
        on_gpu = self.device.type == "cuda"
        pixels, frame_mask = stack_videos(videos, self.max_frames, pin_memory=on_gpu)
        frame_mask = frame_mask.to(self.device, non_blocking=on_gpu)
        frames = normalize_pixels(pixels.to(self.device, non_blocking=on_gpu), self.vision_config.mean,
                                  self.vision_config.std)
        return frames.masked_fill_(~frame_mask[:, :, None, None, None], 0.0), frame_mask

    def _tokenize(self, ads: Sequence[AdPairs]) -> dict[str, dict[str, torch.Tensor]]:
        """The tokens of every pair of `ads` (rejected ads too: they are rare, and this may run before their
        frames are decoded). One tokenisation at a time: the fast tokenizer is not safe across threads."""
        queries = [normalize_text(q) for ad in ads for q in ad.queries]  # as training read them
        with self._tokenizer_lock:
            if getattr(self.model, "cached_text", False):
                return {"query": self.tokenizer.encode_texts(queries, self.model.config.max_query_len),
                        "text": self.tokenizer.encode_text_segments([ad.text for ad in ads])}
            return {"pair": self.tokenizer.encode_pairs(queries, [ad.text for ad in ads for _ in ad.queries])}

    @property
    def decodes_on_device(self) -> bool:
        mode = self.config.frame_decode
        return mode == "device" or (mode == "auto" and self.device.type == "cuda")

    def _decode(self, ad: AdPairs):
        """The ad's frames as a [f, 3, H, W] uint8 tensor (f may be 0), or the reason they are unusable; when
        JPEGs are decoded on the device, DeviceFrames (their headers checked) for _decode_on_device."""
        v = self.vision_config
        try:
            frames = list(ad.frames or [])
            if self.decodes_on_device:
                return frames_for_device(frames, v.image_size, self.max_frames, self.config.frame_limits), None
            pixels = decode_frames(frames, v.image_size, self.max_frames, limits=self.config.frame_limits,
                                   normalized=False)
            return pixels, None
        except OversizedFrameError as err:
            return None, OVERSIZED_FRAME.detail(err)
        except FrameDecodeError as err:
            return None, UNDECODABLE_FRAMES.detail(err)

    def _decode_on_device(self, videos: Sequence, reasons: Sequence) -> tuple[list, list]:
        """The chunk's DeviceFrames decoded on the device in one batch; an ad with a frame neither the device nor
        PIL can read gets the UNDECODABLE_FRAMES reason the host path gives."""
        ready = [i for i, video in enumerate(videos) if isinstance(video, DeviceFrames)]
        videos, reasons = list(videos), list(reasons)
        decoded = decode_on_device([videos[i] for i in ready], self.vision_config.image_size, self.device,
                                   self.config.frame_limits)
        for i, result in zip(ready, decoded):
            if isinstance(result, FrameDecodeError):
                videos[i], reasons[i] = None, UNDECODABLE_FRAMES.detail(result)
            else:
                videos[i] = result
        return videos, reasons

    def _score_pairs(self, enc: dict[str, torch.Tensor], ad_row: np.ndarray, memory):
        """The full text attention: each pair's `[CLS] query [SEP] text [SEP]`, in batches sorted by length."""
        if not bool(enc["attention_mask"][:, 0].all()):
            raise ValueError("the tokenizer must pad on the right: batches are cut to their longest row")
        outputs = _Outputs(len(ad_row), self.counters)
        lengths = enc["attention_mask"].sum(dim=1)
        order = torch.argsort(lengths, stable=True) if self.config.sort_by_length else torch.arange(len(ad_row))
        for b0 in range(0, len(order), self.config.pairs_per_batch):
            rows = order[b0 : b0 + self.config.pairs_per_batch]
            width = int(lengths[rows].max())  # padding is on the right: the first `width` columns suffice
            batch = {k: v[rows, :width].to(self.device) for k, v in enc.items()}
            video = memory.index_select(torch.as_tensor(ad_row[rows.numpy()], device=self.device))
            out = self.model.relevance(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], video)
            outputs.add(out, rows, len(rows) * width, int(lengths[rows].sum()))
        return outputs.collect()

    def _score_pairs_cached(self, query_enc: dict[str, torch.Tensor], texts: dict[str, torch.Tensor],
                            ad_row: np.ndarray, memory):
        """The cached text attention: each ad's video text runs through every layer once (its keys and values
        kept), then only `[CLS] query [SEP]` runs per pair. Ads go in groups of pairs_per_batch // 4, in order of
        text length, which bounds the cached keys and values held at once (base: ~9.5 MB per 129-token ad)."""
        outputs = _Outputs(len(ad_row), self.counters)
        text_len = texts["attention_mask"].sum(dim=1)
        query_len = query_enc["attention_mask"].sum(dim=1)
        group = max(1, self.config.pairs_per_batch // 4)
        n_ads = len(text_len)
        ad_order = torch.argsort(text_len, stable=True) if self.config.sort_by_length else torch.arange(n_ads)
        for g0 in range(0, n_ads, group):
            ads = ad_order[g0 : g0 + group]
            width = int(text_len[ads].max())
            cache = self.model.encode_video_text(texts["input_ids"][ads, :width].to(self.device),
                                                 texts["attention_mask"][ads, :width].to(self.device),
                                                 memory.index_select(ads.to(self.device)))
            slot = np.full(n_ads, -1, dtype=np.int64)  # ad row -> its row in `cache`
            slot[ads.numpy()] = np.arange(len(ads))
            pairs = torch.from_numpy(np.flatnonzero(slot[ad_row] >= 0))
            if self.config.sort_by_length:
                pairs = pairs[torch.argsort(query_len[pairs], stable=True)]
            for b0 in range(0, len(pairs), self.config.pairs_per_batch):
                rows = pairs[b0 : b0 + self.config.pairs_per_batch]
                pair_ads = ad_row[rows.numpy()]  # each pair's row in `memory`
                cache_rows = torch.from_numpy(slot[pair_ads])
                q_width = int(query_len[rows].max())  # both halves are padded on the right
                text = cache.select(cache_rows.to(self.device), int(text_len[ads][cache_rows].max()))
                video = memory.index_select(torch.as_tensor(pair_ads, device=self.device))
                out = self.model.relevance_cached(query_enc["input_ids"][rows, :q_width].to(self.device),
                                                  query_enc["attention_mask"][rows, :q_width].to(self.device),
                                                  text, video)
                outputs.add(out, rows, len(rows) * q_width, int(query_len[rows].sum()))
        return outputs.collect()

    def _inference(self):
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        if self.device.type == "cuda" and self.config.bf16:
            stack.enter_context(torch.autocast("cuda", dtype=torch.bfloat16))
        return stack


def _rows(enc: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    return {k: v[rows] for k, v in enc.items()}


class _Outputs:
    """A chunk's fusion outputs, kept on the device until the chunk ends: copying each batch back would make the
    host wait for the device once per batch, and leave it idle while the next batch is cut."""

    def __init__(self, n: int, counters: ScoringCounters):
        self.n, self.counters, self.parts = n, counters, []

    def add(self, out, rows: torch.Tensor, token_slots: int, real_tokens: int) -> None:
        self.parts.append((rows, out.probs, out.score))
        self.counters.batches += 1
        self.counters.padded_tokens += token_slots
        self.counters.real_tokens += real_tokens

    def collect(self) -> tuple[np.ndarray, np.ndarray]:
        """(probs [n, 4], score [n]) as float32, row i of the chunk's pairs at i."""
        probs = np.empty((self.n, len(GRADE_NAMES)), dtype=np.float32)
        score = np.empty(self.n, dtype=np.float32)
        if self.parts:
            rows = torch.cat([r for r, _, _ in self.parts]).numpy()
            probs[rows] = torch.cat([p.float() for _, p, _ in self.parts]).cpu().numpy()
            score[rows] = torch.cat([s.float() for _, _, s in self.parts]).cpu().numpy()
        self.counters.pairs_scored += self.n
        return probs, score
