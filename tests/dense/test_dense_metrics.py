"""Dense metrics against hand-computed values and independent references (sklearn, float64 numpy),
plus the visualisation helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from dinobench.metrics.dense import (DEPTH_METRIC_NAMES, DepthMetric, SegmentationMetric, eigen_crop_box,
                                     eigen_crop_mask)
from dinobench.visualize import colorize_depth, colorize_mask, palette, side_by_side


# ----------------------------------------------------------------------------- segmentation
def test_segmentation_metric_hand_computed_with_ignore_and_absent_class():
    metric = SegmentationMetric(num_classes=4, class_names=["a", "b", "c", "never"])
    # image 1: the ignored pixel (255) predicted as 0 must not count anywhere
    metric.update(torch.tensor([[0, 1, 1], [1, 2, 0]]), torch.tensor([[0, 0, 1], [1, 2, 255]]))
    metric.update(torch.tensor([[2, 0], [2, 2]]), torch.tensor([[2, 2], [2, 0]]))
    # class 0: inter 1, pred 2, label 3 -> IoU 1/4, acc 1/3
    # class 1: inter 2, pred 3, label 2 -> IoU 2/3, acc 1
    # class 2: inter 3, pred 4, label 4 -> IoU 3/5, acc 3/4
    # class 3: absent from both -> NaN, left out of the means
    result = metric.compute()
    assert result["mIoU"] == round((1 / 4 + 2 / 3 + 3 / 5) / 3 * 100, 2) == 50.56
    assert result["aAcc"] == round(6 / 9 * 100, 2) == 66.67
    assert result["mAcc"] == round((1 / 3 + 1 + 3 / 4) / 3 * 100, 2) == 69.44
    per_class = metric.per_class_iou()
    assert per_class["a"] == pytest.approx(25.0) and per_class["c"] == pytest.approx(60.0)
    assert math.isnan(per_class["never"]) and metric.num_images == 2
    metric.reset()
    metric.update(torch.tensor([[1]]), torch.tensor([[1]]))
    assert metric.compute() == {"mIoU": 100.0, "aAcc": 100.0, "mAcc": 100.0}


def test_segmentation_metric_equals_sklearn_confusion_matrix_reference():
    from sklearn.metrics import confusion_matrix

    rng = np.random.default_rng(0)
    num_classes, metric = 6, SegmentationMetric(6)
    labels, preds = [], []
    for _ in range(5):
        label = rng.integers(0, num_classes, size=(17, 23))
        label[rng.random(label.shape) < 0.1] = 255
        pred = np.where(rng.random(label.shape) < 0.6, label, rng.integers(0, num_classes, size=label.shape))
        pred[pred == 255] = 0
        metric.update(torch.from_numpy(pred), torch.from_numpy(label))
        keep = label != 255
        labels.append(label[keep])
        preds.append(pred[keep])
    cm = confusion_matrix(np.concatenate(labels), np.concatenate(preds), labels=list(range(num_classes))).astype(float)
    inter = np.diag(cm)
    iou = inter / (cm.sum(0) + cm.sum(1) - inter)
    expected = {"mIoU": np.nanmean(iou) * 100, "aAcc": inter.sum() / cm.sum() * 100,
                "mAcc": np.nanmean(inter / cm.sum(1)) * 100}
    result = metric.compute()
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=0.006), key  # mmseg rounds to 2 decimals


def test_segmentation_metric_rejects_bad_input():
    metric = SegmentationMetric(3)
    with pytest.raises(ValueError, match="must both be"):
        metric.update(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="before any update"):
        metric.compute()
    with pytest.raises(ValueError, match="class_names"):
        SegmentationMetric(3, class_names=["a"])


# ----------------------------------------------------------------------------- depth
def _numpy_reference(pairs, min_depth, max_depth, eigen):
    """Independent float64 numpy implementation: per-image metrics, NaN-aware mean over images."""
    rows = []
    for pred, gt in pairs:
        pred, gt = pred.astype(np.float64), gt.astype(np.float64)
        valid = (gt > min_depth) & (gt < max_depth)
        if eigen:
            h, w = gt.shape
            crop = np.zeros_like(valid)
            crop[int(45 / 480 * h):int(471 / 480 * h), int(41 / 640 * w):int(601 / 640 * w)] = True
            valid &= crop
        if not valid.any():
            continue
        g, p = gt[valid], np.clip(pred[valid], min_depth, max_depth)
        thresh = np.maximum(g / p, p / g)
        d = np.log(p) - np.log(g)
        rows.append([
            np.mean(thresh < 1.25), np.mean(thresh < 1.25 ** 2), np.mean(thresh < 1.25 ** 3),
            np.mean(np.abs(g - p) / g), np.mean((g - p) ** 2 / g), np.sqrt(np.mean((g - p) ** 2)),
            np.sqrt(np.mean((np.log(g) - np.log(p)) ** 2)), np.mean(np.abs(np.log10(g) - np.log10(p))),
            np.sqrt(np.mean(d ** 2) - np.mean(d) ** 2) * 100, np.mean(np.abs(g - p)),
        ])
    return dict(zip(DEPTH_METRIC_NAMES, np.nanmean(np.array(rows), axis=0)))


@pytest.mark.parametrize("eigen", [False, True])
def test_depth_metric_equals_float64_numpy_reference(eigen):
    rng = np.random.default_rng(1)
    pairs = []
    for i in range(6):
        gt = rng.uniform(0.0, 12.0, size=(48, 64)).astype(np.float32)
        gt[rng.random(gt.shape) < 0.2] = 0.0  # no reading
        pred = (gt * np.exp(rng.normal(0, 0.3, size=gt.shape))).astype(np.float32)
        pred[rng.random(gt.shape) < 0.05] = 20.0  # beyond max_depth: clamped
        pred[rng.random(gt.shape) < 0.05] = 0.0  # below min_depth: clamped
        pairs.append((pred, gt))
    pairs.append((np.ones((48, 64), np.float32), np.zeros((48, 64), np.float32)))  # no valid pixel: skipped
    metric = DepthMetric(min_depth=1e-3, max_depth=10.0, eigen_crop=eigen)
    for pred, gt in pairs:
        metric.update(torch.from_numpy(pred), torch.from_numpy(gt))
    result, expected = metric.compute(), _numpy_reference(pairs, 1e-3, 10.0, eigen)
    assert list(result) == list(DEPTH_METRIC_NAMES) and metric.skipped == 1 and len(metric.per_image) == 6
    for name in DEPTH_METRIC_NAMES:
        assert result[name] == pytest.approx(expected[name], rel=1e-9, abs=1e-12), name


def test_depth_metric_hand_checked_case_and_resizing():
    metric = DepthMetric()
    per_image = metric.update(torch.full((4, 6), 2.5), torch.full((4, 6), 2.0))
    # ratio 1.25 exactly: a1 uses a strict '<', so 0; a2, a3 = 1
    assert per_image["a1"] == 0.0 and per_image["a2"] == 1.0 and per_image["a3"] == 1.0
    assert per_image["abs_rel"] == pytest.approx(0.25) and per_image["sq_rel"] == pytest.approx(0.125)
    assert per_image["rmse"] == pytest.approx(0.5) and per_image["mae"] == pytest.approx(0.5)
    assert per_image["rmse_log"] == pytest.approx(math.log(1.25))
    assert per_image["log10"] == pytest.approx(math.log10(1.25))
    assert per_image["silog"] == pytest.approx(0.0, abs=1e-6)  # a pure scale error has no scale-invariant error
    # a prediction at another size is resized bilinearly to the ground truth's
    resized = DepthMetric()
    resized.update(torch.full((2, 3), 2.5), torch.full((4, 6), 2.0))
    assert resized.compute() == pytest.approx(metric.compute())
    with pytest.raises(ValueError, match="no image with valid ground truth"):
        DepthMetric().compute()


def test_eigen_crop_box_scales_with_size():
    assert eigen_crop_box(480, 640) == (45, 471, 41, 601)
    assert eigen_crop_box(240, 320) == (22, 235, 20, 300)
    mask = eigen_crop_mask(48, 64)
    assert mask.sum() == (47 - 4) * (60 - 4) and mask[4, 4] and not mask[3, 4] and not mask[4, 60]


# ----------------------------------------------------------------------------- visualisation
def test_colorize_mask_fixed_palette_and_ignore():
    colours = palette(150)
    assert len({tuple(c) for c in colours}) == 150 and (colours.sum(1) > 0).all()  # distinct, none black
    mask = np.array([[0, 1, 2], [255, 149, 500]])
    img = np.asarray(colorize_mask(mask, num_classes=150))
    assert img.shape == (2, 3, 3) and img.dtype == np.uint8
    assert (img[0, 0] == colours[0]).all() and (img[1, 1] == colours[149]).all()
    assert (img[1, 0] == 0).all() and (img[1, 2] == 0).all()  # ignore and out-of-range ids are black
    assert np.array_equal(np.asarray(colorize_mask(mask, 150)), img)


def test_colorize_depth_perceptual_range_and_invalid():
    depth = np.tile(np.linspace(1.0, 9.0, 32), (4, 1))
    depth[0, 0] = 0.0
    img = np.asarray(colorize_depth(depth, vmin=1.0, vmax=9.0)).astype(float)
    assert img.shape == (4, 32, 3) and (img[0, 0] == 0).all()
    luminance = img[1] @ np.array([0.299, 0.587, 0.114])
    assert (np.diff(luminance) < 0).all()  # near is bright, far is dark (magma_r), monotonically
    assert np.asarray(colorize_depth(np.zeros((3, 3)))).max() == 0  # nothing valid: all black


def test_side_by_side_writes_one_png(tmp_path):
    a = Image.new("RGB", (20, 10), (255, 0, 0))
    b = colorize_mask(np.ones((5, 5), dtype=np.int64), 3)
    path = side_by_side([("image", a), ("ground truth", b), ("prediction", b)], tmp_path / "sub" / "fig.png")
    assert path.exists() and not list(path.parent.glob(".*tmp"))
    out = Image.open(path)
    assert out.size == (4 + 20 + 4 + 10 + 4 + 10 + 4, 10 + 14 + 8)
    assert out.getpixel((4 + 10, 4 + 14 + 5)) == (255, 0, 0)
    assert out.getpixel((4 + 20 + 4 + 5, 4 + 14 + 5)) == tuple(int(v) for v in palette(3)[1])
