"""ConfusionMatrix against cases worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from splitcast.data.metrics import ConfusionMatrix


def test_perfect_prediction_scores_100() -> None:
    target = np.array([[0, 1, 2], [2, 1, 0]])
    matrix = ConfusionMatrix(3)
    matrix.update(target.copy(), target)
    assert matrix.miou() == pytest.approx(100.0)
    assert matrix.iou().tolist() == pytest.approx([100.0, 100.0, 100.0])


def test_three_by_three_by_hand() -> None:
    # target      pred
    # 0 0 1       0 1 1
    # 1 1 2       1 2 2
    # 2 2 2       2 2 0
    # class 0: TP 1 (0,0); FP 1 (2,2); FN 1 (0,1)          -> IoU 1/3
    # class 1: TP 2 (0,2),(1,0); FP 1 (0,1); FN 1 (1,1)    -> IoU 2/4
    # class 2: TP 3 (1,2),(2,0),(2,1); FP 1 (1,1); FN 1 (2,2) -> IoU 3/5
    # mIoU = (1/3 + 1/2 + 3/5) / 3 = 43/90
    target = np.array([[0, 0, 1], [1, 1, 2], [2, 2, 2]])
    pred = np.array([[0, 1, 1], [1, 2, 2], [2, 2, 0]])
    matrix = ConfusionMatrix(3)
    matrix.update(pred, target)
    assert matrix.counts.tolist() == [[1, 1, 0], [0, 2, 1], [1, 0, 3]]
    assert matrix.iou().tolist() == pytest.approx([100 / 3, 50.0, 60.0])
    assert matrix.miou() == pytest.approx(100 * 43 / 90)


def test_ignored_pixels_are_skipped_whatever_is_predicted() -> None:
    target = np.array([[0, 255], [1, 255]])
    matrix = ConfusionMatrix(2)
    matrix.update(np.array([[0, 1], [1, 0]]), target)
    assert matrix.counts.sum() == 2
    assert matrix.miou() == pytest.approx(100.0)


def test_class_in_neither_labels_nor_predictions_is_excluded() -> None:
    # Classes 2 and 3 never occur: the mean is over classes 0 and 1 only.
    # class 0: TP 1, FN 1 -> 1/2; class 1: TP 2, FP 1 -> 2/3; mean 7/12
    matrix = ConfusionMatrix(4, class_names=["a", "b", "c", "d"])
    matrix.update(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]))
    iou = matrix.iou()
    assert math.isnan(iou[2]) and math.isnan(iou[3])
    assert matrix.miou() == pytest.approx(100 * 7 / 12)
    per_class = matrix.per_class()
    assert list(per_class) == ["a", "b", "c", "d"]
    assert per_class["b"] == pytest.approx(200 / 3)


def test_class_labelled_but_never_predicted_counts_as_zero() -> None:
    # Class 1 is labelled once and predicted as 0; class 2 never occurs (excluded):
    # class 0: TP 2, FP 1 -> 2/3; class 1: TP 0, FN 1 -> 0; mean 1/3
    matrix = ConfusionMatrix(3)
    matrix.update(np.array([0, 0, 0]), np.array([0, 0, 1]))
    assert matrix.iou()[1] == 0.0
    assert matrix.miou() == pytest.approx(100 / 3)


def test_two_updates_equal_one_on_the_concatenation() -> None:
    rng = np.random.default_rng(0)
    targets = [rng.integers(0, 5, size=(7, 9)) for _ in range(2)]
    preds = [rng.integers(0, 5, size=(7, 9)) for _ in range(2)]
    targets[1][0, :4] = 255
    split, whole = ConfusionMatrix(5), ConfusionMatrix(5)
    for pred, target in zip(preds, targets, strict=True):
        split.update(torch.from_numpy(pred), torch.from_numpy(target))
    whole.update(np.concatenate(preds), np.concatenate(targets))
    assert np.array_equal(split.counts, whole.counts)
    assert split.miou() == whole.miou()


def test_merge_equals_sequential_updates() -> None:
    rng = np.random.default_rng(1)
    pairs = [(rng.integers(0, 4, 50), rng.integers(0, 4, 50)) for _ in range(3)]
    sequential = ConfusionMatrix(4)
    workers = [ConfusionMatrix(4) for _ in pairs]
    for worker, (pred, target) in zip(workers, pairs, strict=True):
        sequential.update(pred, target)
        worker.update(pred, target)
    merged = ConfusionMatrix(4)
    for worker in workers:
        merged.merge(worker)
    assert np.array_equal(merged.counts, sequential.counts)
    with pytest.raises(ValueError, match="merge"):
        merged.merge(ConfusionMatrix(5))


def test_bad_inputs_raise() -> None:
    matrix = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="prediction has class ids \\[3\\]"):
        matrix.update(np.array([0, 3]), np.array([0, 1]))
    with pytest.raises(ValueError, match="prediction has class ids \\[-1\\]"):
        matrix.update(np.array([-1, 0]), np.array([0, 1]))
    with pytest.raises(ValueError, match="target has class ids \\[7\\]"):
        matrix.update(np.array([0, 1]), np.array([0, 7]))
    with pytest.raises(ValueError, match="shape"):
        matrix.update(np.zeros((2, 2), dtype=int), np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="integer"):
        matrix.update(np.zeros(2), np.zeros(2, dtype=int))
    assert matrix.counts.sum() == 0
    assert math.isnan(matrix.miou())


def test_uint8_inputs_do_not_overflow() -> None:
    matrix = ConfusionMatrix(19)
    target = np.array([18, 18, 5], dtype=np.uint8)
    matrix.update(np.array([18, 17, 5], dtype=np.uint8), target)
    assert matrix.counts[18, 17] == 1 and matrix.counts[18, 18] == 1 and matrix.counts[5, 5] == 1
