"""Cached outputs of a frozen remote backbone, so CPU training encodes every frame once.

Each frame is resized to the remote input size and passed through the uplink image codec
(JPEG or WebP at the configured quality) exactly as a live edge would send it, then through
the frozen backbone. The stride 8/16/32 feature maps are stored as float16 arrays on disk
(numpy memmaps, shared by DataLoader workers) under a key that changes with the data, the
backbone weights, the size and the uplink settings, so a stale cache is never reused.

`CachedClipDataset` yields those features for the K context frames and frame t in place of
images. Geometric augmentation is limited to horizontal flips (applied to features, local
frame and label alike, so fusion stays aligned); colour jitter touches the local frame only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from splitcast.data.clips import ClipDataset
from splitcast.data.images import decode_image, encode_image, fit
from splitcast.data.sampling import TemporalClipDataset
from splitcast.models.backbones import PyramidBackbone

LEVELS = ("f8", "f16", "f32")


def uplink_round_trip(
    rgb: np.ndarray, size: tuple[int, int], fmt: str, quality: int
) -> tuple[np.ndarray, int]:
    """What the server decodes: the frame resized to `size` and coded as the edge codes it,
    and the number of bytes that took."""
    data = encode_image(fit(rgb, size), fmt, quality)
    return decode_image(data, fmt, size[1], size[0]), len(data)


def _state_fingerprint(module: torch.nn.Module, skip: tuple[str, ...] = ()) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        if name.startswith(skip):
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


class EncodingCache:
    """Read access to a built cache: features of frame `index` of clip `clip`."""

    def __init__(self, folder: Path) -> None:
        index = json.loads((folder / "index.json").read_text())
        self.folder = folder
        self.offsets: dict[str, int] = index["offsets"]
        self.levels = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in LEVELS}

    def features(self, clip: str, indices: list[int], flip: bool) -> list[torch.Tensor]:
        """One tensor per level, [len(indices), C, h, w] float32."""
        rows = [self.offsets[clip] + i for i in indices]
        out = []
        for name in LEVELS:
            array = np.asarray(self.levels[name][rows], dtype=np.float32)
            if flip:
                array = array[..., ::-1]
            out.append(torch.from_numpy(np.ascontiguousarray(array)))
        return out


@torch.inference_mode()
def build_cache(
    dataset: ClipDataset,
    backbone: PyramidBackbone,
    size: tuple[int, int],
    uplink_format: str,
    uplink_quality: int,
    root: Path,
    recomputed_from: int | None = None,
    batch_size: int = 1,
    progress: bool = True,
) -> EncodingCache:
    """Encode every frame of `dataset` (or reuse an identical earlier cache) under `root`.

    `recomputed_from`: the stride above which the reader recomputes the backbone itself (a
    model whose upper stages train); the key then ignores those stages' weights, so models
    that differ only there share one cache, and its outputs above that stride are never read.
    Batch 1 is the default: on a CPU, EfficientNet inference costs about twice as much per
    frame at batch 8 as at batch 1 (memory traffic).
    """
    skip: tuple[str, ...] = ()
    if recomputed_from is not None:
        upper = {m for stage in backbone.stages_from(recomputed_from) for m in stage}
        skip = tuple(f"{name}." for name, m in backbone.named_modules() if m in upper)
    key = {
        "data": str(dataset.root.resolve()) if dataset.root else None,
        "clips": [(c.name, c.num_frames) for c in dataset.clips],
        "backbone": _state_fingerprint(backbone, skip),
        "size": list(size),
        "uplink": [uplink_format, uplink_quality],
    }
    if recomputed_from is not None:
        key["recomputed_from"] = recomputed_from
    key_source = json.dumps(key, sort_keys=True)
    folder = root / hashlib.sha256(key_source.encode()).hexdigest()[:16]
    if (folder / "index.json").is_file():
        return EncodingCache(folder)
    folder.mkdir(parents=True, exist_ok=True)
    backbone = backbone.eval()
    offsets, total = {}, 0
    for clip in dataset.clips:
        offsets[clip.name] = total
        total += clip.num_frames
    probe = backbone(torch.zeros(1, 3, *size))
    arrays = {
        name: np.lib.format.open_memmap(
            folder / f"{name}.npy.partial", mode="w+", dtype=np.float16, shape=(total, *f.shape[1:])
        )
        for name, f in zip(LEVELS, probe, strict=True)
    }
    jobs = [(clip, i) for clip in dataset.clips for i in range(clip.num_frames)]
    bar = tqdm(total=len(jobs), desc="encode frames", unit="frame", disable=not progress)
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        images = [
            uplink_round_trip(clip.frame(i), size, uplink_format, uplink_quality)[0]
            for clip, i in chunk
        ]
        batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
        for name, features in zip(LEVELS, backbone(batch), strict=True):
            arrays[name][start : start + len(chunk)] = features.numpy().astype(np.float16)
        bar.update(len(chunk))
    bar.close()
    for name, array in arrays.items():
        array.flush()
        (folder / f"{name}.npy.partial").rename(folder / f"{name}.npy")
    (folder / "index.json").write_text(
        json.dumps({"offsets": offsets, "key": json.loads(key_source)}, indent=1)
    )
    return EncodingCache(folder)


@dataclass
class CachedSample:
    features: list[torch.Tensor]
    """Per level [K + 1, C, h, w]: the K context frames oldest first, then frame t."""
    local: torch.Tensor
    label: torch.Tensor
    delay: torch.Tensor


@dataclass
class CachedBatch:
    features: list[torch.Tensor]
    """Per level [B, K + 1, C, h, w]."""
    local: torch.Tensor
    label: torch.Tensor
    delay: torch.Tensor


def collate_cached(samples: list[CachedSample]) -> CachedBatch:
    return CachedBatch(
        features=[
            torch.stack([s.features[level] for s in samples]) for level in range(len(LEVELS))
        ],
        local=torch.stack([s.local for s in samples]),
        label=torch.stack([s.label for s in samples]),
        delay=torch.stack([s.delay for s in samples]),
    )


class CachedClipDataset(Dataset[CachedSample]):
    """Items, delays and local frames as `TemporalClipDataset`; remote frames as cached features."""

    def __init__(
        self, frames: TemporalClipDataset, cache: EncodingCache, flip: bool, jitter: float
    ) -> None:
        self.frames = frames
        self.cache = cache
        self.flip = flip
        self.jitter = jitter

    def __len__(self) -> int:
        return len(self.frames)

    def set_epoch(self, epoch: int) -> None:
        self.frames.set_epoch(epoch)

    def __getitem__(self, index: int) -> CachedSample:
        source = self.frames
        clip_index, t = source.items[index]
        clip = source.clips[clip_index]
        rng = source.rng_for(index)
        context, delay = source.draw_context(rng, t)
        flip = bool(self.flip and rng.random() < 0.5)
        indices = [*context, t]
        rgb = clip.frame(t)
        label = clip.label(t)
        local_h, local_w = source.local_size or rgb.shape[:2]
        label_h, label_w = source.label_size or rgb.shape[:2]
        local = fit(rgb, (local_h, local_w)).astype(np.float32) / 255.0
        if self.jitter:
            gain, bias = (
                rng.uniform(1 - self.jitter, 1 + self.jitter),
                rng.uniform(-self.jitter, self.jitter) / 4,
            )
            local = np.clip(local * gain + bias, 0.0, 1.0)
        label = cv2.resize(label, (label_w, label_h), interpolation=cv2.INTER_NEAREST)
        if flip:
            local, label = local[:, ::-1], label[:, ::-1]
        return CachedSample(
            features=self.cache.features(clip.name, indices, flip),
            local=torch.from_numpy(np.ascontiguousarray(local.transpose(2, 0, 1))),
            label=torch.from_numpy(np.ascontiguousarray(label)).long(),
            delay=torch.tensor(delay, dtype=torch.float32),
        )
