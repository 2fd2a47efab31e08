"""Dataset readers: Fashion-MNIST idx files, CSV manifests, folder layouts (validation before compute)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_OPTIONS

from dinobench.data import fashion_mnist
from dinobench.data.csv_manifest import build_csv
from dinobench.data.fashion_mnist import IMAGES_MAGIC, LABELS_MAGIC, build_fashion_mnist, read_idx
from dinobench.data.folder import build_folder, build_imagenet
from dinobench.errors import ConfigError, DataError

SMALL = ["--cfg-options", *TINY_OPTIONS, "transform.resize=16", "transform.crop=16"]


# --- Fashion-MNIST ----------------------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, magic: int | None = None, compress: bool = True) -> Path:
    """Our own idx writer: big-endian magic (0x0000, 0x08 = uint8, ndim), dims, raw bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = (0x0800 | array.ndim) if magic is None else magic
    blob = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape) + array.tobytes()
    opener = gzip.open if compress else open
    with opener(path, "wb") as fh:
        fh.write(blob)
    return path


def make_fashion(root: Path, n_train_per_class: int = 3, n_val_per_class: int = 2, seed: int = 0,
                 compress: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    data = {}
    for prefix, per_class in (("train", n_train_per_class), ("t10k", n_val_per_class)):
        labels = np.repeat(np.arange(10, dtype=np.uint8), per_class)
        rng.shuffle(labels)
        images = rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
        suffix = ".gz" if compress else ""
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", images, compress=compress)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compress=compress)
        data["train" if prefix == "train" else "val"] = (images, labels)
    return data


@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_reads_idx_files_back(tmp_path, compress):
    data = make_fashion(tmp_path / "fm", compress=compress)
    splits = build_fashion_mnist({}, str(tmp_path / "fm"))
    assert set(splits) == {"train", "val"}
    for split, (images, labels) in data.items():
        ds = splits[split]
        assert len(ds) == len(labels) and ds.labels == labels.tolist()
        assert len(ds.classes) == 10 and ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
        for i in (0, len(ds) - 1):
            image, label = ds[i]
            assert image.mode == "RGB" and image.size == (28, 28) and label == labels[i]
            rgb = np.asarray(image)
            assert (rgb == images[i][..., None]).all()  # grey replicated into 3 channels, pixel-exact
    assert splits["train"].fingerprint != splits["val"].fingerprint
    assert build_fashion_mnist({}, str(tmp_path / "fm"))["train"].fingerprint == splits["train"].fingerprint


def test_fashion_mnist_fingerprint_follows_content_and_subset(tmp_path):
    data = make_fashion(tmp_path / "fm")
    before = build_fashion_mnist({}, str(tmp_path / "fm"))["train"].fingerprint
    images, labels = data["train"]
    images = images.copy()
    images[0, 0, 0] ^= 1  # one pixel
    write_idx(tmp_path / "fm" / "train-images-idx3-ubyte.gz", images)
    after = build_fashion_mnist({}, str(tmp_path / "fm"))["train"].fingerprint
    assert after != before
    subset = build_fashion_mnist({"train_subset": 20}, str(tmp_path / "fm"))["train"].fingerprint
    assert subset not in (before, after)


def test_fashion_mnist_subsets_are_stratified_and_seeded(tmp_path):
    make_fashion(tmp_path / "fm", n_train_per_class=6, n_val_per_class=4)
    root = str(tmp_path / "fm")
    a = build_fashion_mnist({"train_subset": 30, "val_subset": 20, "subset_seed": 0}, root)
    assert len(a["train"]) == 30 and len(a["val"]) == 20
    assert np.bincount(a["train"].labels, minlength=10).tolist() == [3] * 10
    assert np.bincount(a["val"].labels, minlength=10).tolist() == [2] * 10
    again = build_fashion_mnist({"train_subset": 30, "val_subset": 20, "subset_seed": 0}, root)
    other = build_fashion_mnist({"train_subset": 30, "val_subset": 20, "subset_seed": 1}, root)
    assert again["train"].samples == a["train"].samples
    assert other["train"].samples != a["train"].samples
    assert other["train"].fingerprint != a["train"].fingerprint
    with pytest.raises(ConfigError, match="dataset.train_subset=5: a stratified subset needs at least one"):
        build_fashion_mnist({"train_subset": 5}, root)
    with pytest.raises(ConfigError, match="dataset.val_subset must be a positive integer"):
        build_fashion_mnist({"val_subset": "many"}, root)


def test_fashion_mnist_errors(tmp_path):
    with pytest.raises(DataError, match="install the Debian package dataset-fashion-mnist"):
        build_fashion_mnist({}, str(tmp_path / "nowhere"))
    make_fashion(tmp_path / "fm")
    (tmp_path / "fm" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz not found; install the Debian package "
                                        r"dataset-fashion-mnist or pass --data-root DIR with train-images"):
        build_fashion_mnist({}, str(tmp_path / "fm"))
    # labels file where an images file belongs: wrong magic number
    bad = tmp_path / "bad"
    make_fashion(bad)
    write_idx(bad / "train-images-idx3-ubyte.gz", np.zeros(60, dtype=np.uint8))  # magic 0x801
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: not an idx file of the expected kind "
                                        r"\(magic 0x00000801, expected 0x00000803\)"):
        build_fashion_mnist({}, str(bad))
    # truncated payload
    blob = (IMAGES_MAGIC.to_bytes(4, "big") + (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
            + bytes(28 * 28))
    path = tmp_path / "short.gz"
    path.write_bytes(gzip.compress(blob))
    with pytest.raises(DataError, match="data bytes, header says"):
        read_idx(path, IMAGES_MAGIC)
    # not gzip at all
    (tmp_path / "junk.gz").write_bytes(b"definitely not gzip")
    with pytest.raises(DataError, match="junk.gz: cannot read"):
        read_idx(tmp_path / "junk.gz", LABELS_MAGIC)


def test_fashion_mnist_knn_end_to_end_on_tiny_files(run_cli, tmp_path):
    make_fashion(tmp_path / "fm", n_train_per_class=4, n_val_per_class=2)
    code, out, err = run_cli("run", "--backbone", "vit_tiny", "--task", "fashion-mnist-knn", "--data-root",
                             str(tmp_path / "fm"), "--output", str(tmp_path / "out"), *SMALL,
                             "features.cache=false")
    assert code == 0, err
    record = json.loads(next((tmp_path / "out").rglob("result.json")).read_text())
    assert record["dataset"]["splits"]["train"]["size"] == 40 and record["dataset"]["splits"]["val"]["size"] == 20
    assert record["dataset"]["splits"]["train"]["num_classes"] == 10
    assert 0 <= record["main_metric"]["value"] <= 100


def test_debian_fashion_mnist_package():
    root = fashion_mnist.DEBIAN_ROOT
    if not (root / "train-images-idx3-ubyte.gz").is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{root}: Debian package dataset-fashion-mnist missing on CI; apt-get install it")
        pytest.skip("Debian package dataset-fashion-mnist not installed")
    splits = build_fashion_mnist({}, None)  # the default location
    assert len(splits["train"]) == 60000 and len(splits["val"]) == 10000
    assert np.bincount(splits["train"].labels).tolist() == [6000] * 10  # the official, balanced sets
    assert np.bincount(splits["val"].labels).tolist() == [1000] * 10
    image, label = splits["train"][0]
    assert image.size == (28, 28) and label == 9  # the first training image is an ankle boot
    sub = build_fashion_mnist({"train_subset": 1000, "val_subset": 200}, None)
    assert np.bincount(sub["train"].labels).tolist() == [100] * 10


# --- CSV manifests -------------------------------------------------------------------------------------------


def make_csv_dataset(root: Path, train_per_class: int = 3, val_per_class: int = 2,
                     classes: tuple[str, ...] = ("cat", "dog")) -> Path:
    """Images in root/images/<class>/; train.csv with relative paths, val.csv with absolute ones."""
    rng = np.random.default_rng(0)
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        lines = ["path,label,note"]
        for cls in classes:
            (root / "images" / cls).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                path = root / "images" / cls / f"{split}{i}.png"
                Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(path)
                lines.append(f"{path.relative_to(root) if split == 'train' else path},{cls},x")
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return root


def test_csv_reads_manifests(tmp_path):
    root = make_csv_dataset(tmp_path / "d")
    splits = build_csv({}, str(root))
    assert splits["train"].classes == ["cat", "dog"] and splits["val"].classes == ["cat", "dog"]
    assert splits["train"].labels == [0, 0, 0, 1, 1, 1] and splits["val"].labels == [0, 0, 1, 1]
    source, _ = splits["train"].samples[3]
    assert Path(source) == root / "images" / "dog" / "train0.png"  # relative to the CSV's folder
    assert splits["train"][0][0].size == (12, 12)
    # dataset.classes fixes the order; explicit CSV paths relative to --data-root
    (root / "lists").mkdir()
    (root / "lists" / "t.csv").write_text((root / "train.csv").read_text().replace("images/", "../images/"))
    fixed = build_csv({"classes": ["dog", "cat"], "train_csv": "lists/t.csv", "val_csv": str(root / "val.csv")},
                      str(root))
    assert fixed["train"].labels == [1, 1, 1, 0, 0, 0] and fixed["train"].classes == ["dog", "cat"]
    # a UTF-8 BOM (Excel) is fine
    (root / "train.csv").write_bytes(b"\xef\xbb\xbf" + (root / "train.csv").read_bytes())
    assert build_csv({}, str(root))["train"].labels == splits["train"].labels


def test_csv_fingerprints(tmp_path):
    root = make_csv_dataset(tmp_path / "d")
    first = build_csv({}, str(root))["train"]
    image = root / "images" / "cat" / "train0.png"
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched (maybe edited in place)
    touched = build_csv({}, str(root))["train"]
    assert touched.fingerprint == first.fingerprint  # protocol hash: same content description
    assert touched.cache_fingerprint != first.cache_fingerprint  # feature cache: never trust a touched file
    text = (root / "train.csv").read_text()
    (root / "train.csv").write_text(text.replace("train0.png,cat", "train0.png,dog", 1))
    relabelled = build_csv({}, str(root))["train"]
    assert relabelled.fingerprint != first.fingerprint


def _csv_error(tmp_path: Path, name: str, mutate, cfg: dict | None = None) -> str:
    root = make_csv_dataset(tmp_path / name)
    mutate(root)
    with pytest.raises(DataError) as info:
        build_csv(cfg or {}, str(root))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_csv_validation_errors(tmp_path):
    msg = _csv_error(tmp_path, "nocsv", lambda r: (r / "val.csv").unlink())
    assert msg.startswith(f"{tmp_path / 'nocsv' / 'val.csv'}: CSV manifest not found")

    msg = _csv_error(tmp_path, "nocol", lambda r: (r / "train.csv").write_text("file,label\na.png,cat\n"))
    assert msg == (f"{tmp_path / 'nocol' / 'train.csv'}: missing column(s) path (header is file,label); "
                   f"the first line must be path,label")

    def remove_images(root: Path) -> None:
        for cls in ("cat", "dog"):
            for i in range(3 if cls == "cat" else 2):
                (root / "images" / cls / f"train{i}.png").unlink()

    msg = _csv_error(tmp_path, "noimg", remove_images)
    assert msg.startswith(f"{tmp_path / 'noimg' / 'train.csv'}: 5 image file(s) missing "
                          f"(row 2: images/cat/train0.png; row 3: images/cat/train1.png; row 4: "
                          f"images/cat/train2.png; ...); paths are relative to {tmp_path / 'noimg'}")

    def unseen_val_label(root: Path) -> None:
        lines = (root / "val.csv").read_text().splitlines()
        lines[2] = lines[2].replace(",cat,", ",bird,")
        (root / "val.csv").write_text("\n".join(lines) + "\n")

    msg = _csv_error(tmp_path, "unseen", unseen_val_label)
    assert msg.startswith(f"{tmp_path / 'unseen' / 'val.csv'}: row 3: label 'bird' does not occur in train.csv")

    msg = _csv_error(tmp_path, "emptyclass", lambda r: None, cfg={"classes": ["cat", "dog", "cow"]})
    assert msg.startswith(f"{tmp_path / 'emptyclass' / 'train.csv'}: class(es) 'cow' have no rows")

    msg = _csv_error(tmp_path, "notlisted", lambda r: None, cfg={"classes": ["cat"]})
    assert "row 5: label 'dog' is not in dataset.classes (3 such rows)" in msg

    def empty_label(root: Path) -> None:
        text = (root / "train.csv").read_text().replace("train1.png,cat,x", "train1.png,,x")
        (root / "train.csv").write_text(text)

    msg = _csv_error(tmp_path, "emptylabel", empty_label)
    assert msg == f"{tmp_path / 'emptylabel' / 'train.csv'}: row 3: empty label; fill it in or delete the row"

    msg = _csv_error(tmp_path, "norows", lambda r: (r / "train.csv").write_text("path,label\n"))
    assert "no rows after the header" in msg

    with pytest.raises(DataError, match="dataset 'csv' needs --data-root DIR"):
        build_csv({}, None)


def test_csv_knn_end_to_end_matches_direct_evaluation(run_cli, tmp_path):
    from dinobench.backbones import create_backbone
    from dinobench.data.transforms import build_eval_transform
    from dinobench.features import extract_features
    from dinobench.protocols.knn import KNNProtocol
    from dinobench.resolve import resolve_task
    from dinobench.utils.seeding import seed_everything

    from conftest import TINY

    root = make_csv_dataset(tmp_path / "d", train_per_class=5, val_per_class=3, classes=("a", "b", "c"))
    code, out, err = run_cli("run", "--backbone", "vit_tiny", "--task", "csv-knn", "--data-root", str(root),
                             "--output", str(tmp_path / "out"), "--seed", "3", *SMALL,
                             f"features.cache_dir={tmp_path / 'cache'}")
    assert code == 0, err
    record = json.loads(next((tmp_path / "out").rglob("result.json")).read_text())
    assert record["dataset"]["name"] == "csv"
    assert record["dataset"]["splits"]["train"]["size"] == 15 and record["dataset"]["splits"]["val"]["num_classes"] == 3
    # the same computation by hand
    cfg = resolve_task("csv-knn", [*TINY_OPTIONS, "transform.resize=16", "transform.crop=16"])
    seed_everything(3)
    model = create_backbone("vit_tiny", **TINY)
    splits = build_csv(cfg["dataset"], str(root))
    feats = {}
    for name, ds in splits.items():
        ds.transform = build_eval_transform(cfg["transform"], model.image_mean, model.image_std)
        feats[name] = extract_features(model, ds, batch_size=4)
    want = KNNProtocol(cfg["protocol"]).evaluate(feats["train"].features, feats["train"].labels,
                                                 feats["val"].features, feats["val"].labels, 3)
    for key, value in want.items():
        assert record["metrics"][key] == pytest.approx(value, abs=1e-9), key


def test_csv_errors_reach_the_cli_as_one_line(run_cli, tmp_path):
    root = make_csv_dataset(tmp_path / "d")
    (root / "images" / "dog" / "val1.png").unlink()
    code, out, err = run_cli("run", "--backbone", "vit_tiny", "--task", "csv-knn", "--data-root", str(root),
                             "--output", str(tmp_path / "out"), *SMALL)
    assert code == 2
    assert err.strip().count("\n") == 0 and "val.csv: 1 image file(s) missing (row 5:" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("result.json"))


# --- folder / imagenet layout (what tests/core/test_cli_run.py does not cover) --------------------------------------


def make_folder(root: Path, classes=("a", "b"), per_class: int = 2) -> Path:
    for split in ("train", "val"):
        for cls in classes:
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(root / split / cls / f"{i}.png")
    return root


def test_folder_split_without_class_folders(tmp_path):
    root = make_folder(tmp_path / "f")
    for cls in ("a", "b"):
        for f in (root / "val" / cls).iterdir():
            f.unlink()
        (root / "val" / cls).rmdir()
    (root / "val" / "stray.png").write_bytes(b"")
    with pytest.raises(DataError, match=f"{root / 'val'}: no class folders; expected"):
        build_folder({}, str(root))


def test_folder_ignores_non_images_and_hidden_folders(tmp_path):
    root = make_folder(tmp_path / "f")
    (root / "train" / "a" / "notes.txt").write_text("not an image")
    (root / "train" / ".cache").mkdir()
    (root / "val" / ".cache").mkdir()
    splits = build_folder({}, str(root))
    assert splits["train"].classes == ["a", "b"] and len(splits["train"]) == 4
    # a class folder holding only non-image files counts as empty
    for f in (root / "train" / "b").iterdir():
        f.unlink()
    (root / "train" / "b" / "readme.md").write_text("x")
    with pytest.raises(DataError, match=f"{root / 'train' / 'b'}: class folder has no images"):
        build_folder({}, str(root))


def test_folder_fingerprint_changes_when_a_file_is_added(tmp_path):
    root = make_folder(tmp_path / "f")
    before = build_folder({}, str(root))
    Image.new("RGB", (8, 8)).save(root / "train" / "a" / "new.png")
    after = build_folder({}, str(root))
    assert after["train"].fingerprint != before["train"].fingerprint
    assert after["val"].fingerprint == before["val"].fingerprint


def test_imagenet_labels_txt_and_custom_split_names(tmp_path):
    root = make_folder(tmp_path / "in", classes=("n01440764", "n01443537"))
    (root / "labels.txt").write_text("n01440764,tench\nn01443537,goldfish\n")
    splits = build_imagenet({}, str(root))
    assert splits["train"].classes == ["tench", "goldfish"] and splits["train"].name == "imagenet"
    assert splits["val"].labels == [0, 0, 1, 1]
    (root / "train").rename(root / "training")
    with pytest.raises(DataError, match="split folder missing"):
        build_imagenet({}, str(root))
    assert len(build_imagenet({"train_split": "training"}, str(root))["train"]) == 4


def test_new_datasets_are_registered():
    from dinobench.plugin_manager import get_registries

    datasets = get_registries().datasets
    assert datasets.get("fashion_mnist").builder.endswith("fashion_mnist:build_fashion_mnist")
    assert datasets.get("csv").builder.endswith("csv_manifest:build_csv")
    tasks = get_registries().tasks
    assert tasks.get("fashion-mnist-knn") and tasks.get("csv-knn")
