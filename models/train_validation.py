"""The validation a training run reports after each epoch: mIoU of its fused, local-only and
remote predictive outputs at a few delays, on a subset of the validation clips."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from splitcast.data.clips import DatasetMeta
from splitcast.data.metrics import ConfusionMatrix
from splitcast.data.sampling import collate
from splitcast.models.cache import CachedClipDataset, collate_cached
from splitcast.models.devices import autocast, moved
from splitcast.models.losses import LossModel

OUTPUTS = ("fused", "local", "predictive")


@torch.inference_mode()
def validate(
    model: LossModel,
    dataset: Dataset,
    meta: DatasetMeta,
    delays: tuple[float, ...],
    every: int,
    batch_size: int,
    workers: int,
    device: torch.device,
    precision: str,
) -> dict[str, dict[str, float]]:
    """mIoU (label at the local size) per output at each of `delays`, on every `every`-th
    item; the dataset's own delays are restored afterwards."""
    model.eval()
    subset = Subset(dataset, range(0, len(dataset), every))
    cached = isinstance(dataset, CachedClipDataset)
    frames = dataset.frames if cached else dataset
    original = frames.delays
    results: dict[str, dict[str, float]] = {}
    try:
        for delay in delays:
            frames.set_delays(delay)
            matrices = {
                name: ConfusionMatrix(meta.num_classes, meta.ignore_index) for name in OUTPUTS
            }
            loader = DataLoader(
                subset,
                batch_size=batch_size,
                num_workers=workers,
                collate_fn=collate_cached if cached else collate,
            )
            for batch in loader:
                batch = moved(batch, device)
                with autocast(device, precision):
                    outputs, _ = model.outputs(batch)
                for name, matrix in matrices.items():
                    matrix.update(outputs[name].argmax(1), batch.label)
            results[f"d={delay:g}"] = {name: round(m.miou(), 2) for name, m in matrices.items()}
    finally:
        frames.set_delays(original)
    return results
