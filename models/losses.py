"""The four Dedelayed losses of one batch, and per-class loss weights.

- fused: local model with the downlink features added, against label t;
- local: the same local model with no downlink (keeps the fallback good);
- predictive: the remote model's own delay-conditioned logits, against label t;
- image_only: the remote model on frame t alone at d = 0 (the conventional baseline).

With a learned downlink bottleneck the fused branch sees the features after quantisation, and
the loss adds `rate_lambda` x the entropy model's estimated bits per frame and
`distortion_weight` x the reconstruction's mean squared error relative to the features'
variance (the fused loss alone is a weak signal when fusion gains little, and the rate term
then wins by sending nothing useful).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from splitcast.data.clips import ClipDataset, DataError
from splitcast.data.sampling import Batch
from splitcast.models.cache import CachedBatch
from splitcast.models.layers import resize
from splitcast.models.local import Features
from splitcast.models.registry import SplitSystem

LOSSES = ("fused", "local", "predictive", "image_only")


class LossModel(nn.Module):
    """Computes the four losses for a batch; one module so DDP sees every trained weight."""

    def __init__(
        self,
        system: SplitSystem,
        weights: dict[str, float],
        ignore_index: int,
        class_weights: torch.Tensor | None = None,
        rate_lambda: float = 0.0,
        distortion_weight: float = 0.0,
        remote_top_from: int | None = None,
        fused_dropout: float = 0.0,
    ) -> None:
        """`remote_top_from`: the stride above which the remote backbone is recomputed from
        the cached features (trained unless frozen); None: every cached output is used as
        stored."""
        super().__init__()
        self.remote = system.remote
        self.remote_top_from = remote_top_from
        self.fused_dropout = fused_dropout
        self.local = system.local
        self.bottleneck = system.bottleneck
        self.config = system.config
        self.weights = weights
        self.rate_lambda = rate_lambda
        self.distortion_weight = distortion_weight
        self.ignore_index = ignore_index
        self.register_buffer("class_weights", class_weights, persistent=False)

    def encodings(self, batch: Batch | CachedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Remote encodings [B, C, K, h, w] of the context and [B, C, h, w] of frame t."""
        if isinstance(batch, CachedBatch):
            batch_size, steps = batch.features[0].shape[:2]
            features = [f.flatten(0, 1) for f in batch.features]
            if self.remote_top_from is not None:
                features = self.remote.backbone.recompute_from(self.remote_top_from, features)
            flat = self.remote.encode_features(features)
        else:
            batch_size, steps = batch.remote.shape[0], batch.remote.shape[1] + 1
            frames = torch.cat([batch.remote, batch.remote_now.unsqueeze(1)], dim=1)
            flat = self.remote.encode(frames.flatten(0, 1))
        grouped = flat.view(batch_size, steps, *flat.shape[1:])
        return grouped[:, :-1].transpose(1, 2), grouped[:, -1]

    def outputs(
        self, batch: Batch | CachedBatch
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Logits of every branch at the label size, and with a bottleneck its estimated bits
        per item and relative distortion."""
        size = tuple(batch.label.shape[-2:])
        local_size = tuple(batch.local.shape[-2:])
        context, now = self.encodings(batch)
        heads = self.remote.outputs(context, batch.delay, local_size)
        downlink, predictive = heads["downlink"], heads["logits"]
        codec: dict[str, torch.Tensor] = {}
        if self.bottleneck is not None:
            target = downlink.detach()
            downlink, codec["bits"] = self.bottleneck(downlink)
            codec["distortion"] = F.mse_loss(downlink, target) / target.var().clamp_min(1e-8)
        features = self.local.encode(batch.local)
        logits = {
            "fused": resize(self.local.decode(self._dropped(features), downlink), size),
            "local": resize(self.local.decode(features, None), size),
            "predictive": resize(predictive, size),
            "image_only": resize(self.remote.image_only_from_encoding(now), size),
        }
        return logits, codec

    def _dropped(self, features: Features) -> Features:
        """The local features with channel dropout (in training, when asked for): the fused
        pass then cannot rely on them alone and learns to use the downlink."""
        if not (self.training and self.fused_dropout):
            return features
        return tuple(None if f is None else F.dropout2d(f, self.fused_dropout) for f in features)

    def forward(self, batch: Batch | CachedBatch) -> tuple[torch.Tensor, dict[str, float]]:
        outputs, codec = self.outputs(batch)
        parts = {
            name: F.cross_entropy(
                logits, batch.label, weight=self.class_weights, ignore_index=self.ignore_index
            )
            for name, logits in outputs.items()
        }
        total = sum(self.weights.get(name, 0.0) * loss for name, loss in parts.items())
        report = {name: float(loss.detach()) for name, loss in parts.items()}
        if codec:
            bits = codec["bits"].mean()
            total = total + self.rate_lambda * bits + self.distortion_weight * codec["distortion"]
            report["bits"] = float(bits.detach())
            report["distortion"] = float(codec["distortion"].detach())
        return total, report


def class_weights(clips: ClipDataset, scheme: str, progress: bool = False) -> torch.Tensor | None:
    """Per-class loss weights from the training labels' class frequencies.

    `inverse-sqrt`: (median frequency / frequency) ** 0.5, clipped to [0.2, 10]: rare classes
    (poles, signs, people, walls) would otherwise barely move the loss, and the model would
    learn never to predict them. Classes absent from the labels get weight 0. `none`: plain
    cross-entropy.
    """
    if scheme == "none":
        return None
    if scheme != "inverse-sqrt":
        raise ValueError(f"unknown class weighting {scheme!r}; choose inverse-sqrt or none")
    meta = clips.meta
    counts = np.zeros(meta.num_classes, dtype=np.int64)
    for clip in tqdm(clips.clips, desc="class frequencies", unit="clip", disable=not progress):
        for index in clip.labelled:
            label = clip.label(index)
            counts += np.bincount(label[label != meta.ignore_index], minlength=meta.num_classes)[
                : meta.num_classes
            ]
    present = counts > 0
    if not present.any():
        raise DataError("the training labels hold no class ids")
    frequency = counts / counts.sum()
    median = np.median(frequency[present])
    weights = np.where(
        present, np.clip((median / np.maximum(frequency, 1e-12)) ** 0.5, 0.2, 10.0), 0.0
    )
    return torch.tensor(weights, dtype=torch.float32)
