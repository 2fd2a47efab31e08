"""On-disk feature cache: reuse across runs, invalidation, resume, corruption, locking, torchrun sharding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from conftest import TINY

import dinobench
import dinobench.features.extract as extraction
from dinobench.data.base import ClassificationDataset
from dinobench.errors import ConfigError, DataError
from dinobench.features import (FeatureCache, backbone_key_payload, cache_root, extract_features,
                                load_or_extract)

OPTIONS = {**{f"backbone.{k}": v for k, v in TINY.items()}, "transform.resize": 16, "transform.crop": 16}
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(autouse=True)
def _private_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("DINOBENCH_CACHE", str(tmp_path / "env-cache"))


@pytest.fixture
def forwards(monkeypatch):
    """Rows of every batch that went through the backbone."""
    rows: list[int] = []
    original = extraction.compute_features

    def counting(model, images, kind="cls"):
        rows.append(int(images.shape[0]))
        return original(model, images, kind)

    monkeypatch.setattr(extraction, "compute_features", counting)
    return rows


class RandomImages(ClassificationDataset):
    """``n`` random 16x16 RGB images, labels ``i % 3``; optionally fails once at ``fail_at``, or is slow."""

    def __init__(self, n: int = 50, fail_at: int | None = None, delay: float = 0.0, fingerprint: str = "rnd"):
        rng = np.random.default_rng(0)
        self.pixels = rng.integers(0, 255, (n, 16, 16, 3), dtype=np.uint8)
        super().__init__("random", "train", [(i, i % 3) for i in range(n)], ["a", "b", "c"], fingerprint,
                         transform=T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)]))
        self.fail_at, self.delay = fail_at, delay

    def load(self, source: int) -> Image.Image:
        if source == self.fail_at:
            self.fail_at = None
            raise DataError(f"simulated read failure at index {source}")
        if self.delay:
            time.sleep(self.delay)
        return Image.fromarray(self.pixels[source])


def tiny_model(seed: int = 0, **overrides) -> torch.nn.Module:
    from dinobench.utils.seeding import seed_everything

    seed_everything(seed)  # what the runner does before building a random-init backbone
    return dinobench.create_backbone("vit_tiny", **{**TINY, **overrides})


def make_eval_split(root: Path, split: str) -> ClassificationDataset:
    """A split of the folder dataset with the transform ``run`` gives it (resize/crop 16)."""
    from dinobench.data.folder import build_folder
    from dinobench.data.transforms import build_eval_transform

    ds = build_folder({}, str(root))[split]
    ds.transform = build_eval_transform({"resize": 16, "crop": 16, "interpolation": "bicubic"}, MEAN, STD)
    return ds


def payload(**changes) -> dict:
    args = dict(backbone="vit_tiny", weights_sha256=None, seed=0, overrides=dict(TINY), transform={"resize": 16},
                mean=MEAN, std=STD, precision="float32")
    dataset = changes.pop("dataset", {"type": "random", "fingerprint": "rnd", "split": "train", "size": 50})
    args.update(changes)
    return {**backbone_key_payload(**args), "dataset": dataset}


N_TRAIN, N_VAL = 36, 12  # image folder written by make_folder


def make_folder(root: Path) -> Path:
    """3 classes of random 16x16 images: 12 train + 4 val each."""
    rng = np.random.default_rng(0)
    for split, per_class in (("train", N_TRAIN // 3), ("val", N_VAL // 3)):
        for c, cls in enumerate("abc"):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = np.clip(rng.normal(60 + 60 * c, 40, (16, 16, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / cls / f"{i}.png")
    return root


def run_folder(tmp_path: Path, weights: str | None = None, **extra):
    root = tmp_path / "data"
    if not root.exists():
        make_folder(root)
    return dinobench.run(backbone="vit_tiny", task="folder-knn", weights=weights, data_root=str(root),
                         output_dir=str(tmp_path / "out"),
                         options={**OPTIONS, "protocol.nb_knn": [1, 5, 10], **extra})


def entries(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.glob("*/manifest.json"))


def manifests(root: Path) -> list[dict]:
    return [json.loads((entry / "manifest.json").read_text()) for entry in entries(root)]


#: a backbone deep enough for the linear probe (its input uses the last 4 blocks)
DEEP = {**TINY, "depth": 4}
#: small, fast settings of each folder task
PROTOCOL_OPTIONS = {
    "folder-knn": {"protocol.nb_knn": [1, 5, 10]},
    "folder-logreg": {"protocol.grid_size": 3, "protocol.max_iter": 100, "protocol.n_jobs": 1},
    "folder-linear": {"protocol.epochs": 2, "protocol.learning_rates": [0.01, 0.1],
                      "protocol.train_augmentation": False},  # the cached variant: what this file tests
}


def run_deep(tmp_path: Path, task: str, weights: str | None = None, **extra):
    """``task`` on the image folder with the depth-4 backbone (all three protocols can run on it)."""
    root = tmp_path / "data"
    if not root.exists():
        make_folder(root)
    options = {**OPTIONS, "backbone.depth": 4, "features.cache_dir": str(tmp_path / "cache"),
               **PROTOCOL_OPTIONS[task], **extra}
    return dinobench.run(backbone="vit_tiny", task=task, weights=weights, data_root=str(root),
                         output_dir=str(tmp_path / "out"), options=options)


def cached_flags(result, kind: str = "cls") -> list[float]:
    suffix = "" if kind == "cls" else f"_{kind}"
    return [result.timings[f"features_{split}{suffix}_cached"] for split in ("train", "val")]


# --- reuse across runs ------------------------------------------------------------------------------------


def test_linear_then_knn_then_logreg_extract_once(tmp_path, forwards):
    linear = run_deep(tmp_path, "folder-linear")
    assert sum(forwards) == N_TRAIN + N_VAL and cached_flags(linear, "cls4_avgpool") == [0.0, 0.0]
    forwards.clear()
    knn = run_deep(tmp_path, "folder-knn")  # cls cut from the cls4_avgpool entries
    assert forwards == [] and cached_flags(knn) == [1.0, 1.0]
    logreg = run_deep(tmp_path, "folder-logreg")
    assert forwards == [] and cached_flags(logreg) == [1.0, 1.0]
    found = manifests(tmp_path / "cache")
    assert sorted(m["payload"]["kind"] for m in found) == ["cls", "cls", "cls4_avgpool", "cls4_avgpool"]
    sources = {m["key"]: m for m in found if m["payload"]["kind"] == "cls4_avgpool"}
    model = tiny_model(0, depth=4)
    for m in found:
        if m["payload"]["kind"] != "cls":
            continue
        source = sources[m["derived_from"]["key"]]  # the same key except the kind
        assert {**source["payload"], "kind": "cls"} == m["payload"] and m["derived_from"]["columns"] == [192, 256]
        cut = np.load(tmp_path / "cache" / m["key"] / "features.npy")
        wanted = extract_features(model, make_eval_split(tmp_path / "data", m["payload"]["dataset"]["split"]))
        assert torch.equal(torch.from_numpy(cut), wanted.features)  # bit for bit what a cls extraction gives
    forwards.clear()
    fresh = run_deep(tmp_path, "folder-knn", **{"features.cache": False})
    assert sum(forwards) == N_TRAIN + N_VAL and fresh.metrics == knn.metrics


def test_knn_then_logreg_share_and_the_linear_probe_extracts_once(tmp_path, forwards):
    knn = run_deep(tmp_path, "folder-knn")
    assert sum(forwards) == N_TRAIN + N_VAL and cached_flags(knn) == [0.0, 0.0]
    forwards.clear()
    logreg = run_deep(tmp_path, "folder-logreg")
    assert forwards == [] and cached_flags(logreg) == [1.0, 1.0]
    linear = run_deep(tmp_path, "folder-linear")  # cls4_avgpool cannot be cut from cls: one extraction
    assert sum(forwards) == N_TRAIN + N_VAL and cached_flags(linear, "cls4_avgpool") == [0.0, 0.0]
    forwards.clear()
    again = [run_deep(tmp_path, task) for task in ("folder-linear", "folder-knn", "folder-logreg")]
    assert forwards == [] and cached_flags(again[0], "cls4_avgpool") == cached_flags(again[1]) == [1.0, 1.0]
    assert again[1].metrics == knn.metrics and again[2].metrics == logreg.metrics
    assert len(entries(tmp_path / "cache")) == 4  # cls and cls4_avgpool of train and val


def test_changing_the_weights_file_invalidates_every_protocol(tmp_path, forwards):
    weights = tmp_path / "w.pth"
    torch.save(tiny_model(1, depth=4).state_dict(), weights)
    linear = run_deep(tmp_path, "folder-linear", weights=str(weights))
    assert sum(forwards) == N_TRAIN + N_VAL
    forwards.clear()
    for task in ("folder-knn", "folder-logreg"):
        assert cached_flags(run_deep(tmp_path, task, weights=str(weights))) == [1.0, 1.0] and forwards == []
    torch.save(tiny_model(2, depth=4).state_dict(), weights)  # same path, other content
    knn = run_deep(tmp_path, "folder-knn", weights=str(weights))
    assert sum(forwards) == N_TRAIN + N_VAL and cached_flags(knn) == [0.0, 0.0]
    forwards.clear()
    assert cached_flags(run_deep(tmp_path, "folder-logreg", weights=str(weights))) == [1.0, 1.0] and forwards == []
    relinear = run_deep(tmp_path, "folder-linear", weights=str(weights))
    assert sum(forwards) == N_TRAIN + N_VAL and cached_flags(relinear, "cls4_avgpool") == [0.0, 0.0]
    assert relinear.weights_sha256 != linear.weights_sha256
    by_sha: dict[str, set] = {}
    for m in manifests(tmp_path / "cache"):
        by_sha.setdefault(m["payload"]["backbone"]["weights"]["sha256"], set()).add(m["payload"]["kind"])
    assert by_sha == {linear.weights_sha256: {"cls", "cls4_avgpool"}, relinear.weights_sha256: {"cls", "cls4_avgpool"}}


def test_second_knn_run_with_other_settings_does_no_backbone_forward(tmp_path, forwards):
    cache = {"features.cache_dir": str(tmp_path / "cache")}
    first = run_folder(tmp_path, **cache)
    assert sum(forwards) == N_TRAIN + N_VAL  # every image once
    assert first.timings["features_train_cached"] == 0.0 and first.timings["features_val_cached"] == 0.0
    forwards.clear()
    second = run_folder(tmp_path, **cache, **{"protocol.temperature": 0.5, "protocol.nb_knn": [3]})  # other protocol
    assert forwards == []
    assert second.timings["features_train_cached"] == 1.0 and second.timings["features_val_cached"] == 1.0
    fresh = run_folder(tmp_path, **cache, **{"protocol.temperature": 0.5, "protocol.nb_knn": [3],
                                             "features.cache": False})
    assert sum(forwards) == N_TRAIN + N_VAL
    assert fresh.timings["features_train_cached"] == 0.0
    assert fresh.metrics == second.metrics  # cached features give what fresh ones give
    assert fresh.protocol_hash == second.protocol_hash  # features.cache* are runtime-only keys
    other_dir = run_folder(tmp_path, **{"features.cache_dir": str(tmp_path / "cache2"), "features.chunk_size": 5})
    assert other_dir.protocol_hash == first.protocol_hash
    forwards.clear()
    assert len(entries(tmp_path / "cache")) == 2  # train and val; cache=false wrote nothing
    assert len(entries(tmp_path / "cache2")) == 2
    assert not list((tmp_path / "cache").glob("*/chunks"))
    for entry in entries(tmp_path / "cache"):  # ... and they are the features, bit for bit
        split = json.loads((entry / "manifest.json").read_text())["payload"]["dataset"]["split"]
        ds = make_eval_split(tmp_path / "data", split)
        assert torch.equal(torch.from_numpy(np.load(entry / "features.npy")),
                           extract_features(tiny_model(0), ds, batch_size=64).features)
    manifest = json.loads((entries(tmp_path / "cache")[0] / "manifest.json").read_text())
    assert manifest["dtype"] == "float32" and manifest["shape"][1] == 64
    assert manifest["payload"]["kind"] == "cls" and manifest["payload"]["backbone"]["overrides"] == TINY
    assert not (tmp_path / "env-cache").exists()  # features.cache_dir beats $DINOBENCH_CACHE


def test_changing_the_weights_file_invalidates(tmp_path, forwards):
    weights = tmp_path / "w.pth"
    torch.save(tiny_model(1).state_dict(), weights)
    run = lambda: run_folder(tmp_path, weights=str(weights))  # noqa: E731
    run()
    assert sum(forwards) > 0
    forwards.clear()
    run()
    assert forwards == []
    torch.save(tiny_model(2).state_dict(), weights)  # same name, other content
    third = run()
    assert sum(forwards) == N_TRAIN + N_VAL and third.timings["features_train_cached"] == 0.0
    found = entries(tmp_path / "env-cache")  # default location: $DINOBENCH_CACHE
    assert len(found) == 4
    by_sha = {}
    for entry in found:
        manifest = json.loads((entry / "manifest.json").read_text())
        if manifest["payload"]["dataset"]["split"] == "train":
            by_sha[manifest["payload"]["backbone"]["weights"]["sha256"]] = np.load(entry / "features.npy")
    assert len(by_sha) == 2
    old, new = by_sha.values()
    assert not np.allclose(old, new)


# --- the key ------------------------------------------------------------------------------------------------


def test_key_changes_with_everything_that_changes_features(tmp_path):
    base = FeatureCache(tmp_path, {**payload(), "kind": "cls"}).key
    assert FeatureCache(tmp_path, {**payload(), "kind": "cls"}).key == base  # deterministic
    variants = {
        "kind": {**payload(), "kind": "cls4_avgpool"},
        "transform": {**payload(transform={"resize": 32}), "kind": "cls"},
        "mean": {**payload(mean=(0.5, 0.5, 0.5)), "kind": "cls"},
        "weights": {**payload(weights_sha256="ab" * 32), "kind": "cls"},
        "init seed": {**payload(seed=1), "kind": "cls"},
        "overrides": {**payload(overrides={**TINY, "depth": 3}), "kind": "cls"},
        "precision": {**payload(precision="bfloat16-autocast"), "kind": "cls"},
        "backbone code": {**payload(identity={"factory": "pkg.mod:other_vit", "provider": "package x 2.0"}),
                          "kind": "cls"},
        "split": {**payload(dataset={"type": "random", "fingerprint": "rnd", "split": "val", "size": 50}),
                  "kind": "cls"},
        "content": {**payload(dataset={"type": "random", "fingerprint": "other", "split": "train", "size": 50}),
                    "kind": "cls"},
    }
    keys = {name: FeatureCache(tmp_path, p).key for name, p in variants.items()}
    assert base not in keys.values() and len(set(keys.values())) == len(keys)
    # a given sha256 makes the init seed irrelevant: pretrained features do not depend on --seed
    assert payload(weights_sha256="ab" * 32, seed=1) == payload(weights_sha256="ab" * 32, seed=5)


def test_run_context_payload_per_split_and_what_disables_it(tmp_path):
    from dinobench.data.digits import build_digits
    from dinobench.runner import RunContext
    from dinobench.resolve import resolve_task

    cfg = resolve_task("digits-knn", OPTIONS)
    assert cfg["features"]["cache"] is True and cfg["features"]["chunk_size"] is None
    splits = build_digits(cfg["dataset"])
    other = build_digits({**cfg["dataset"], "split_seed": 1})
    transform = T.ToTensor()
    for ds in (*splits.values(), *other.values()):
        ds.transform = transform
    make = lambda ds, **fcfg: RunContext(  # noqa: E731
        task="t", cfg={**cfg, "features": {**cfg["features"], **fcfg}}, backbone=None, datasets=ds, device="cpu",
        seed=0, cache_payload=payload(), eval_transforms={k: transform for k in ds},
        dataset_types={k: "digits" for k in ds})
    ctx = make(splits)
    train, val = ctx._cache_payload("train"), ctx._cache_payload("val")
    assert train["dataset"]["split"] == "train" and val["dataset"]["size"] == 359
    assert FeatureCache(tmp_path, train).key != FeatureCache(tmp_path, val).key
    assert make(other)._cache_payload("train") != train  # different dataset content / split
    assert make(splits, batch_size=7, num_workers=3, chunk_size=10)._cache_payload("train") == train
    assert make(splits, cache=False)._cache_payload("train") is None
    with pytest.raises(ConfigError, match=r"features\.cache.*(expected bool|true or false)"):
        make(splits, cache="maybe")._cache_payload("train")
    splits["train"].transform = T.Compose([T.RandomHorizontalFlip(), T.ToTensor()])  # a protocol's own transform
    assert ctx._cache_payload("train") is None and ctx._cache_payload("val") is not None


def test_cache_root_precedence(monkeypatch, tmp_path):
    assert cache_root({"cache_dir": str(tmp_path / "cfg")}) == tmp_path / "cfg"
    assert cache_root({"cache_dir": None}) == tmp_path / "env-cache"
    monkeypatch.delenv("DINOBENCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root({}) == tmp_path / "xdg" / "dinobench" / "features"


def test_feature_kinds_are_separate_entries(tmp_path, forwards):
    model, ds = tiny_model(depth=4), RandomImages(20)  # cls4_avgpool needs 4 blocks
    cls, hit = load_or_extract(model, ds, payload=payload(), cache_dir=tmp_path, batch_size=8, kind="cls")
    pooled, pooled_hit = load_or_extract(model, ds, payload=payload(), cache_dir=tmp_path, batch_size=8,
                                         kind="cls4_avgpool")
    assert not hit and not pooled_hit and sum(forwards) == 40  # cls4_avgpool cannot be cut from cls
    assert cls.features.shape == (20, 64) and pooled.features.shape == (20, 5 * 64)
    assert len(entries(tmp_path)) == 2
    assert torch.equal(pooled.features[:, -2 * 64:-64], cls.features)  # last-block CLS inside, bit for bit
    assert cls.labels.tolist() == [i % 3 for i in range(20)]


@pytest.mark.parametrize("name, overrides, size", [("vit_tiny", {"depth": 4}, 16), ("convnext_tiny", {}, 32)])
def test_cls_is_cut_from_a_cached_cls4_avgpool_entry(tmp_path, forwards, name, overrides, size):
    from dinobench.utils.seeding import seed_everything

    seed_everything(0)
    model = dinobench.create_backbone(name, **({**TINY, **overrides} if name == "vit_tiny" else overrides))
    ds = RandomImages(20)
    ds.transform = T.Compose([T.Resize(size), T.ToTensor(), T.Normalize(MEAN, STD)])  # ConvNeXt: stride 32
    key = payload(backbone=name)
    kwargs = dict(payload=key, cache_dir=tmp_path, batch_size=8, chunk_size=6)
    pooled, _ = load_or_extract(model, ds, kind="cls4_avgpool", **kwargs)
    forwards.clear()
    cls, hit = load_or_extract(model, ds, kind="cls", **kwargs)
    assert hit and forwards == []
    assert torch.equal(cls.features, extract_features(model, ds, batch_size=8).features)  # what extraction gives
    assert torch.equal(cls.labels, pooled.labels)
    entry = FeatureCache(tmp_path, {**key, "kind": "cls"})
    source = FeatureCache(tmp_path, {**key, "kind": "cls4_avgpool"})
    width, dim = pooled.features.shape[1], int(model.embed_dim)
    manifest = json.loads(entry.manifest.read_text())
    assert manifest["derived_from"] == {"kind": "cls4_avgpool", "key": source.key,
                                        "columns": [width - 2 * dim, width - dim]}
    assert not entry.chunks_dir.exists() and len(entries(tmp_path)) == 2
    forwards.clear()
    again, hit = load_or_extract(model, ds, kind="cls", **kwargs)  # now a plain entry of its own
    assert hit and forwards == [] and torch.equal(again.features, cls.features)


def test_a_corrupt_or_missing_cls4_avgpool_entry_means_a_cls_extraction(tmp_path, forwards):
    model, ds = tiny_model(depth=4), RandomImages(20)
    kwargs = dict(payload=payload(), cache_dir=tmp_path, batch_size=8)
    load_or_extract(model, ds, kind="cls4_avgpool", **kwargs)
    source = FeatureCache(tmp_path, {**payload(), "kind": "cls4_avgpool"})
    blob = bytearray(source.features_file.read_bytes())
    blob[-5] ^= 0xFF
    source.features_file.write_bytes(bytes(blob))
    forwards.clear()
    cls, hit = load_or_extract(model, ds, kind="cls", **kwargs)
    assert not hit and sum(forwards) == 20
    assert "derived_from" not in json.loads(FeatureCache(tmp_path, {**payload(), "kind": "cls"}).manifest.read_text())
    other = payload(seed=1)  # no cls4_avgpool entry of this key: nothing to cut from, no stray folder
    forwards.clear()
    load_or_extract(model, ds, kind="cls", **{**kwargs, "payload": other})
    assert sum(forwards) == 20
    assert not FeatureCache(tmp_path, {**other, "kind": "cls4_avgpool"}).dir.exists()


# --- streaming, resume, corruption ---------------------------------------------------------------------------


def test_interrupted_extraction_resumes_at_the_first_missing_chunk(tmp_path, forwards):
    model = tiny_model()
    reference = extract_features(model, RandomImages(50), batch_size=4)
    forwards.clear()
    flaky = RandomImages(50, fail_at=37)
    kwargs = dict(payload=payload(), cache_dir=tmp_path, batch_size=4, chunk_size=10)
    with pytest.raises(DataError, match="simulated read failure at index 37"):
        load_or_extract(model, flaky, **kwargs)
    entry = FeatureCache(tmp_path, {**payload(), "kind": "cls"})
    assert sorted(p.name for p in entry.chunks_dir.iterdir()) == [
        f"rows_{s:012d}_{s + 10:012d}.npz" for s in (0, 10, 20)]
    assert not entry.manifest.exists() and entry.load() is None  # partial: never used
    forwards.clear()
    result, hit = load_or_extract(model, flaky, **kwargs)
    assert not hit and forwards == [4, 4, 2, 4, 4, 2]  # only chunks [30, 40) and [40, 50)
    torch.testing.assert_close(result.features, reference.features, atol=1e-6, rtol=0)
    assert torch.equal(result.labels, reference.labels)
    assert not entry.chunks_dir.exists()
    forwards.clear()
    again, hit = load_or_extract(model, flaky, **kwargs)
    assert hit and forwards == [] and torch.equal(again.features, result.features)


def test_corrupt_or_foreign_cache_is_recomputed(tmp_path, forwards):
    model, ds = tiny_model(), RandomImages(30)
    kwargs = dict(payload=payload(), cache_dir=tmp_path, batch_size=8, chunk_size=10)
    reference, _ = load_or_extract(model, ds, **kwargs)
    reference = reference.features.clone()
    entry = FeatureCache(tmp_path, {**payload(), "kind": "cls"})

    def flip_a_byte():
        blob = bytearray(entry.features_file.read_bytes())
        blob[-5] ^= 0xFF
        entry.features_file.write_bytes(bytes(blob))

    def truncate():
        entry.features_file.write_bytes(entry.features_file.read_bytes()[:-100])

    def foreign_manifest():
        manifest = json.loads(entry.manifest.read_text())
        manifest["payload"]["kind"] = "cls4_avgpool"
        entry.manifest.write_text(json.dumps(manifest))

    for damage in (flip_a_byte, truncate, foreign_manifest, lambda: entry.labels_file.unlink()):
        damage()
        forwards.clear()
        result, hit = load_or_extract(model, ds, **kwargs)
        assert not hit and sum(forwards) == 30, damage
        torch.testing.assert_close(result.features, reference, atol=0, rtol=0)
    # a garbage chunk (and a stale chunk of another chunk size) left by an earlier run
    for path in (entry.manifest, entry.features_file, entry.labels_file):
        path.unlink()
    entry.chunks_dir.mkdir()
    good = extract_features(model, ds, batch_size=8)
    entry.write_chunk(0, 10, good.features[:10], good.labels[:10])
    (entry.chunks_dir / f"rows_{10:012d}_{20:012d}.npz").write_bytes(b"PK\x03\x04 garbage")
    (entry.chunks_dir / f"rows_{0:012d}_{15:012d}.npz").write_bytes(b"stale")
    forwards.clear()
    result, hit = load_or_extract(model, ds, **kwargs)
    assert not hit and sum(forwards) == 20  # chunk [0, 10) reused; [10, 20) garbage, recomputed
    torch.testing.assert_close(result.features, reference, atol=1e-6, rtol=0)


def test_concurrent_extractions_of_one_key_compute_once(tmp_path, forwards):
    model = tiny_model()
    outcomes: dict[int, tuple] = {}
    start = threading.Barrier(2)

    def worker(i: int) -> None:
        start.wait()
        outcomes[i] = load_or_extract(model, RandomImages(24, delay=0.01), payload=payload(), cache_dir=tmp_path,
                                      batch_size=8, chunk_size=8)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(forwards) == 24  # one extraction; the other process waited on the lock and read it
    assert sorted(hit for _, hit in outcomes.values()) == [False, True]
    assert torch.equal(outcomes[0][0].features, outcomes[1][0].features)


# --- torchrun ----------------------------------------------------------------------------------------------------

DIST_SCRIPT = r"""
import json, os, sys
import numpy as np
import dinobench.features.extract as extraction

mode, out, data, options = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
rank = int(os.environ["RANK"])
rows = []
original = extraction.compute_features
extraction.compute_features = lambda m, x, kind="cls": (rows.append(int(x.shape[0])), original(m, x, kind))[1]

if mode == "cli":  # the user path: `dinobench run` joins the torchrun process group itself and leaves it
    from dinobench.cli import main

    code = main(["run", "--backbone", "vit_tiny", "--task", "folder-knn", "--data-root", data, "--output",
                 os.path.join(out, "results"), "--cfg-options", *[f"{k}={json.dumps(v)}" for k, v in options.items()]])
    assert code == 0
    with open(os.path.join(out, f"cli_rank{rank}.json"), "w") as fh:
        json.dump(sum(rows), fh)
else:  # no cache: chunks extracted in turn and all-gathered in order; run() inside an existing group
    import dinobench
    from dinobench.backbones import create_backbone
    from dinobench.data.folder import build_folder
    from dinobench.data.transforms import build_eval_transform
    from dinobench.features import load_or_extract
    from dinobench.resolve import resolve_task
    from dinobench.utils.seeding import seed_everything
    from dinobench.utils.distributed import init_from_env, shutdown

    os.environ["DINOBENCH_DIST_BACKEND"] = "gloo"
    init_from_env()
    options["features.cache"] = False
    result = dinobench.run(backbone="vit_tiny", task="folder-knn", data_root=data,
                           output_dir=os.path.join(out, "nocache"), options=options)
    run_rows = sum(rows)
    cfg = resolve_task("folder-knn", options)
    seed_everything(0)
    model = create_backbone("vit_tiny", **cfg["backbone"])
    train = build_folder(cfg["dataset"], data)["train"]
    train.transform = build_eval_transform(cfg["transform"], model.image_mean, model.image_std)
    rows.clear()
    fs, hit = load_or_extract(model, train, payload=None, batch_size=4, chunk_size=5)
    np.save(os.path.join(out, f"train_rank{rank}.npy"), fs.features.numpy())
    np.save(os.path.join(out, f"labels_rank{rank}.npy"), fs.labels.numpy())
    with open(os.path.join(out, f"mem_rank{rank}.json"), "w") as fh:
        json.dump({"metrics": result.metrics, "path": result.path, "run_rows": run_rows, "rows": sum(rows),
                   "hit": hit}, fh)
    shutdown()
"""


def _torchrun(mode: str, tmp_path: Path, data: Path, options: dict) -> None:
    script = tmp_path / "dist_extract.py"
    script.write_text(DIST_SCRIPT)
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", "DINOBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), mode, str(tmp_path), str(data), json.dumps(options)],
                          capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_torchrun_two_ranks_equal_single_process(tmp_path):
    data = make_folder(tmp_path / "data")
    options = {**OPTIONS, "protocol.nb_knn": [1, 5, 10], "features.cache_dir": str(tmp_path / "cache"),
               "features.chunk_size": 8, "features.batch_size": 4}
    single = dinobench.run(backbone="vit_tiny", task="folder-knn", data_root=str(data),
                           output_dir=str(tmp_path / "single"), options={**options, "features.cache": False})

    _torchrun("cli", tmp_path, data, options)
    records = list((tmp_path / "results").rglob("result.json"))
    assert len(records) == 1  # rank 0 writes the record
    record = json.loads(records[0].read_text())
    assert record["metrics"] == pytest.approx(single.metrics, abs=1e-9)
    assert record["timings"]["features_train_cached"] == 0.0
    rows = [json.loads((tmp_path / f"cli_rank{r}.json").read_text()) for r in (0, 1)]
    # train: 5 chunks of 8 rows (0,2,4 -> rank 0; 1,3 -> rank 1); val: chunks of 8 + 4 rows
    assert rows == [8 + 8 + 4 + 8, 8 + 8 + 4]
    model = tiny_model(0)
    wanted = {split: extract_features(model, make_eval_split(data, split), batch_size=64) for split in ("train", "val")}
    for entry in entries(tmp_path / "cache"):
        want = wanted[json.loads((entry / "manifest.json").read_text())["payload"]["dataset"]["split"]]
        torch.testing.assert_close(torch.from_numpy(np.load(entry / "features.npy")), want.features,
                                   atol=1e-5, rtol=0)
        assert np.array_equal(np.load(entry / "labels.npy"), want.labels.numpy())
    assert len(entries(tmp_path / "cache")) == 2 and not list((tmp_path / "cache").glob("*/chunks"))

    _torchrun("memory", tmp_path, data, options)
    ranks = [json.loads((tmp_path / f"mem_rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["path"] is not None and ranks[1]["path"] is None
    assert ranks[0]["metrics"] == ranks[1]["metrics"] == pytest.approx(single.metrics, abs=1e-9)
    assert [r["run_rows"] for r in ranks] == [8 + 8 + 4 + 8, 8 + 8 + 4]  # cache off: still sharded
    assert [r["rows"] for r in ranks] == [5 + 5 + 5 + 5, 5 + 5 + 5 + 1]  # chunks of 5: 0,2,4,6 / 1,3,5,7
    assert not ranks[0]["hit"]
    for r in (0, 1):  # every rank holds all rows, in dataset order
        torch.testing.assert_close(torch.from_numpy(np.load(tmp_path / f"train_rank{r}.npy")),
                                   wanted["train"].features, atol=1e-5, rtol=0)
        assert np.array_equal(np.load(tmp_path / f"labels_rank{r}.npy"), wanted["train"].labels.numpy())
