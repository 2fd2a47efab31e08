"""Dense datasets: synthetic writers -> builders, layout errors, reduce-zero-label, joint transforms."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dinobench.data import dense, dense_transforms as dt
from dinobench.synthetic import __main__ as synthetic_cli, dense as synthetic
from dinobench.errors import ConfigError, DataError

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def ade_root(tmp_path_factory) -> Path:
    return synthetic.write_synthetic_ade20k(tmp_path_factory.mktemp("ade"), n_train=4, n_val=3, size=48, seed=0)


@pytest.fixture(scope="module")
def nyu_root(tmp_path_factory) -> Path:
    return synthetic.write_synthetic_nyu(tmp_path_factory.mktemp("nyu"), n_train=4, n_val=3, size=(48, 64), seed=0)


# ----------------------------------------------------------------------------- synthetic -> builders
def test_synthetic_ade20k_layout_is_read_by_builder(ade_root):
    assert ade_root.name == "ADEChallengeData2016"
    for parent in (ade_root, ade_root.parent):  # the folder itself or its parent
        splits = dense.build_ade20k({}, str(parent))
        assert {k: len(v) for k, v in splits.items()} == {"train": 4, "val": 3}
    ds = splits["val"]
    assert ds.num_classes == 150 and ds.classes[0] == "wall" and ds.reduce_zero_label and ds.ignore_index == 255
    sample = ds[0]
    assert sample["image"].shape == (3, 48, 48) and sample["image"].dtype == torch.float32
    assert 0.0 <= sample["image"].min() and sample["image"].max() <= 1.0
    assert sample["mask"].shape == (48, 48) and sample["mask"].dtype == torch.int64
    raw = np.asarray(Image.open(ds.samples[0][1])).astype(np.int64)
    assert set(np.unique(raw)) <= set(range(7)) and (raw == 0).any()  # ids 1..6 plus some "other"
    # reduce-zero-label: 0 -> 255, k -> k-1
    expected = np.where(raw == 0, 255, raw - 1)
    np.testing.assert_array_equal(sample["mask"].numpy(), expected)
    assert ds.describe()["fingerprint"] == ds.fingerprint and ds.fingerprint != splits["train"].fingerprint


def test_reduce_zero_label_keeps_existing_ignore():
    mask = np.array([[0, 1, 2], [150, 255, 7]])
    np.testing.assert_array_equal(dense.reduce_zero_label(mask), [[255, 0, 1], [149, 255, 6]])


def test_synthetic_nyu_layout_is_read_by_builder(nyu_root):
    lines = (nyu_root / "nyudepthv2_train_files_with_gt.txt").read_text().split("\n")
    assert lines[0].startswith("/") and len(lines[0].split()) == 3  # BTS: '/scene/rgb.jpg /scene/depth.png focal'
    assert (nyu_root / "official_splits" / "test").is_dir() and (nyu_root / "sync").is_dir()
    splits = dense.build_nyu({}, str(nyu_root))
    train, val = splits["train"], splits["val"]
    assert (len(train), len(val)) == (4, 3)
    assert val.eigen_crop and not train.eigen_crop and (val.min_depth, val.max_depth) == (1e-3, 10.0)
    sample = val[1]
    assert sample["image"].shape == (3, 48, 64) and sample["depth"].shape == (48, 64)
    png = np.asarray(Image.open(val.samples[1][1]))
    assert png.dtype == np.uint16
    np.testing.assert_allclose(sample["depth"].numpy(), png.astype(np.float32) / 1000.0)
    assert 0.5 < float(sample["depth"][sample["depth"] > 0].min()) and float(sample["depth"].max()) < 10.0
    assert sample["name"] == "bedroom/rgb_00001"


def test_synthetic_generic_folders_are_read_by_builders(tmp_path):
    seg = synthetic.write_synthetic_seg_folder(tmp_path / "seg", n_train=2, n_val=2, size=32, seed=1)
    splits = dense.build_seg_folder({}, str(seg))
    assert splits["train"].classes == list(synthetic.SYNTHETIC_SEG_CLASSES) and not splits["train"].reduce_zero_label
    mask = splits["val"][0]["mask"]
    assert set(mask.unique().tolist()) <= set(range(6)) | {255}
    depth = synthetic.write_synthetic_depth_folder(tmp_path / "depth", n_train=2, n_val=2, size=(24, 32), seed=1)
    dsplits = dense.build_depth_folder({"depth_scale": 100.0}, str(depth))  # a different stored unit
    png = np.asarray(Image.open(dsplits["train"].samples[0][1])).astype(np.float32)
    np.testing.assert_allclose(dsplits["train"][0]["depth"].numpy(), png / 100.0)
    assert dsplits["val"].eigen_crop is False


def test_synthetic_writers_are_deterministic(tmp_path):
    a = synthetic.write_synthetic_ade20k(tmp_path / "a", n_train=2, n_val=1, size=32, seed=3)
    b = synthetic.write_synthetic_ade20k(tmp_path / "b", n_train=2, n_val=1, size=32, seed=3)
    c = synthetic.write_synthetic_ade20k(tmp_path / "c", n_train=2, n_val=1, size=32, seed=4)
    assert _tree_digest(a) == _tree_digest(b) != _tree_digest(c)
    n1 = synthetic.write_synthetic_nyu(tmp_path / "n1", n_train=2, n_val=1, size=(24, 32), seed=3)
    n2 = synthetic.write_synthetic_nyu(tmp_path / "n2", n_train=2, n_val=1, size=(24, 32), seed=3)
    assert _tree_digest(n1) == _tree_digest(n2)


def test_synthetic_cli_prints_data_root(tmp_path, capsys):
    assert synthetic_cli.main(["nyu", str(tmp_path / "x"), "--n-train", "2", "--n-val", "1", "--size", "24x32"]) == 0
    root = capsys.readouterr().out.strip()
    assert len(dense.build_nyu({}, root)["val"]) == 1
    assert dense.build_nyu({}, root)["val"][0]["depth"].shape == (24, 32)


def test_every_registered_reader_kind_has_a_registered_synthetic_writer():
    """Each family registers the writers of its readers through the hook (no central table); the writers' kinds
    are reader names (``voc`` writes the layout voc07 and voc12 read)."""
    from dinobench.plugin_manager import get_registries
    from dinobench.registry import resolve_object

    registries = get_registries()
    writers = registries.synthetic_writers
    for entry in writers:
        assert callable(resolve_object(entry.writer)), entry.name
        assert entry.source.startswith("dinobench.plugins."), entry.name
    covered = {name for name in registries.datasets.names() if name in writers or name[:-2] in writers}
    on_disk_only = {"digits", "imagenet", "folder", "fashion_mnist", "csv", "coco_captions", "karpathy_captions",
                    "caption_csv", "video_folder"}  # real bundled data, or image folders written by the tests
    assert set(registries.datasets.names()) - covered == on_disk_only


def test_dense_datasets_are_registered():
    from dinobench.plugin_manager import get_registries

    datasets = get_registries().datasets
    for name in ("ade20k", "nyu", "seg_folder", "depth_folder"):
        assert datasets.get(name).source == "dinobench.plugins.dense_datasets"


# ----------------------------------------------------------------------------- layout errors
def test_layout_errors_name_the_path_and_fix(tmp_path, ade_root, nyu_root):
    import shutil

    with pytest.raises(DataError, match="needs a data root"):
        dense.build_ade20k({}, None)
    with pytest.raises(DataError, match="data root does not exist"):
        dense.build_nyu({}, str(tmp_path / "nope"))
    with pytest.raises(DataError, match=r"images/training.*folder missing"):
        dense.build_ade20k({}, str(tmp_path))
    # images without annotations: count + first examples
    broken = tmp_path / "ade" / "ADEChallengeData2016"
    shutil.copytree(ade_root, broken)
    for p in sorted((broken / "annotations" / "validation").glob("*.png"))[:2]:
        p.unlink()
    with pytest.raises(DataError, match=r"2 of 3 images have no annotation \(<stem>.png; first: ADE_val_00000001.jpg"):
        dense.build_ade20k({}, str(broken))
    empty = tmp_path / "seg" / "train" / "images"
    empty.mkdir(parents=True)
    (tmp_path / "seg" / "classes.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match="no images"):
        dense.build_seg_folder({}, str(tmp_path / "seg"))
    with pytest.raises(DataError, match="classes.txt: missing"):
        dense.build_seg_folder({}, str(tmp_path))
    # NYU: split file missing, malformed, or listing files that do not exist
    with pytest.raises(DataError, match="split file missing"):
        dense.build_nyu({"train_split_file": "other.txt"}, str(nyu_root))
    nyu = tmp_path / "nyu"
    shutil.copytree(nyu_root, nyu)
    (nyu / "bad.txt").write_text("/kitchen_0001a/rgb_00000.jpg\n")
    with pytest.raises(DataError, match=r"bad.txt:1: expected '<rgb path> <depth path>"):
        dense.build_nyu({"train_split_file": "bad.txt"}, str(nyu))
    (nyu / "sync" / "kitchen_0001a" / "sync_depth_00000.png").unlink()
    with pytest.raises(DataError, match=r"1 listed files are missing under .*sync.*sync_depth_00000.png"):
        dense.build_nyu({}, str(nyu))
    with pytest.raises(DataError, match="max_train_samples"):
        dense.build_ade20k({"max_train_samples": 0}, str(ade_root))


def test_bts_split_file_in_train_test_inputs_and_none_gt_lines(tmp_path, nyu_root):
    import shutil

    nyu = tmp_path / "nyu"
    shutil.copytree(nyu_root, nyu)
    (nyu / "train_test_inputs").mkdir()
    text = (nyu / "nyudepthv2_train_files_with_gt.txt").read_text()
    (nyu / "nyudepthv2_train_files_with_gt.txt").unlink()
    (nyu / "train_test_inputs" / "nyudepthv2_train_files_with_gt.txt").write_text(
        text + "/kitchen_0001a/rgb_09999.jpg None 518.8579\n")
    splits = dense.build_nyu({"max_val_samples": 2}, str(nyu))
    assert len(splits["train"]) == 4 and splits["train"].skipped_without_gt == 1 and len(splits["val"]) == 2


def test_bad_files_fail_with_one_line_at_load(tmp_path):
    root = synthetic.write_synthetic_seg_folder(tmp_path, n_train=1, n_val=1, size=16, seed=0)
    Image.new("RGB", (16, 16)).save(root / "val" / "masks" / "00000.png")  # colour-coded mask
    Image.new("L", (8, 16)).save(root / "train" / "masks" / "00000.png")  # wrong size
    splits = dense.build_seg_folder({}, str(root))
    with pytest.raises(DataError, match="mode RGB; expected a single-channel label PNG"):
        splits["val"][0]
    with pytest.raises(DataError, match="mask is 8x16 but its image"):
        splits["train"][0]
    droot = synthetic.write_synthetic_depth_folder(tmp_path / "d", n_train=1, n_val=1, size=16, seed=0)
    Image.new("L", (16, 16)).save(droot / "val" / "depth" / "00000.png")  # 8-bit depth
    with pytest.raises(DataError, match="expected a 16-bit PNG"):
        dense.build_depth_folder({}, str(droot))["val"][0]


# ----------------------------------------------------------------------------- transforms
def test_scaled_size_semantics():
    assert dt.scaled_size(480, 640, 512) == (512, 683)  # DINOv3: short side
    assert dt.scaled_size(640, 480, 512, ratio=0.5) == (341, 256)
    assert dt.scaled_size(480, 640, (2048, 512)) == (512, 683)  # mmseg keep-ratio rescale
    assert dt.scaled_size(100, 1000, (2048, 512)) == (205, 2048)  # long side bound wins
    assert dt.scaled_size(30, 40, None, ratio=2.0) == (60, 80)
    with pytest.raises(ConfigError, match="scale"):
        dt.scaled_size(30, 40, "big")


def _aligned_seg_sample(h: int = 40, w: int = 56) -> dict:
    """Red channel encodes the class id, so image/mask alignment can be checked after transforms."""
    g = torch.Generator().manual_seed(0)
    mask = torch.randint(0, 5, (h, w), generator=g)
    mask[:4, :4] = 255
    image = torch.rand(3, h, w, generator=g)
    image[0] = torch.where(mask == 255, torch.zeros(()), mask.float() / 10)
    return {"image": image, "mask": mask, "name": "x"}


def test_seg_train_transform_shapes_padding_alignment_and_determinism():
    cfg = dict(scale=None, ratio_range=(1.0, 1.0), crop_size=(32, 64), flip_prob=0.5, photometric=False)
    tf = dt.build_seg_train_transform(cfg, MEAN, STD)
    sample = _aligned_seg_sample()
    outs = []
    for seed in range(6):
        torch.manual_seed(seed)
        out = tf(dict(sample))
        assert out["image"].shape == (3, 32, 64) and out["mask"].shape == (32, 64) and out["name"] == "x"
        # width 56 < 64: right columns are padding (image 0 after normalisation, mask ignore)
        assert (out["mask"][:, 56:] == 255).all() and (out["image"][:, :, 56:] == 0).all()
        red = out["image"][0, :, :56] * STD[0] + MEAN[0]
        labelled = out["mask"][:, :56] != 255
        torch.testing.assert_close(red[labelled], out["mask"][:, :56][labelled].float() / 10, atol=1e-6, rtol=0)
        outs.append(out)
    torch.manual_seed(3)
    again = tf(dict(sample))
    assert torch.equal(again["image"], outs[3]["image"]) and torch.equal(again["mask"], outs[3]["mask"])
    assert any(not torch.equal(o["mask"], outs[0]["mask"]) for o in outs[1:])  # crops/flips vary with the seed


def test_seg_train_transform_random_resize_and_photometric_run():
    tf = dt.build_seg_train_transform(dict(scale=32, ratio_range=(0.5, 2.0), crop_size=24), MEAN, STD)
    sizes = set()
    for seed in range(8):
        torch.manual_seed(seed)
        out = tf(_aligned_seg_sample())
        assert out["image"].shape == (3, 24, 24) and out["mask"].dtype == torch.int64
        assert torch.isfinite(out["image"]).all()
        sizes.add(int((out["mask"] != 255).sum()))
    assert len(sizes) > 1


def test_cat_max_ratio_prefers_mixed_crops():
    mask = torch.zeros(64, 64, dtype=torch.long)
    mask[40:, 40:] = 1
    sample = {"image": torch.rand(3, 64, 64), "mask": mask, "name": "m"}

    def mixed_fraction(ratio: float) -> float:
        tf = dt.build_seg_train_transform(dict(scale=None, ratio_range=(1, 1), crop_size=24, cat_max_ratio=ratio,
                                               flip_prob=0.0, photometric=False), MEAN, STD)
        hits = 0
        for seed in range(40):
            torch.manual_seed(seed)
            hits += int(tf(sample)["mask"].unique().numel() > 1)
        return hits / 40

    assert mixed_fraction(0.75) > mixed_fraction(1.0) + 0.2


def test_seg_eval_transform_keeps_mask_size_and_normalises():
    sample = _aligned_seg_sample(40, 56)
    out = dt.build_seg_eval_transform(dict(scale=20), MEAN, STD)(dict(sample))
    assert out["image"].shape == (3, 20, 28) and torch.equal(out["mask"], sample["mask"])
    same = dt.build_seg_eval_transform(dict(scale=None), MEAN, STD)(dict(sample))
    expected = (sample["image"] - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    torch.testing.assert_close(same["image"], expected)


def test_depth_transforms_shapes_alignment_and_determinism():
    g = torch.Generator().manual_seed(1)
    depth = torch.rand(48, 64, generator=g) * 9 + 0.5
    image = torch.rand(3, 48, 64, generator=g)
    image[0] = depth / 10
    sample = {"image": image, "depth": depth, "name": "d"}
    tf = dt.build_depth_train_transform(dict(fixed_crop="nyu", crop_size=(32, 40), rotation_deg=0.0,
                                             color_aug=False), MEAN, STD)
    for seed in range(4):
        torch.manual_seed(seed)
        out = tf(dict(sample))
        assert out["image"].shape == (3, 32, 40) and out["depth"].shape == (32, 40)
        torch.testing.assert_close(out["image"][0] * STD[0] + MEAN[0], out["depth"] / 10, atol=1e-6, rtol=0)
    full = dt.build_depth_train_transform(dict(fixed_crop="nyu", crop_size=(48, 64), rotation_deg=0.0,
                                               flip_prob=0.0), MEAN, STD)  # crop > image: pads
    torch.manual_seed(0)
    a = full(dict(sample))
    torch.manual_seed(0)
    b = full(dict(sample))
    assert a["depth"].shape == (48, 64) and torch.equal(a["image"], b["image"]) and torch.equal(a["depth"], b["depth"])
    # NYU crop of 48x64 keeps rows 4:47, cols 4:60 (bounds scaled from 480x640); the rest is padding
    assert torch.equal(a["depth"][:43, :56], depth[4:47, 4:60])
    assert (a["depth"][43:] == 0).all() and (a["depth"][:, 56:] == 0).all()
    rotated = dt.build_depth_train_transform(dict(crop_size=(48, 64), rotation_prob=1.0, rotation_deg=10.0,
                                                  flip_prob=0.0), MEAN, STD)
    r = rotated(dict(sample))
    assert set(r["depth"].unique().tolist()) <= set(depth.unique().tolist()) | {0.0}  # nearest: no new depths
    assert (r["depth"] == 0).any() and not torch.equal(r["depth"], depth)
    ev = dt.build_depth_eval_transform(dict(scale=24), MEAN, STD)(dict(sample))
    assert ev["image"].shape == (3, 24, 32) and torch.equal(ev["depth"], depth)
    with pytest.raises(ConfigError, match="fixed_crop"):
        dt.build_depth_eval_transform(dict(fixed_crop="kitti"), MEAN, STD)


def test_dataset_applies_joint_transform(ade_root):
    ds = dense.build_ade20k({}, str(ade_root))["train"]
    ds.transform = dt.build_seg_train_transform(dict(scale=48, crop_size=32), MEAN, STD)
    torch.manual_seed(0)
    a = ds[1]
    torch.manual_seed(0)
    b = ds[1]
    assert a["image"].shape == (3, 32, 32) and torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    assert set(a["mask"].unique().tolist()) <= set(range(6)) | {255}
