"""Frame bytes -> tensors; bad frames are named with a reason; videos of 0..F frames are padded and masked."""

import pytest
import torch
from PIL import Image

from hcmrm.model.frames import FrameDecodeError, check_frames, decode_frames, encode_image, sample_indices, stack_videos


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


def test_bad_frames_are_named_with_a_reason():
    frames = [jpeg("red"), jpeg("blue"), b"not an image", jpeg("red")[:50]]
    assert check_frames(frames) == "frame 2: cannot identify image"
    assert check_frames(frames[:2]) is None
    assert check_frames(None) is None
    assert check_frames([jpeg("red"), b""]) == "frame 1: empty bytes"
    assert check_frames([None]) == "frame 0: null frame"
    assert check_frames([jpeg("red")[:50]]).startswith("frame 0: ")  # truncated
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
