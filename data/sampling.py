"""Temporal sampling: which frames the remote and local models see, and joint augmentation.

Time is counted in ticks, i.e. frames at the data's frame rate. For a local frame t, a delay of
d ticks, K context frames and a frame stride s (the "speedup": s > 1 means more motion per
tick), the remote model sees frames t-(d+K-1)s, ..., t-(d+1)s, t-ds (oldest first), the local
model sees frame t and the target is label t. A fractional d is allowed: the frame offset d*s
is rounded half up to a whole frame while the model is still conditioned on the float d.

Every random choice of an item (its delay and its augmentation) derives from (seed, epoch,
index) only, so a sample is reproducible whatever the number of DataLoader workers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from splitcast.data.classes import IGNORE_INDEX
from splitcast.data.clips import Clip, ClipDataset, DataError

Size = tuple[int, int]
"""(height, width) in pixels."""


def frame_offset(delay: float, stride: int) -> int:
    """Frames between the local frame and the newest remote frame.

    The offset is delay*stride rounded half up (floor(x + 0.5)): 0.5 -> 1, 1.5 -> 2, 2.5 -> 3.
    Python's round() would send halves to the even neighbour, making 0.5 and 1.5 ticks behave
    differently for no physical reason; half up also errs towards the staler frame, which is
    the safe side for a delay-conditioned model.
    """
    if delay < 0:
        raise ValueError(f"delay must be >= 0 ticks, got {delay}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    return math.floor(delay * stride + 0.5)


def context_indices(t: int, delay: float, context: int, stride: int) -> list[int]:
    """Frame indices the remote model sees for local frame t, oldest first (may be negative).

    The newest is t - frame_offset(delay, stride); the others step back by `stride` frames.
    """
    if context < 1:
        raise ValueError(f"context must be >= 1 frame, got {context}")
    newest = t - frame_offset(delay, stride)
    return [newest - k * stride for k in range(context - 1, -1, -1)]


def valid_targets(clip: Clip, max_delay: float, context: int, stride: int) -> list[int]:
    """Labelled frames whose remote context at `max_delay` lies inside the clip.

    The offset grows with the delay, so these targets are valid for every smaller delay too.
    """
    return [t for t in clip.labelled if context_indices(t, max_delay, context, stride)[0] >= 0]


@dataclass
class Sample:
    """One training or evaluation example."""

    remote: torch.Tensor
    """float [K, 3, Hr, Wr] in [0, 1], oldest frame first."""
    remote_now: torch.Tensor
    """float [3, Hr, Wr]: frame t at the remote size (the image-only and oracle input)."""
    local: torch.Tensor
    """float [3, Hl, Wl] in [0, 1]: frame t."""
    label: torch.Tensor
    """int64 [Hlab, Wlab]: class ids of frame t, ignore index where unknown or padded."""
    delay: torch.Tensor
    """float32 scalar: the delay in ticks the remote model is conditioned on."""
    clip: str
    target: int


@dataclass
class Batch:
    """Samples stacked along a new first dimension by `collate`."""

    remote: torch.Tensor
    remote_now: torch.Tensor
    local: torch.Tensor
    label: torch.Tensor
    delay: torch.Tensor
    clips: list[str]
    targets: list[int]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return self._map_tensors(lambda x: x.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """Called by DataLoader(pin_memory=True)."""
        return self._map_tensors(torch.Tensor.pin_memory)

    def _map_tensors(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        return replace(
            self,
            **{
                f.name: fn(getattr(self, f.name))
                for f in fields(self)
                if isinstance(getattr(self, f.name), torch.Tensor)
            },
        )


def collate(samples: Sequence[Sample]) -> Batch:
    """DataLoader collate_fn for `Sample` (torch's default collate does not know dataclasses)."""
    return Batch(
        remote=torch.stack([s.remote for s in samples]),
        remote_now=torch.stack([s.remote_now for s in samples]),
        local=torch.stack([s.local for s in samples]),
        label=torch.stack([s.label for s in samples]),
        delay=torch.stack([s.delay for s in samples]),
        clips=[s.clip for s in samples],
        targets=[s.target for s in samples],
    )


class RandomScaleCrop(v2.Transform):
    """Zoom by a random factor and take a random window of the same aspect ratio.

    The window is the frame size divided by the factor. Zooming out (factor < 1) makes it larger
    than the frame, and the border is filled with 0 in images and the ignore index in masks.
    The window is not resized here: the resize to the output size that follows does the zoom,
    so each pixel is resampled once.
    """

    def __init__(self, scale: tuple[float, float], ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        if not 0 < scale[0] <= scale[1]:
            raise ValueError(f"scale range must satisfy 0 < min <= max, got {scale}")
        self.scale = scale
        self.ignore_index = ignore_index

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        factor = float(torch.empty(()).uniform_(*self.scale))
        window_h = max(1, round(height / factor))
        window_w = max(1, round(width / factor))
        return {
            "top": _random_start(height, window_h),
            "left": _random_start(width, window_w),
            "height": window_h,
            "width": window_w,
        }

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        top, left = params["top"], params["left"]
        height, width = params["height"], params["width"]
        frame_h, frame_w = inpt.shape[-2:]
        padding = [
            max(0, -left),
            max(0, -top),
            max(0, left + width - frame_w),
            max(0, top + height - frame_h),
        ]
        if any(padding):
            fill = self.ignore_index if isinstance(inpt, tv_tensors.Mask) else 0
            inpt = F.pad(inpt, padding, fill=fill)
            left += padding[0]
            top += padding[1]
        return F.crop(inpt, top, left, height, width)


def _random_start(size: int, window: int) -> int:
    """Window start: inside the frame when zooming in, around the whole frame when zooming out."""
    low, high = sorted((0, size - window))
    return int(torch.randint(low, high + 1, ()))


@dataclass(frozen=True)
class Augmentation:
    """Strengths of the joint augmentation; colour jitter factors are drawn in [1-x, 1+x].

    Hue jitter (a shift drawn in [-hue, hue]) is off by default: torchvision's hue adjustment
    goes through HSV and costs about twice the rest of the sampling pipeline on a CPU.
    """

    scale: tuple[float, float] = (0.75, 1.5)
    flip: float = 0.5
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    hue: float = 0.0

    def build(self, ignore_index: int = IGNORE_INDEX) -> v2.Transform:
        """One transform for a Video (all frames) and a Mask: one set of random parameters.

        Colour jitter comes first so that it sees only real pixels (contrast uses the image
        mean) and padding stays exactly 0.
        """
        return v2.Compose(
            [
                v2.ColorJitter(self.brightness, self.contrast, self.saturation, self.hue),
                RandomScaleCrop(self.scale, ignore_index),
                v2.RandomHorizontalFlip(self.flip),
            ]
        )


class TemporalClipDataset(Dataset[Sample]):
    """(clip, labelled frame) pairs with their remote context, delay and label.

    `delays` is a fixed delay in ticks or a (min, max) range drawn per item: uniformly over the
    whole ticks in the range by default (as the paper trains), or uniformly over the reals when
    `continuous`. Items are the labelled frames valid for the largest delay that can be
    drawn.
    Sizes are (height, width); None keeps the clip's native size. Frames are read from the clip
    on every access, never cached, so memory stays flat however large the split is.

    Random draws depend on (seed, epoch, index); call `set_epoch` before each epoch to get new
    draws (DataLoader workers see it when they are started, i.e. not with persistent_workers).
    """

    def __init__(
        self,
        clips: ClipDataset,
        *,
        context: int = 4,
        stride: int = 1,
        delays: float | tuple[float, float] = (0.0, 5.0),
        continuous: bool = False,
        remote_size: Size | None = None,
        local_size: Size | None = None,
        label_size: Size | None = None,
        augment: bool | Augmentation = False,
        seed: int = 0,
    ) -> None:
        for name, size in (("remote", remote_size), ("local", local_size), ("label", label_size)):
            if size is not None and (len(size) != 2 or min(size) < 1):
                raise ValueError(f"{name}_size must be (height, width) > 0, got {size}")
        self.meta = clips.meta
        self.clips = list(clips.clips)
        self.context = context
        self.stride = stride
        self.delays = delays
        self.continuous = continuous
        self.remote_size = remote_size
        self.local_size = local_size
        self.label_size = label_size
        self.seed = seed
        self.epoch = 0
        self._delay_range = _delay_range(delays, continuous)
        if augment is True:
            augment = Augmentation()
        self._augment = augment.build(self.meta.ignore_index) if augment else None
        self.max_delay = self._delay_range[1]
        self.items = [
            (clip_index, t)
            for clip_index, clip in enumerate(self.clips)
            for t in valid_targets(clip, self.max_delay, context, stride)
        ]
        if not self.items:
            needed = frame_offset(self.max_delay, stride) + (context - 1) * stride
            raise DataError(
                f"none of the {len(self.clips)} clips has a labelled frame with index >= "
                f"{needed}, needed for {context} context frames at stride {stride} and "
                f"delay {self.max_delay:g}: use longer clips or a smaller largest delay (for "
                "train and fit, the top of --delays, which is also the answer horizon)"
            )

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_delays(self, delays: float | tuple[float, float]) -> None:
        """Change the delay (range) without rebuilding the items (e.g. to score one delay);
        it must not exceed the largest delay the items were chosen for."""
        low, high = _delay_range(delays, self.continuous)
        if high > self.max_delay:
            raise ValueError(
                f"delay {high:g} exceeds {self.max_delay:g}, the largest these items allow"
            )
        self.delays = delays
        self._delay_range = (low, high)

    def __getitem__(self, index: int) -> Sample:
        clip_index, t = self.items[index]
        clip = self.clips[clip_index]
        rng = self.rng_for(index)
        context, delay = self.draw_context(rng, t)
        indices = [*context, t]
        frames = [clip.frame(i) for i in indices]
        label = clip.label(t)
        native = frames[-1].shape[:2]
        if any(f.shape != frames[-1].shape for f in frames):
            shapes = sorted({f.shape for f in frames})
            raise DataError(f"clip {clip.name}: frames {indices} differ in size: {shapes}")
        if label is None or label.shape != native:
            got = None if label is None else label.shape
            raise DataError(f"clip {clip.name}: label {t} is {got}, expected {native}")
        # Float before augmenting: torchvision's colour ops are several times faster on
        # contiguous float32 than on uint8 (they convert internally at every step).
        pixels = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()
        video = tv_tensors.Video(F.to_dtype(pixels, torch.float32, scale=True))
        mask = tv_tensors.Mask(torch.tensor(label))
        if self._augment is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(rng.integers(2**63)))
                video, mask = self._augment(video, mask)
        return Sample(
            remote=_to_output(video[: self.context], self.remote_size or native),
            remote_now=_to_output(video[self.context], self.remote_size or native),
            local=_to_output(video[self.context], self.local_size or native),
            label=_label_output(mask, self.label_size or native),
            delay=torch.tensor(delay, dtype=torch.float32),
            clip=clip.name,
            target=t,
        )

    def rng_for(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def draw_context(self, rng: np.random.Generator, t: int) -> tuple[list[int], float]:
        """An item's remote frame indices (oldest first) and its delay in ticks."""
        delay = self.draw_delay(rng)
        return context_indices(t, delay, self.context, self.stride), delay

    def draw_delay(self, rng: np.random.Generator) -> float:
        low, high = self._delay_range
        if low == high:
            return low
        if self.continuous:
            return float(rng.uniform(low, high))
        return float(rng.integers(int(low), int(high) + 1))


def _delay_range(delays: float | tuple[float, float], continuous: bool) -> tuple[float, float]:
    """(lowest, highest) delay that can be drawn; whole ticks unless continuous."""
    low, high = (delays, delays) if isinstance(delays, int | float) else delays
    if not 0 <= low <= high:
        raise ValueError(f"delays must satisfy 0 <= min <= max ticks, got {delays}")
    if continuous or low == high:
        return float(low), float(high)
    whole = (math.ceil(low), math.floor(high))
    if whole[0] > whole[1]:
        raise ValueError(f"no whole tick in delay range {delays}; pass continuous=True")
    return float(whole[0]), float(whole[1])


def _label_output(mask: tv_tensors.Mask, size: Size) -> torch.Tensor:
    """uint8 mask -> int64 class ids at `size` (a Mask is always resized with nearest)."""
    if tuple(mask.shape[-2:]) != tuple(size):
        mask = F.resize(mask, list(size))
    return mask.as_subclass(torch.Tensor).long()


def _to_output(frames: torch.Tensor, size: Size) -> torch.Tensor:
    """Frames [..., 3, H, W] at `size`, antialiased when shrinking, as a plain tensor."""
    if tuple(frames.shape[-2:]) != tuple(size):
        frames = F.resize(frames, list(size), antialias=True)
    return frames.as_subclass(torch.Tensor)
