"""Temporal sampling on tiny clips whose pixels tell which frame they came from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn.functional import max_pool2d
from torch.utils.data import DataLoader

from splitcast.data.clips import (
    ClipDataset,
    ClipWriter,
    DataError,
    DatasetMeta,
    open_clips,
    write_meta,
)
from splitcast.data.sampling import (
    Augmentation,
    Batch,
    TemporalClipDataset,
    collate,
    context_indices,
    valid_targets,
)

META = DatasetMeta(fps=30.0)
LABELLED_B = (2, 8)


def _write(root: Path, clips: dict[str, tuple[list[np.ndarray], dict[int, np.ndarray]]]) -> Path:
    for name, (frames, labels) in clips.items():
        writer = ClipWriter(root, name, frame_format="png")
        for index, frame in enumerate(frames):
            writer.write(index, frame, labels.get(index))
    write_meta(root, META, list(clips))
    return root


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> ClipDataset:
    """Clip "a": 16 frames, all labelled; clip "b": 9 frames labelled at 2 and 8.

    Frame i is filled with grey level i and its label with class i % 19.
    """

    def frame(i: int) -> np.ndarray:
        return np.full((8, 12, 3), i, dtype=np.uint8)

    def label(i: int) -> np.ndarray:
        return np.full((8, 12), i % 19, dtype=np.uint8)

    root = tmp_path_factory.mktemp("indexed")
    _write(
        root,
        {
            "a": ([frame(i) for i in range(16)], {i: label(i) for i in range(16)}),
            "b": ([frame(i) for i in range(9)], {i: label(i) for i in LABELLED_B}),
        },
    )
    return open_clips(root)


def _frame_ids(frames: torch.Tensor) -> list[int]:
    """Grey level of each frame [..., 3, H, W], checking the frame is uniform."""
    levels = torch.round(frames * 255).to(torch.int64).reshape(-1, frames[0].numel())
    assert (levels == levels[:, :1]).all()
    return levels[:, 0].tolist()


@pytest.mark.parametrize(
    ("delay", "stride", "expected"),
    [
        (0, 1, [17, 18, 19, 20]),
        (2, 1, [15, 16, 17, 18]),
        (1, 2, [12, 14, 16, 18]),
        (3, 3, [2, 5, 8, 11]),
        (0.4, 1, [17, 18, 19, 20]),
        (0.5, 1, [16, 17, 18, 19]),  # half rounds up, not to even
        (1.5, 1, [15, 16, 17, 18]),
        (2.5, 1, [14, 15, 16, 17]),  # round() would give 2
        (0.5, 3, [9, 12, 15, 18]),  # 1.5 frames -> 2
        (1.2, 2, [12, 14, 16, 18]),  # 2.4 frames -> 2
        (1.25, 2, [11, 13, 15, 17]),  # 2.5 frames -> 3
    ],
)
def test_context_indices(delay: float, stride: int, expected: list[int]) -> None:
    assert context_indices(20, delay, 4, stride) == expected


def test_context_indices_follow_the_formula_for_whole_delays() -> None:
    for delay in range(6):
        for stride in (1, 2, 3):
            for context in (1, 2, 4):
                expected = [20 - (delay + k) * stride for k in range(context - 1, -1, -1)]
                assert context_indices(20, delay, context, stride) == expected


def test_context_indices_reject_bad_settings() -> None:
    for delay, context, stride in ((-1, 4, 1), (1, 0, 1), (1, 4, 0)):
        with pytest.raises(ValueError):
            context_indices(10, delay, context, stride)


def test_valid_targets_exclude_negative_indices(indexed: ClipDataset) -> None:
    a, b = indexed.clips
    assert valid_targets(a, 2, 4, 2) == list(range(10, 16))  # 10 - (2 + 3) * 2 = 0
    assert valid_targets(a, 0, 1, 1) == list(range(16))
    assert valid_targets(b, 1.5, 4, 1) == [8]  # 2 needs frame -3
    dataset = TemporalClipDataset(indexed, context=4, stride=1, delays=(0, 3))
    assert [(dataset.clips[c].name, t) for c, t in dataset.items] == [
        *(("a", t) for t in range(6, 16)),
        ("b", 8),
    ]
    with pytest.raises(DataError, match="labelled frame with index >= 18"):
        TemporalClipDataset(indexed, context=4, stride=3, delays=3)


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("delay", [0, 1, 1.5, 2])
def test_items_hold_the_right_frames(indexed: ClipDataset, delay: float, stride: int) -> None:
    dataset = TemporalClipDataset(indexed, context=3, stride=stride, delays=delay)
    assert len(dataset) > 0
    for index in range(len(dataset)):
        sample = dataset[index]
        t = sample.target
        assert (sample.clip, t) == (
            dataset.clips[dataset.items[index][0]].name,
            dataset.items[index][1],
        )
        assert _frame_ids(sample.remote) == context_indices(t, delay, 3, stride)
        assert min(_frame_ids(sample.remote)) >= 0
        assert _frame_ids(sample.local[None]) == [t]
        assert sample.label.dtype == torch.int64
        assert (sample.label == t % 19).all()
        assert sample.delay.dtype == torch.float32 and sample.delay.shape == ()
        assert sample.delay.item() == delay


def test_drawn_delays_are_in_range_and_reproducible(indexed: ClipDataset) -> None:
    def draws(seed: int, epoch: int, continuous: bool = False) -> list[float]:
        dataset = TemporalClipDataset(
            indexed, context=2, delays=(1, 3), continuous=continuous, seed=seed
        )
        dataset.set_epoch(epoch)
        samples = [dataset[i] for i in range(len(dataset))]
        for sample in samples:
            ids = _frame_ids(sample.remote)
            assert ids == context_indices(sample.target, sample.delay.item(), 2, 1)
        return [s.delay.item() for s in samples]

    whole = draws(seed=0, epoch=0)
    assert set(whole) == {1.0, 2.0, 3.0}
    assert draws(seed=0, epoch=0) == whole
    assert draws(seed=0, epoch=1) != whole
    assert draws(seed=1, epoch=0) != whole
    real = draws(seed=0, epoch=0, continuous=True)
    assert all(1 <= d <= 3 for d in real)
    assert not any(float(d).is_integer() for d in real)


def test_delay_settings_are_checked(indexed: ClipDataset) -> None:
    for delays in ((3, 1), (-1, 2), (0.2, 0.8)):
        with pytest.raises(ValueError):
            TemporalClipDataset(indexed, context=1, delays=delays)
    dataset = TemporalClipDataset(indexed, context=1, delays=(0.2, 0.8), continuous=True)
    assert dataset.max_delay == 0.8


@pytest.fixture(scope="module")
def pattern(tmp_path_factory: pytest.TempPathFactory) -> ClipDataset:
    """One clip of 6 identical grey frames: bright (class 1) bottom-left, dark (class 0) else."""
    height, width = 48, 64
    label = np.zeros((height, width), dtype=np.uint8)
    label[height // 4 :, : width // 2] = 1
    frame = np.repeat(np.where(label == 1, 220, 40).astype(np.uint8)[..., None], 3, axis=2)
    root = tmp_path_factory.mktemp("pattern")
    _write(root, {"p": ([frame] * 6, {5: label})})
    return open_clips(root)


def test_augmentation_is_the_same_for_every_frame_and_the_label(pattern: ClipDataset) -> None:
    dataset = TemporalClipDataset(pattern, context=4, delays=(0, 2), augment=True)
    orientations = set()
    for epoch in range(16):
        dataset.set_epoch(epoch)
        sample = dataset[0]
        for frame in sample.remote:
            assert torch.equal(frame, sample.local)
        label = sample.label
        assert set(label.unique().tolist()) <= {0, 1, 255}
        padded = label == 255
        # Away from the frame's border (where resizing blends), padding is exactly black.
        near_frame = max_pool2d((~padded).float()[None], 5, stride=1, padding=2)[0] > 0
        assert (sample.local[:, padded & ~near_frame] == 0).all()
        bright = sample.local.mean(dim=0) > 0.4
        mismatch = (bright != (label == 1))[~padded].float().mean().item()
        assert mismatch < 0.05, f"epoch {epoch}: image and label disagree on {mismatch:.1%}"
        columns = torch.arange(label.shape[1]).expand_as(label).float()
        flipped = columns[label == 1].mean() > columns[label == 0].mean()
        orientations.add(bool(flipped))
    assert orientations == {False, True}


def test_augmentation_is_random_across_epochs_and_reproducible(pattern: ClipDataset) -> None:
    dataset = TemporalClipDataset(pattern, delays=1, augment=Augmentation(hue=0.05))
    first = dataset[0]
    assert torch.equal(dataset[0].local, first.local)
    dataset.set_epoch(1)
    assert not torch.equal(dataset[0].local, first.local)


def test_output_sizes_and_types(pattern: ClipDataset) -> None:
    dataset = TemporalClipDataset(
        pattern,
        context=3,
        delays=(0, 2),
        remote_size=(24, 32),
        local_size=(18, 30),
        label_size=(12, 16),
        augment=True,
    )
    for epoch in range(4):
        dataset.set_epoch(epoch)
        sample = dataset[0]
        assert sample.remote.shape == (3, 3, 24, 32)
        assert sample.local.shape == (3, 18, 30)
        assert sample.label.shape == (12, 16)
        for image in (sample.remote, sample.local):
            assert image.dtype == torch.float32
            assert image.min() >= 0 and image.max() <= 1
        assert sample.label.dtype == torch.int64
        assert set(sample.label.unique().tolist()) <= {0, 1, 255}


def test_dataloader_batches(indexed: ClipDataset) -> None:
    dataset = TemporalClipDataset(
        indexed, context=2, stride=2, delays=(0, 1), remote_size=(4, 6), local_size=(8, 12)
    )
    loader = DataLoader(dataset, batch_size=3, num_workers=0, collate_fn=collate)
    batches = list(loader)
    assert sum(len(b.clips) for b in batches) == len(dataset)
    batch = batches[0]
    assert isinstance(batch, Batch)
    assert batch.remote.shape == (3, 2, 3, 4, 6)
    assert batch.local.shape == (3, 3, 8, 12)
    assert batch.label.shape == (3, 8, 12)
    assert batch.delay.shape == (3,)
    assert batch.targets == [t for _, t in dataset.items[:3]]
    assert batch.to("cpu").remote.shape == batch.remote.shape
