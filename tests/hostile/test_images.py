"""Images and metadata of unusual kinds: bombs, 16-bit, float, truncated, malformed config.json."""

import numpy as np
import pytest
from PIL import Image

from dinobench.data.base import load_rgb
from dinobench.errors import DataError, WeightsError


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257 * 100, 65535, 1000]], dtype=np.uint16)
    path = tmp_path / "depthlike.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    rgb = np.asarray(load_rgb(path))
    assert rgb.shape == (1, 4, 3) and rgb[0, :, 0].tolist() == [0, 100, 255, 3]  # PIL's convert gives 0,255,255,255


@pytest.mark.parametrize("mode, data", [("F", np.full((4, 4), 0.5, dtype=np.float32)),
                                        ("I", np.full((4, 4), 70000, dtype=np.int32))])
def test_float_and_32_bit_images_are_refused_naming_the_file(tmp_path, mode, data):
    path = tmp_path / f"{mode}.tiff"
    Image.fromarray(data, mode=mode).save(path)
    with pytest.raises(DataError, match=rf"{path}: '{mode}' image"):
        load_rgb(path)


def test_decompression_bomb_is_one_data_error(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("RGB", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 4096 px > 2 x limit: PIL raises DecompressionBombError
    with pytest.raises(DataError, match=r"bomb.png: image too large to decode safely"):
        load_rgb(path)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF"])
def test_truncated_and_garbage_images_of_every_format_are_data_errors(tmp_path, fmt):
    path = tmp_path / f"image.{fmt.lower()}"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match=str(path)):
        load_rgb(path)
    path.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(DataError, match="cannot read image"):
        load_rgb(path)


@pytest.mark.parametrize("text, message", [("{not json", "line 1 column 2"), ("[1, 2]", "expected a JSON object"),
                                           (b"\xff\xfe\x00", "not a readable JSON config")])
def test_malformed_hf_config_is_one_weights_error(tmp_path, text, message):
    from dinobench.backbones.loading import read_checkpoint
    from safetensors.torch import save_file
    import torch

    model = tmp_path / "hf"
    model.mkdir()
    save_file({"w": torch.zeros(1)}, model / "model.safetensors")
    (model / "config.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(WeightsError, match=message) as info:
        read_checkpoint(model)
    assert str(model / "config.json") in str(info.value)


def test_files_that_are_not_images_are_counted_not_silently_skipped(tmp_path, caplog):
    from dinobench.data.folder import build_folder_splits

    for split in ("train", "val"):
        folder = tmp_path / split / "cat"
        folder.mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(folder / "a.png")
    (tmp_path / "train" / "cat" / "b.heic").write_bytes(b"x")
    (tmp_path / "train" / "cat" / "notes.txt").write_text("x")
    (tmp_path / "train" / "cat" / "c.HEIC").write_bytes(b"x")
    (tmp_path / "train" / "cat" / ".DS_Store").write_bytes(b"x")  # hidden: not reported
    splits = build_folder_splits({}, str(tmp_path))
    assert len(splits["train"]) == 1
    lines = [r.getMessage() for r in caplog.records if "not images" in r.getMessage()]
    assert lines == [f"dinobench: warning: {tmp_path / 'train'}: ignored 3 files that are not images "
                     f"(.heic: 2, .txt: 1)"]
