"""Video frames: encoded JPEG/PNG bytes -> normalised tensors, and a batch of 0..F frames per video.

A video with more frames than max_frames keeps max_frames of them, evenly spaced; the others are
never decoded (a garbage frame among them is ignored). A video with none (None or []) is a
text-only video: an empty [0, 3, H, W] tensor, scored from its text alone.

A frame is checked against FrameLimits before it is decoded: its byte count, then its width x height
read from the header. PIL's own bomb limit (about 179 MP before it refuses) lets through a
13,000 x 13,000 PNG of half a megabyte that decodes to 500 MB of pixels; the cap here is far lower.
On the host (PIL) a JPEG is decoded at 1/2, 1/4 or 1/8 scale when that still covers the model's image
size. Next to a GPU, JPEGs are decoded on it instead, a chunk's in one batch (decode_on_device): the host
then only reads headers, and PNGs.
"""

from __future__ import annotations

import dataclasses
import io
import json
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import torch
from PIL import Image

DEFAULT_MEAN = (0.5, 0.5, 0.5)  # timm ViT-B/32 augreg weights
DEFAULT_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class FrameLimits:
    max_pixels: int = 40_000_000  # width x height from the header; a larger frame is refused undecoded
    max_bytes: int = 16 * 2**20  # encoded bytes of one frame (video frames are tens to hundreds of KB)

    def to_json(self) -> str:
        """The limits as recorded beside a video's frame problems (video_texts.frame_limits)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


DEFAULT_LIMITS = FrameLimits()


class FrameDecodeError(ValueError):
    """A frame that is not a readable image; the message names the frame and the reason."""


class OversizedFrameError(FrameDecodeError):
    """A frame over the byte or pixel cap of FrameLimits: refused before decoding."""


def read_header(data, limits: FrameLimits = DEFAULT_LIMITS) -> Image.Image:
    """The image with its header read and nothing decoded, once its bytes and width x height pass the caps.

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
    return image


def open_frame(data, limits: FrameLimits = DEFAULT_LIMITS, size: int | None = None) -> Image.Image:
    """The decoded image (read_header's checks first); `size` lets a JPEG decode at a reduced scale still
    >= size x size."""
    image = read_header(data, limits)
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


class FrameProblem(NamedTuple):
    """Why one frame of a video is unusable: its index, whether it is over the limits, and the reason."""

    index: int
    oversized: bool  # over FrameLimits (refused undecoded), else unreadable
    problem: str  # "cannot identify image", "13000x13000 = ... pixels, over the cap of ..."

    def __str__(self) -> str:
        return f"frame {self.index}: {self.problem}"


def frame_problems(frames: list[bytes] | None, limits: FrameLimits = DEFAULT_LIMITS) -> list[FrameProblem]:
    """Every frame's problem, decoded at full scale within the limits; [] when all of them are usable."""
    problems = []
    for index, data in enumerate(frames or []):
        try:
            open_frame(data, limits)
        except Exception as error:  # PIL raises many types (OSError, SyntaxError, DecompressionBombError...)
            problems.append(FrameProblem(index, isinstance(error, OversizedFrameError), _reason(error)))
    return problems


def sample_indices(count: int, max_frames: int) -> list[int]:
    """max_frames indices spread evenly over count frames (all of them when count <= max_frames)."""
    if count <= max_frames:
        return list(range(count))
    return [int((i + 0.5) * count / max_frames) for i in range(max_frames)]


def image_to_pixels(image: Image.Image, image_size: int) -> torch.Tensor:
    """[3, image_size, image_size] uint8: the image resized as the model sees it, not yet normalised."""
    return rgb_tensor(image.convert("RGB").resize((image_size, image_size), Image.Resampling.BICUBIC))


def rgb_tensor(image: Image.Image) -> torch.Tensor:
    """[3, H, W] uint8 of an RGB image, as it is."""
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return pixels.view(image.height, image.width, 3).permute(2, 0, 1)


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
    _, images = _read_sampled(frames, max_frames, lambda data: open_frame(data, limits, image_size))
    out = [image_to_pixels(image, image_size) for image in images]
    pixels = torch.stack(out) if out else torch.zeros((0, 3, image_size, image_size), dtype=torch.uint8)
    return normalize_pixels(pixels, mean, std) if normalized else pixels


# --- decoding on the device: JPEGs in one batch (nvJPEG on a GPU), the rest on the host ---------------


@dataclass
class DeviceFrames:
    """A video's sampled frames made ready for decode_on_device: each checked against the limits, a JPEG kept
    encoded (1-D uint8 bytes), any other format decoded here ([3, S, S] uint8 pixels)."""

    indices: list[int]  # each frame's index among the video's frames (for the reason of a bad one)
    parts: list[torch.Tensor]


def frames_for_device(frames: list[bytes] | None, image_size: int, max_frames: int,
                      limits: FrameLimits = DEFAULT_LIMITS) -> DeviceFrames:
    """The sampled frames as DeviceFrames; raises as decode_frames does for a frame over the limits or whose
    header is unreadable (a JPEG's body is only decoded later, on the device)."""
    return DeviceFrames(*_read_sampled(frames, max_frames, lambda data: _device_part(data, image_size, limits)))


def _device_part(data, image_size: int, limits: FrameLimits) -> torch.Tensor:
    """A JPEG's encoded bytes as 1-D uint8 (its header checked); any other image decoded, [3, S, S] uint8."""
    image = read_header(data, limits)
    if image.format == "JPEG":
        return torch.frombuffer(bytearray(data), dtype=torch.uint8)
    image.load()
    return image_to_pixels(image, image_size)


def _read_sampled(frames: list[bytes] | None, max_frames: int, read) -> tuple[list[int], list]:
    """(the indices sample_indices keeps, `read` of each of those frames' bytes); an error in `read` is
    raised as the FrameDecodeError naming its frame (an OversizedFrameError stays one)."""
    frames = list(frames or [])
    indices, out = sample_indices(len(frames), max_frames), []
    for index in indices:
        try:
            out.append(read(frames[index]))
        except Exception as error:
            raise _frame_error(index, error) from error
    return indices, out


def decode_on_device(videos: list[DeviceFrames], image_size: int, device,
                     limits: FrameLimits = DEFAULT_LIMITS) -> list[torch.Tensor | FrameDecodeError]:
    """Per video, its [f, 3, S, S] uint8 pixels on `device` or the FrameDecodeError of its first bad frame.

    Every JPEG of every video is decoded in one torchvision.io.decode_jpeg call on the device, then resized
    there (bicubic with antialiasing, as PIL's resize) in one call per frame size. Where the batch fails, each
    JPEG is decoded alone, and one the device refuses is tried with PIL on the host: only a frame neither can
    read is a bad frame, named as the host path names it."""
    jpegs = [(v, j) for v, video in enumerate(videos) for j, part in enumerate(video.parts) if part.dim() == 1]
    decoded = _decode_jpegs([videos[v].parts[j] for v, j in jpegs], device, limits)
    pixels = [list(video.parts) for video in videos]
    errors: dict[int, FrameDecodeError] = {}
    for (v, j), image in zip(jpegs, decoded):
        if isinstance(image, Exception):
            errors.setdefault(v, _frame_error(videos[v].indices[j], image))
        pixels[v][j] = image
    fitted = iter(_resize_on_device([p for v, frames in enumerate(pixels) if v not in errors for p in frames],
                                    image_size, device))
    out: list[torch.Tensor | FrameDecodeError] = []
    for v, frames in enumerate(pixels):
        if v in errors:
            out.append(errors[v])
            continue
        mine = [next(fitted) for _ in frames]
        out.append(torch.stack(mine) if mine else torch.zeros((0, 3, image_size, image_size), dtype=torch.uint8,
                                                              device=device))
    return out


def _decode_jpegs(encoded: list[torch.Tensor], device, limits: FrameLimits) -> list:
    """[3, H, W] uint8 per JPEG (on the device, or from the host where the device refused it) or its error."""
    if not encoded:
        return []
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return list(decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device))
    except (RuntimeError, ValueError):  # one bad JPEG fails the batch: find it
        pass
    out = []
    for data in encoded:
        try:
            out.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
        except (RuntimeError, ValueError):
            try:  # a JPEG the device cannot read (some progressive or CMYK files) may still be a good frame
                out.append(rgb_tensor(open_frame(data.numpy().tobytes(), limits).convert("RGB")).to(device))
            except Exception as error:
                out.append(error)
    return out


def _resize_on_device(images: list[torch.Tensor], image_size: int, device) -> list[torch.Tensor]:
    """Each [3, H, W] uint8 image as [3, S, S] uint8 on the device; images of one size resized together."""
    out: list[torch.Tensor | None] = [None] * len(images)
    by_size: dict[tuple, list[int]] = {}
    for i, image in enumerate(images):
        by_size.setdefault(tuple(image.shape), []).append(i)
    for shape, rows in by_size.items():
        batch = torch.stack([images[i].to(device) for i in rows])
        if shape[1:] != (image_size, image_size):
            batch = torch.nn.functional.interpolate(batch.float(), size=(image_size, image_size), mode="bicubic",
                                                    antialias=True, align_corners=False)
            batch = batch.round_().clamp_(0, 255).to(torch.uint8)
        for i, image in zip(rows, batch):
            out[i] = image
    return out


def stack_videos(videos: list[torch.Tensor], max_frames: int, pin_memory: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad videos of 0..max_frames frames to [B, F, 3, H, W] and a [B, F] bool mask (True = real frame).

    F is the longest video in the batch (never more than max_frames), so a text-only batch has F = 0.
    `pin_memory`: host frames are stacked straight into page-locked memory, copied to a GPU without waiting.
    The frames stay on the device of the videos (the mask is on the host).
    """
    if not videos:
        raise ValueError("stack_videos needs at least one video")
    shape = videos[0].shape[1:]
    for v in videos:
        if v.dim() != 4 or v.shape[1:] != shape:
            raise ValueError(f"every video must be [f, 3, H, W] of one size; got {tuple(v.shape)} and {tuple(shape)}")
    frames_per_video = min(max((v.shape[0] for v in videos), default=0), max_frames)
    device = videos[0].device  # frames decoded on a GPU are stacked there
    frames = torch.zeros((len(videos), frames_per_video, *shape), dtype=videos[0].dtype, device=device,
                         pin_memory=pin_memory and device.type == "cpu")
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
