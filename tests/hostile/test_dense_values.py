"""Dense ground truth with impossible values is refused when read, naming the file and the value."""

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_OPTIONS

from dinobench.data import dense
from dinobench.synthetic import dense as synthetic
from dinobench.errors import DataError


def test_segmentation_label_outside_the_classes_is_one_data_error(tmp_path):
    root = synthetic.write_synthetic_ade20k(tmp_path / "data", n_train=2, n_val=2, size=32)
    ds = dense.build_ade20k({}, str(root))["val"]
    mask_path = ds.samples[0][1]
    mask = np.asarray(Image.open(mask_path)).copy()
    mask[0, :3] = 200  # 200 - 1 (reduce_zero_label) = 199 >= 150 classes, not the ignore index 255
    Image.fromarray(mask.astype(np.uint8), mode="L").save(mask_path)
    with pytest.raises(DataError, match=r"label 199 at 3 pixel\(s\) is outside \[0, 150\)") as info:
        ds[0]
    assert str(mask_path) in str(info.value) and "reduce_zero_label" in str(info.value)
    mask[0, :3] = 0  # 0 -> ignore under reduce_zero_label: valid
    Image.fromarray(mask.astype(np.uint8), mode="L").save(mask_path)
    assert int(ds[0]["mask"][0, 0]) == 255


def test_non_finite_or_negative_depth_is_one_data_error(tmp_path, monkeypatch):
    root = synthetic.write_synthetic_nyu(tmp_path / "nyu", n_train=2, n_val=2)
    ds = dense.build_nyu({}, str(root))["val"]
    good = ds[0]["depth"].numpy()
    assert np.isfinite(good).all() and (good >= 0).all()
    for bad in (np.nan, np.inf, -1.0):
        monkeypatch.setattr(dense, "load_depth", lambda path, scale, v=bad: np.full(good.shape, v, dtype=np.float32))
        with pytest.raises(DataError, match="depth holds NaN, inf or negative values"):
            ds[0]


def refused_before_training(run_cli, monkeypatch, task, root, out, message):
    """``dinobench run`` of ``task`` is one line containing ``message`` (exit 2), before a head is built."""
    import dinobench.protocols.dense as dense_protocol

    def no_training(*args, **kwargs):
        raise AssertionError("a head was built for a split without ground truth")

    monkeypatch.setattr(dense_protocol.DenseProtocol, "build_model", no_training)
    code, _, err = run_cli("run", "--backbone", "vit_tiny", "--task", task, "--data-root", str(root),
                           "--output", str(out), "--cfg-options", *TINY_OPTIONS)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not list(out.rglob("result.json"))


def test_depth_split_without_any_valid_pixel_is_refused_before_training(run_cli, tmp_path, monkeypatch):
    root = synthetic.write_synthetic_nyu(tmp_path / "nyu", n_train=2, n_val=2)
    ds = dense.build_nyu({}, str(root))["train"]
    ds.check_ground_truth()  # the synthetic depth is valid
    for _, depth_path in ds.samples:  # all zeros = no reading anywhere in train
        Image.fromarray(np.zeros(np.asarray(Image.open(depth_path)).shape, dtype=np.uint16)).save(depth_path)
    with pytest.raises(DataError, match=r"nyu train: none of the 2 depth maps has a valid pixel"):
        ds.check_ground_truth()
    refused_before_training(run_cli, monkeypatch, "nyu-linear", root, tmp_path / "out",
                            "none of the 2 depth maps has a valid pixel")


def test_segmentation_split_whose_masks_are_all_ignore_is_refused_before_training(run_cli, tmp_path, monkeypatch):
    root = synthetic.write_synthetic_ade20k(tmp_path / "ade", n_train=2, n_val=2, size=32)
    ds = dense.build_ade20k({}, str(root))["val"]
    ds.check_ground_truth()  # the synthetic masks label pixels
    for _, mask_path in ds.samples:  # 0 = "other" in ADE20K: ignored under reduce_zero_label
        shape = np.asarray(Image.open(mask_path)).shape
        Image.fromarray(np.zeros(shape, dtype=np.uint8), mode="L").save(mask_path)
    with pytest.raises(DataError, match=r"ade20k val: all 2 masks are the ignore index 255 after reduce_zero_label"):
        ds.check_ground_truth()
    refused_before_training(run_cli, monkeypatch, "ade20k-linear", root, tmp_path / "out",
                            "all 2 masks are the ignore index")
