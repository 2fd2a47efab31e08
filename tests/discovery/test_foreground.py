"""Foreground segmentation (the official notebook's probe as a task): AP and mIoU equal scikit-learn's
``average_precision_score`` and a numpy IoU on the same scores, the best threshold is the brute-force one, masks
are pooled to the patch grid as the notebook's ``patch_quant_filter``, and ``folder-foreground`` runs end to end
(figures, disk-cached features, report)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import average_precision_score

from dinobench.data.foreground import ForegroundTransform, build_foreground_folder, load_foreground
from dinobench.synthetic.retrieval import write_synthetic_foreground
from dinobench.metrics.dense import best_miou_threshold, binary_miou
from dinobench.protocols.foreground import ForegroundProtocol, clear_patches
from helpers import run_task


def numpy_iou(pred, truth):
    inter, union = np.logical_and(pred, truth).sum(), np.logical_or(pred, truth).sum()
    return inter / union


def test_ap_and_miou_equal_sklearn_and_numpy_on_the_same_scores():
    rng = np.random.default_rng(0)
    fractions = rng.choice([0.0, 0.005, 0.5, 0.995, 1.0], size=(3, 5, 6))
    scores = np.clip(fractions * 0.6 + rng.uniform(0, 0.5, fractions.shape), 0, 1)
    scores[0, 0, :3] = 0.42  # ties
    protocol = ForegroundProtocol({"label_margin": 0.01})
    metrics = protocol.evaluate(scores, fractions, threshold=0.5)
    clear = (fractions < 0.01) | (fractions > 0.99)
    labels, values = fractions[clear] > 0.99, scores[clear]
    assert metrics["AP"] == pytest.approx(100 * average_precision_score(labels, values))
    pred = values >= 0.5
    expected = (numpy_iou(pred, labels) + numpy_iou(~pred, ~labels)) / 2
    assert metrics["mIoU"] == pytest.approx(100 * expected) and metrics["threshold"] == 0.5
    brute = max(np.unique(values), key=lambda t: (binary_miou(values, labels, t)["mIoU"], t))
    assert best_miou_threshold(values, labels) == pytest.approx(brute)
    assert protocol.evaluate(scores, fractions, None)["mIoU"] == pytest.approx(
        100 * binary_miou(values, labels, brute)["mIoU"])


def test_clear_patches_follow_the_notebook_margin():
    clear, labels = clear_patches(np.array([0.0, 0.009, 0.01, 0.5, 0.99, 0.991, 1.0]), 0.01)
    assert clear.tolist() == [True, True, False, False, False, True, True]
    assert labels.tolist() == [False, False, True, True]


def test_masks_pool_to_the_patch_grid_like_the_notebook_filter(tmp_path):
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[:16, :8] = 255  # patch (0, 0) of 16 px: half foreground
    image = Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8))
    _, fractions = ForegroundTransform(32, 16, (0.5,) * 3, (0.5,) * 3)(image, Image.fromarray(mask))
    conv = torch.nn.Conv2d(1, 1, 16, stride=16, bias=False)
    conv.weight.data.fill_(1.0 / 256)
    expected = conv(torch.from_numpy(mask / 255.0).float()[None, None])[0, 0]
    torch.testing.assert_close(fractions, expected.detach(), atol=1e-6, rtol=0)
    assert fractions[0, 0] == pytest.approx(0.5) and fractions[1, 1] == 0
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 3] = 200  # the notebook's labels: foreground in the alpha channel
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "m.png")
    assert np.asarray(load_foreground(tmp_path / "m.png")).max() == 200


def test_foreground_layout_errors_name_the_file(tmp_path):
    from dinobench.errors import DataError

    root = write_synthetic_foreground(tmp_path / "fg", n_train=3, n_val=2, size=32)
    (root / "val" / "masks" / "00001.png").unlink()
    with pytest.raises(DataError, match=r"1 of 2 images have no mask .*00001.png"):
        build_foreground_folder({}, str(root))


def test_folder_foreground_end_to_end(run_cli, tmp_path):
    root = write_synthetic_foreground(tmp_path / "fg")
    record, path = run_task(run_cli, "folder-foreground", root, tmp_path / "out", extra=("--save-predictions",))
    metrics = record["metrics"]
    assert record["protocol"] == "foreground" and record["main_metric"]["name"] == "AP"
    assert {"AP", "mIoU", "IoU_fg", "IoU_bg", "mIoU_oracle", "best_C"} <= set(metrics)
    assert metrics["mIoU_oracle"] >= metrics["mIoU"] - 1e-9
    assert [row["C"] for row in record["tables"]["C_sweep"]] == [0.01, 1.0]
    # far above chance (chance AP = the share of foreground patches among the clear ones)
    splits = build_foreground_folder({}, str(root))
    from dinobench.data.foreground import ForegroundTransform as FT

    fractions = np.stack([FT(64, 8, (0,) * 3, (1,) * 3)(*splits["val"][i])[1].numpy() for i in range(len(splits["val"]))])
    _, labels = clear_patches(fractions, 0.01)
    assert metrics["AP"] > 100 * labels.mean() + 20
    assert (path.parent / "predictions" / "foreground_000.png").is_file()
    again, _ = run_task(run_cli, "folder-foreground", root, tmp_path / "out")
    assert again["timings"]["features_train_patch_tokens_cached"] == 1.0 and again["metrics"] == metrics
    filtered, _ = run_task(run_cli, "folder-foreground", root, tmp_path / "out", "protocol.median_filter=3")
    assert filtered["protocol_hash"] != record["protocol_hash"] and filtered["metrics"]["AP"] != metrics["AP"]
