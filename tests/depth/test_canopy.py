"""Canopy height (CHMv2 task): the pooled pixel metrics against scikit-learn, the GeoTIFF / NPY / PNG readers
(nodata, band order, scale) with one-line errors, and one end-to-end run that trains, evaluates and draws."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

from dinobench.data.canopy import build_canopy_folder, load_canopy_image, load_heights
from dinobench.synthetic.canopy import GDAL_NODATA_TAG, write_synthetic_canopy
from dinobench.metrics.dense import CanopyHeightMetric
from dinobench.errors import DataError


def test_metrics_equal_scikit_learn_on_the_pooled_pixels_and_merge_exactly():
    rng = np.random.default_rng(0)
    tiles = []
    for _ in range(4):
        gt = rng.uniform(0, 40, size=(6, 7)).astype(np.float32)
        gt[rng.random(gt.shape) < 0.2] = np.nan
        tiles.append((rng.uniform(-5, 110, size=(6, 7)).astype(np.float32), gt))
    metric = CanopyHeightMetric(max_height=96.0)
    for pred, gt in tiles:
        metric.update(torch.from_numpy(pred), torch.from_numpy(gt))
    got = metric.compute()
    y = np.concatenate([gt[np.isfinite(gt)] for _, gt in tiles]).astype(np.float64)
    p = np.concatenate([np.clip(pred, 0, 96)[np.isfinite(gt)] for pred, gt in tiles]).astype(np.float64)
    assert got["pixels"] == y.size
    assert got["mae"] == pytest.approx(mean_absolute_error(y, p), abs=1e-9)
    assert got["rmse"] == pytest.approx(root_mean_squared_error(y, p), abs=1e-9)
    assert got["r2"] == pytest.approx(r2_score(y, p), abs=1e-9)
    assert got["bias"] == pytest.approx(float(np.mean(p - y)), abs=1e-9)
    halves = [CanopyHeightMetric(), CanopyHeightMetric()]
    for i, (pred, gt) in enumerate(tiles):
        halves[i % 2].update(torch.from_numpy(pred), torch.from_numpy(gt))
    merged = CanopyHeightMetric()
    merged.merge([h.state() for h in halves])
    assert merged.compute() == pytest.approx(got, abs=1e-12)
    constant = CanopyHeightMetric()
    constant.update(torch.full((2, 2), 5.0), torch.full((2, 2), 5.0))
    assert constant.compute()["r2"] == r2_score([5.0] * 4, [5.0] * 4) == 1.0


def test_readers_honour_nodata_band_order_and_scale(tmp_path):
    heights = np.arange(12, dtype=np.float32).reshape(3, 4)
    heights[0, 0] = -9999
    tifffile.imwrite(tmp_path / "h.tif", heights, extratags=[(GDAL_NODATA_TAG, "s", 0, "-9999", True)])
    read = load_heights(tmp_path / "h.tif")
    assert np.isnan(read[0, 0]) and read[2, 3] == 11
    Image.fromarray((heights.clip(0) * 100).astype(np.uint16)).save(tmp_path / "h.png")  # centimetres
    assert load_heights(tmp_path / "h.png", height_scale=0.01)[2, 3] == pytest.approx(11.0)
    np.save(tmp_path / "h.npy", np.where(heights < 0, np.nan, heights))
    assert np.isnan(load_heights(tmp_path / "h.npy")[0, 0])
    rgb = np.random.default_rng(1).integers(0, 256, size=(3, 4, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "contig.tif", rgb, photometric="rgb")
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
    a, b = load_canopy_image(tmp_path / "contig.tif"), load_canopy_image(tmp_path / "planar.tif")
    assert a.shape == (3, 3, 4) and torch.equal(a, b) and float(a[0, 1, 2]) == pytest.approx(rgb[1, 2, 0] / 255)
    tifffile.imwrite(tmp_path / "wide.tif", (rgb.astype(np.uint16) * 4))
    assert float(load_canopy_image(tmp_path / "wide.tif", image_max=1020.0)[0, 1, 2]) == pytest.approx(rgb[1, 2, 0] / 255)


def test_layout_errors_are_one_line(tmp_path):
    root = write_synthetic_canopy(tmp_path / "chm", n_train=2, n_val=2, size=32)
    next((root / "val" / "heights").iterdir()).unlink()
    with pytest.raises(DataError, match=r"1 of 2 tiles have no height map") as info:
        build_canopy_folder({}, str(root))
    assert "\n" not in str(info.value)
    root = write_synthetic_canopy(tmp_path / "chm2", n_train=2, n_val=2, size=32)
    np.save(root / "val" / "heights" / "00000.npy", np.zeros((5, 5), np.float32))
    (root / "val" / "heights" / "00000.tif").unlink()
    with pytest.raises(DataError, match="heights are 5x5 but the image"):
        build_canopy_folder({}, str(root))["val"][0]


def test_canopy_task_trains_evaluates_and_draws_height_maps(run_cli, tmp_path):
    data = write_synthetic_canopy(tmp_path / "chm", n_train=4, n_val=2, size=48)
    code, _, err = run_cli(
        "run", "--backbone", "vit_tiny", "--task", "canopy-chm", "--data-root", str(data), "--output",
        str(tmp_path / "out"), "--save-predictions", "--cfg-options", "backbone.embed_dim=64", "backbone.depth=4",
        "backbone.num_heads=2", "train.max_iters=3", "train.batch_size=2", "train.num_workers=0", "train.eval_every=0",
        "train.scheduler.warmup_iters=1", "transform.train.crop_size=[32,32]", "protocol.head.channels=16",
        "protocol.head.post_process_channels=[8,16,16,16]", "protocol.head.n_hidden_channels=8",
        "protocol.head.n_bins=16")
    assert code == 0, err
    path = next((tmp_path / "out").rglob("result.json"))
    record = json.loads(path.read_text())
    assert record["main_metric"]["name"] == "mae" and record["main_metric"]["higher_is_better"] is False
    assert record["higher_is_better"]["r2"] is True and 0 < record["metrics"]["pixels"] < 2 * 48 * 48
    assert "predictions/side_by_side.png" in record["artifacts"] and "head.pth" in record["artifacts"]
    assert json.loads((path.parent / "head.json").read_text())["config"]["bins_strategy"] == "chmv2_mixlog"
