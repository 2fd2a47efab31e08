"""Hardening II: every image, tile and video-frame reader refuses what is above the decompression-bomb limit
(PIL's default, one environment variable to change it) before decoding, in one line."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dinobench.data.base import DEFAULT_MAX_PIXELS, load_rgb, max_pixels
from dinobench.data.canopy import load_canopy_image
from dinobench.errors import ConfigError, DataError


@pytest.fixture
def small_limit(monkeypatch):
    monkeypatch.setenv("DINOBENCH_MAX_IMAGE_PIXELS", "100")


def test_the_limit_is_pils_default_and_one_variable_changes_it(monkeypatch):
    assert max_pixels() == DEFAULT_MAX_PIXELS == Image.MAX_IMAGE_PIXELS
    monkeypatch.setenv("DINOBENCH_MAX_IMAGE_PIXELS", "12")
    assert max_pixels() == 12
    monkeypatch.setenv("DINOBENCH_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ConfigError, match="DINOBENCH_MAX_IMAGE_PIXELS"):
        max_pixels()


def test_images_and_tiles_above_the_limit_are_refused_before_decoding(tmp_path, small_limit):
    Image.new("RGB", (20, 10)).save(tmp_path / "a.png")
    with pytest.raises(DataError, match=r"a.png: image of 20x10 pixels is above the decompression-bomb limit of 100"):
        load_rgb(tmp_path / "a.png")
    import tifffile

    tifffile.imwrite(tmp_path / "t.tif", np.zeros((10, 20, 3), dtype=np.uint8))
    with pytest.raises(DataError, match=r"t.tif: GeoTIFF tile of 20x10 pixels is above"):
        load_canopy_image(tmp_path / "t.tif")
    Image.new("RGB", (5, 5)).save(tmp_path / "ok.png")
    assert load_rgb(tmp_path / "ok.png").size == (5, 5)  # at or below the limit: read as before


def test_video_frames_above_the_limit_are_refused(tmp_path, small_limit):
    from dinobench.data.video import read_clip
    from dinobench.synthetic.video import write_video

    path = write_video(np.zeros((3, 16, 16, 3), dtype=np.uint8), tmp_path / "v.mp4")
    with pytest.raises(DataError, match=r"v.mp4: video frame of 16x16 pixels is above"):
        read_clip(str(path), 2, 0, 1)


def test_float_tiles_outside_zero_one_are_one_line_unless_scaled(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "f.tif", np.full((4, 4, 3), 300.0, dtype=np.float32))
    with pytest.raises(DataError, match=r"f.tif: float tile values span 300..300, outside \[0, 1\]; set dataset.image_max"):
        load_canopy_image(tmp_path / "f.tif")
    assert float(load_canopy_image(tmp_path / "f.tif", image_max=600.0).max()) == pytest.approx(0.5)


def test_a_canopy_split_without_any_valid_height_is_refused_as_data_not_as_a_learning_rate(tmp_path):
    import tifffile

    from dinobench.data.canopy import build_canopy_folder
    from dinobench.synthetic.canopy import write_synthetic_canopy

    root = write_synthetic_canopy(tmp_path / "chm", n_train=2, n_val=1, size=16)
    for path in (root / "train" / "heights").glob("*.tif"):
        tifffile.imwrite(path, np.full((16, 16), np.nan, dtype=np.float32))
    splits = build_canopy_folder({}, str(root))
    splits["val"].check_ground_truth()  # untouched: fine
    with pytest.raises(DataError, match=r"canopy train: none of the 2 height maps has a valid height"):
        splits["train"].check_ground_truth()


def test_target_maps_above_the_limit_are_refused_too(tmp_path, small_limit):
    from dinobench.data.canopy import load_heights
    from dinobench.data.dense import load_depth, load_mask
    from dinobench.data.foreground import load_foreground

    Image.new("L", (20, 10)).save(tmp_path / "m.png")
    Image.new("I;16", (20, 10)).save(tmp_path / "d.png")
    np.save(tmp_path / "h.npy", np.zeros((10, 20), dtype=np.float32))
    for load, path in ((load_mask, "m.png"), (load_depth, "d.png"), (load_foreground, "m.png"),
                       (load_heights, "h.npy"), (load_heights, "m.png")):
        with pytest.raises(DataError, match="20x10 pixels is above the decompression-bomb limit"):
            load(tmp_path / path)
