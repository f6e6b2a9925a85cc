"""Video frames: encoded JPEG/PNG bytes -> normalised tensors, and a batch of 0..F frames per video.

A video with more frames than max_frames keeps max_frames of them, evenly spaced; the others are
never decoded (a garbage frame among them is ignored). A video with none (None or []) is a
text-only video: an empty [0, 3, H, W] tensor, scored from its text alone.

A frame is checked against FrameLimits before it is decoded: its byte count, then its width x height
read from the header. PIL's own bomb limit (about 179 MP before it refuses) lets through a
13,000 x 13,000 PNG of half a megabyte that decodes to 500 MB of pixels; the cap here is far lower.
A JPEG is decoded at 1/2, 1/4 or 1/8 scale when that still covers the model's image size.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from functools import lru_cache

import torch
from PIL import Image

DEFAULT_MEAN = (0.5, 0.5, 0.5)  # timm ViT-B/32 augreg weights
DEFAULT_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class FrameLimits:
    max_pixels: int = 40_000_000  # width x height from the header; a larger frame is refused undecoded
    max_bytes: int = 16 * 2**20  # encoded bytes of one frame (video frames are tens to hundreds of KB)


DEFAULT_LIMITS = FrameLimits()


class FrameDecodeError(ValueError):
    """A frame that is not a readable image; the message names the frame and the reason."""


class OversizedFrameError(FrameDecodeError):
    """A frame over the byte or pixel cap of FrameLimits: refused before decoding."""


def open_frame(data, limits: FrameLimits = DEFAULT_LIMITS, size: int | None = None) -> Image.Image:
    """The decoded image; `size` lets a JPEG decode at a reduced scale still >= size x size.

    Raises OversizedFrameError over the caps, FrameDecodeError (or PIL's own errors) when unreadable.
    """
    if data is None:
        raise FrameDecodeError("null frame")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise FrameDecodeError(f"expected bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise FrameDecodeError("empty bytes")
    if len(data) > limits.max_bytes:
        raise OversizedFrameError(f"{len(data):,} bytes, over the cap of {limits.max_bytes:,}")
    try:
        with warnings.catch_warnings():  # the cap below is stricter than PIL's warning threshold
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(bytes(data)))  # reads the header only
    except Image.DecompressionBombError as error:
        raise OversizedFrameError(_reason(error)) from error
    width, height = image.size
    if width * height > limits.max_pixels:
        pixels = f"{width}x{height} = {width * height:,} pixels"
        raise OversizedFrameError(f"{pixels}, over the cap of {limits.max_pixels:,}")
    if size:
        image.draft(None, (size, size))  # JPEG only (a no-op for other formats): fewer pixels decoded
    image.load()  # decode now: a truncated file fails here, not later
    return image


def _reason(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    # PIL's "cannot identify image file <_io.BytesIO object at 0x...>" carries a memory address: drop it.
    if text.startswith("cannot identify image file"):
        text = "cannot identify image"
    return text


def _frame_error(index: int, error: Exception) -> FrameDecodeError:
    """`error` as a FrameDecodeError naming the frame (an OversizedFrameError stays one)."""
    cls = OversizedFrameError if isinstance(error, OversizedFrameError) else FrameDecodeError
    return cls(f"frame {index}: {_reason(error)}")


def check_frames(frames: list[bytes] | None, limits: FrameLimits = DEFAULT_LIMITS) -> str | None:
    """None when every frame decodes within the limits, else the first problem ("frame 2: cannot identify image")."""
    for index, data in enumerate(frames or []):
        try:
            open_frame(data, limits)
        except Exception as error:  # PIL raises many types (OSError, SyntaxError, DecompressionBombError...)
            return str(_frame_error(index, error))
    return None


def sample_indices(count: int, max_frames: int) -> list[int]:
    """max_frames indices spread evenly over count frames (all of them when count <= max_frames)."""
    if count <= max_frames:
        return list(range(count))
    return [int((i + 0.5) * count / max_frames) for i in range(max_frames)]


def image_to_pixels(image: Image.Image, image_size: int) -> torch.Tensor:
    """[3, image_size, image_size] uint8: the image resized as the model sees it, not yet normalised."""
    image = image.convert("RGB").resize((image_size, image_size), Image.Resampling.BICUBIC)
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return pixels.view(image_size, image_size, 3).permute(2, 0, 1)


def normalize_pixels(pixels: torch.Tensor, mean=DEFAULT_MEAN, std=DEFAULT_STD) -> torch.Tensor:
    """uint8 [..., 3, H, W] -> float (p / 255 - mean) / std, on the pixels' device (a GPU normalises there)."""
    scale, shift = _normalization(tuple(mean), tuple(std))
    # one multiply and one subtract in place: a third of a frame's decode time was here
    return pixels.float().mul_(scale.to(pixels.device)).sub_(shift.to(pixels.device))


def image_to_tensor(image: Image.Image, image_size: int, mean=DEFAULT_MEAN, std=DEFAULT_STD) -> torch.Tensor:
    return normalize_pixels(image_to_pixels(image, image_size), mean, std)


@lru_cache(maxsize=8)
def _normalization(mean: tuple, std: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    std_ = torch.tensor(std).view(3, 1, 1)
    return 1.0 / (255.0 * std_), torch.tensor(mean).view(3, 1, 1) / std_


def decode_frames(frames: list[bytes] | None, image_size: int, max_frames: int,
                  mean=DEFAULT_MEAN, std=DEFAULT_STD, limits: FrameLimits = DEFAULT_LIMITS,
                  normalized: bool = True) -> torch.Tensor:
    """[f, 3, image_size, image_size] float, f <= max_frames; raises FrameDecodeError on a bad frame
    (OversizedFrameError over the limits). Only the sampled frames are opened. `normalized=False`: the
    uint8 pixels (normalize_pixels later, where they are used: a quarter of the bytes to a GPU)."""
    frames = list(frames or [])
    out = []
    for index in sample_indices(len(frames), max_frames):
        try:
            image = open_frame(frames[index], limits, image_size)
        except Exception as error:
            raise _frame_error(index, error) from error
        out.append(image_to_pixels(image, image_size))
    pixels = torch.stack(out) if out else torch.zeros((0, 3, image_size, image_size), dtype=torch.uint8)
    return normalize_pixels(pixels, mean, std) if normalized else pixels


def stack_videos(videos: list[torch.Tensor], max_frames: int, pin_memory: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad videos of 0..max_frames frames to [B, F, 3, H, W] and a [B, F] bool mask (True = real frame).

    F is the longest video in the batch (never more than max_frames), so a text-only batch has F = 0.
    `pin_memory`: the frames are stacked straight into page-locked memory, copied to a GPU without waiting.
    """
    if not videos:
        raise ValueError("stack_videos needs at least one video")
    shape = videos[0].shape[1:]
    for v in videos:
        if v.dim() != 4 or v.shape[1:] != shape:
            raise ValueError(f"every video must be [f, 3, H, W] of one size; got {tuple(v.shape)} and {tuple(shape)}")
    frames_per_video = min(max((v.shape[0] for v in videos), default=0), max_frames)
    frames = torch.zeros((len(videos), frames_per_video, *shape), dtype=videos[0].dtype, pin_memory=pin_memory)
    frame_mask = torch.zeros((len(videos), frames_per_video), dtype=torch.bool)
    for i, v in enumerate(videos):
        n = min(v.shape[0], frames_per_video)
        frames[i, :n] = v[:n]
        frame_mask[i, :n] = True
    return frames, frame_mask


def encode_image(image: Image.Image, format: str = "JPEG") -> bytes:
    """PIL image -> encoded bytes, as stored in the videos table's `frames` column."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format=format)
    return buffer.getvalue()
