"""Frame bytes -> tensors; bad frames are named with a reason; videos of 0..F frames are padded and masked."""

import json

import pytest
import torch
from PIL import Image

from hcmrm.model.frames import (
    FrameDecodeError, FrameProblem, decode_frames, encode_image, frame_problems, image_to_tensor, sample_indices,
    stack_videos,
)


def jpeg(color, size=(40, 30)):
    return encode_image(Image.new("RGB", size, color))


def test_decode_resizes_and_normalises():
    video = decode_frames([jpeg("white"), encode_image(Image.new("L", (8, 8), 0), "PNG")], image_size=16, max_frames=4)
    assert video.shape == (2, 3, 16, 16)
    assert video[0].mean().item() == pytest.approx(1.0, abs=0.02)  # white -> (1 - 0.5) / 0.5
    assert video[1].mean().item() == pytest.approx(-1.0, abs=0.02)  # black, grey-scale PNG -> RGB


def test_long_videos_are_sampled_evenly():
    assert sample_indices(10, 4) == [1, 3, 6, 8]
    assert sample_indices(3, 4) == [0, 1, 2]
    assert decode_frames([jpeg("red")] * 10, 16, 4).shape[0] == 4


def test_text_only_videos_are_empty():
    assert decode_frames(None, 16, 4).shape == (0, 3, 16, 16)
    assert decode_frames([], 16, 4).shape == (0, 3, 16, 16)


def test_every_bad_frame_is_named_with_a_reason():
    frames = [jpeg("red"), jpeg("blue"), b"not an image", jpeg("red")[:50]]
    problems = frame_problems(frames)
    assert [(p.index, p.oversized) for p in problems] == [(2, False), (3, False)]
    assert str(problems[0]) == "frame 2: cannot identify image"
    assert frame_problems(frames[:2]) == [] and frame_problems(None) == []
    assert frame_problems([jpeg("red"), b""]) == [FrameProblem(1, False, "empty bytes")]
    assert frame_problems([None]) == [FrameProblem(0, False, "null frame")]
    with pytest.raises(FrameDecodeError, match="frame 2: cannot identify image"):
        decode_frames(frames, 16, 4)


def test_stack_pads_to_the_longest_video_and_masks():
    videos = [torch.ones(2, 3, 8, 8), torch.zeros(0, 3, 8, 8), torch.ones(1, 3, 8, 8)]
    frames, mask = stack_videos(videos, max_frames=4)
    assert frames.shape == (3, 2, 3, 8, 8)
    assert mask.tolist() == [[True, True], [False, False], [True, False]]
    assert frames[2, 1].eq(0).all()
    frames, mask = stack_videos([torch.zeros(0, 3, 8, 8)], max_frames=4)
    assert frames.shape == (1, 0, 3, 8, 8) and mask.shape == (1, 0)


# --- limits: checked from the header, before any pixel is decoded ---------------------------------


def huge_png(width=13_000, height=13_000) -> bytes:
    """A width x height black RGB PNG written row by row: half a megabyte that decodes to 500 MB."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    deflate, row = zlib.compressobj(9), bytes(1 + 3 * width)  # filter byte + RGB pixels
    body = b"".join(deflate.compress(row * 100) for _ in range(height // 100))
    body += deflate.compress(row * (height % 100)) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bomb():
    return huge_png()


def test_a_13000_square_png_is_refused_from_its_header_without_decoding(bomb, monkeypatch):
    import time

    from PIL import ImageFile

    from hcmrm.model.frames import OversizedFrameError

    assert len(bomb) < 1_000_000  # under PIL's own bomb limit, and small on disk
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("the oversized frame was decoded"))
    started = time.perf_counter()
    with pytest.raises(OversizedFrameError, match="frame 0: 13000x13000 = 169,000,000 pixels, over the cap of 40,0"):
        decode_frames([bomb], image_size=16, max_frames=4)
    assert time.perf_counter() - started < 1.0
    over = "13000x13000 = 169,000,000 pixels, over the cap of 40,000,000"
    assert frame_problems([bomb]) == [FrameProblem(0, True, over)]


def test_the_caps_are_configurable_and_the_byte_cap_comes_first():
    from hcmrm.model.frames import FrameLimits, OversizedFrameError

    frame = jpeg("red", size=(40, 30))
    assert decode_frames([frame], 16, 4, limits=FrameLimits(max_pixels=1200)).shape == (1, 3, 16, 16)
    with pytest.raises(OversizedFrameError, match="40x30 = 1,200 pixels, over the cap of 1,199"):
        decode_frames([frame], 16, 4, limits=FrameLimits(max_pixels=1199))
    with pytest.raises(OversizedFrameError, match=rf"frame 0: {len(frame):,} bytes, over the cap of 100"):
        decode_frames([frame], 16, 4, limits=FrameLimits(max_bytes=100))


def test_a_big_jpeg_is_decoded_at_a_reduced_scale_that_still_covers_the_model_size():
    import numpy as np

    from hcmrm.model.frames import open_frame

    gradient = np.tile(np.linspace(0, 255, 2000, dtype=np.uint8), (1500, 1))
    frame = encode_image(Image.fromarray(gradient).convert("RGB"))
    assert open_frame(frame).size == (2000, 1500)
    assert open_frame(frame, size=224).size == (500, 375)  # 1/4 scale: 1/8 would be under 224 on the short side
    drafted = decode_frames([frame], 224, 1)
    full = image_to_tensor(open_frame(frame), 224)
    assert (drafted[0] - full).abs().mean().item() < 0.02  # the same picture, within JPEG's own error


def test_frames_past_the_sampled_ones_are_never_decoded():
    frames = [b"garbage"] + [jpeg("red")] * 9  # sample_indices(10, 4) == [1, 3, 6, 8]
    assert decode_frames(frames, 16, 4).shape == (4, 3, 16, 16)
    assert frame_problems(frames) == [FrameProblem(0, False, "cannot identify image")]  # a full check sees it


def test_limits_are_recorded_as_json_that_tells_other_limits_apart():
    from hcmrm.model.frames import FrameLimits

    assert json.loads(FrameLimits().to_json()) == {"max_bytes": 16 * 2**20, "max_pixels": 40_000_000}
    assert FrameLimits(max_bytes=1).to_json() != FrameLimits().to_json()


def test_jpegs_decoded_on_the_device_match_pils_pixels_and_a_bad_one_is_named():
    from hcmrm.model.frames import decode_on_device, frames_for_device

    frame = encode_image(Image.radial_gradient("L").resize((300, 200)).convert("RGB"))
    video = frames_for_device([frame, png_bytes()], 32, 4)
    assert [p.dim() for p in video.parts] == [1, 3]  # the JPEG still encoded, the PNG decoded on the host
    broken = frames_for_device([frame[: len(frame) // 2]], 32, 4)  # the header whole, the scan cut
    pixels, error = decode_on_device([video, broken], 32, "cpu")
    assert pixels.shape == (2, 3, 32, 32) and pixels.dtype == torch.uint8
    host = decode_frames([frame, png_bytes()], 32, 4, normalized=False)
    assert (pixels.float() - host.float()).abs().mean() < 3  # of 255: JPEG's and the resampling's own error
    assert isinstance(error, FrameDecodeError) and str(error).startswith("frame 0: ")


def png_bytes() -> bytes:
    return encode_image(Image.new("RGB", (50, 40), (10, 200, 30)), format="PNG")
