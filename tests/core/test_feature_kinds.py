"""Feature kinds as a registry (a hook), N-D cache entries, fp16 storage, arbitrary per-sample targets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import registered
import torch
from torchvision import transforms as T

from test_feature_cache import MEAN, STD, RandomImages, entries, payload, tiny_model

import dinobench.features.extract as extraction
from dinobench.errors import ConfigError, DataError, PluginError
from dinobench.features import (FeatureCache, FeatureCut, cache_key, entry_payload, extract_features,
                                load_or_extract)
from dinobench.hookspecs import hookimpl
from dinobench.plugin_manager import get_registries
from dinobench.utils.hashing import canonical_json

PATCH, GRID = 8, (2, 3)  # vit_tiny's patch size; patch grid of the 16 x 24 images below


@pytest.fixture
def forwards(monkeypatch):
    """``(kind, rows)`` of every batch that went through the backbone."""
    calls: list[tuple[str, int]] = []
    original = extraction.compute_features

    def counting(model, images, kind="cls"):
        calls.append((getattr(kind, "name", kind), int(images.shape[0])))  # the cache layer passes the resolved spec
        return original(model, images, kind)

    monkeypatch.setattr(extraction, "compute_features", counting)
    return calls


def grid_images(n: int = 20) -> RandomImages:
    """``n`` random images resized to 16 x 24: a non-square 2 x 3 patch grid."""
    ds = RandomImages(n)
    ds.transform = T.Compose([T.Resize((PATCH * GRID[0], PATCH * GRID[1])), T.ToTensor(), T.Normalize(MEAN, STD)])
    return ds


def mapping_of(tensor: torch.Tensor) -> str | None:
    """Path of the file mapped at ``tensor``'s data (None: anonymous memory, i.e. read into RAM)."""
    address = tensor.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        low, high = (int(a, 16) for a in fields[0].split("-"))
        if low <= address < high:
            return fields[5].strip() if len(fields) == 6 else None
    return None


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --- the registry and the hook ------------------------------------------------------------------------------


def test_first_party_kinds_are_registered_lazily_through_the_hook():
    registry = get_registries().feature_kinds
    assert {"cls", "cls4_avgpool", "patch_tokens"} <= set(registry.names())
    for name in ("cls", "cls4_avgpool", "patch_tokens"):
        spec = registry.get(name)
        assert spec.source == "dinobench.plugins.feature_kinds" and spec.description
        assert isinstance(spec.compute, str) and spec.compute.startswith("dinobench.features.kinds:")
    assert list(registry.get("cls").cut_from) == ["cls4_avgpool"]
    # listing imports no implementation: the plugin names "module:attr" targets
    code = ("import sys; from dinobench.plugin_manager import get_registries; "
            "r = get_registries().feature_kinds; assert 'patch_tokens' in r; "
            "print(sorted(m for m in sys.modules if m.startswith('dinobench.features')))")
    env = {**os.environ, "DINOBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    # only the lazy package and its table of built-in entries (no torch, no implementation)
    assert out.stdout.strip() == "['dinobench.features', 'dinobench.features.builtin']", out.stdout


def test_unknown_kind_is_a_one_line_config_error_naming_the_registered_ones(tmp_path):
    model, ds = tiny_model(), RandomImages(4)
    with pytest.raises(ConfigError) as err:
        load_or_extract(model, ds, payload=payload(), cache_dir=tmp_path, kind="patch_token")
    message = one_line(err)
    assert "unknown feature kind 'patch_token'" in message and "did you mean 'patch_tokens'" in message
    assert "built-in; pass kinds= for a plugin's: cls, cls4_avgpool, cls_multiscale, frame_patch_tokens, " \
           "patch_tokens" in message
    with pytest.raises(ConfigError, match=r"did you mean 'patch_tokens'.*\(registered: cls, "):
        extract_features(model, ds, kind="patch_token", kinds=get_registries().feature_kinds)
    with pytest.raises(ConfigError, match="unknown feature kind 'nope'"):
        extract_features(model, ds, kind="nope")
    assert not list(tmp_path.iterdir())  # nothing written before the check
    with pytest.raises(ConfigError, match="features dtype 'float64' is not supported"):
        load_or_extract(model, ds, payload=payload(), cache_dir=tmp_path, dtype="float64")


class KindsPlugin:
    """An in-process plugin: ``first_patch`` (the top-left patch token ``[D]``), cut from ``patch_tokens``,
    and ``broken`` (returns one row too few)."""

    @staticmethod
    def first_patch(model, images):
        (patches,) = model.get_intermediate_layers(images, n=1, reshape=True, norm=True)
        return patches[:, :, 0, 0]

    @staticmethod
    def first_patch_from_patch_tokens(model, source_shape):
        if len(source_shape) != 3:
            raise ValueError(f"expected [h, w, D], got {list(source_shape)}")
        return FeatureCut(lambda rows: rows[:, 0, 0, :], (source_shape[2],), {"patch": [0, 0]})

    @hookimpl
    def dinobench_register_feature_kinds(self, registry):
        registry.add("first_patch", self.first_patch, cut_from={"patch_tokens": self.first_patch_from_patch_tokens},
                     description="top-left patch token")
        registry.add("broken", lambda model, images: images[1:, 0, 0, :1])


@pytest.fixture
def kinds_plugin():
    with registered(KindsPlugin(), "kinds-plugin") as plugin:
        yield plugin


def test_a_kind_registered_by_a_plugin_is_extracted_cached_and_cut(tmp_path, forwards, kinds_plugin):
    assert get_registries().feature_kinds.get("first_patch").source == "kinds-plugin"
    model, ds = tiny_model(), grid_images(12)
    # the cache layer looks names up where its caller says (a run passes its registry), never in the plugin manager
    kwargs = dict(cache_dir=tmp_path, batch_size=5, chunk_size=5, kinds=get_registries().feature_kinds)
    with pytest.raises(ConfigError, match="unknown feature kind 'first_patch'"):
        load_or_extract(model, ds, payload=payload(), kind="first_patch", cache_dir=tmp_path)
    got, hit = load_or_extract(model, ds, payload=payload(), kind="first_patch", **kwargs)
    assert not hit and forwards == [("first_patch", 5), ("first_patch", 5), ("first_patch", 2)]
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.inference_mode():
        want = model.forward_features(images)["x_norm_patchtokens"][:, 0]
    torch.testing.assert_close(got.features, want, atol=1e-5, rtol=0)
    entry = FeatureCache(tmp_path, {**payload(), "kind": "first_patch"})
    manifest = json.loads(entry.manifest.read_text())
    assert manifest["shape"] == [12, 64] and manifest["payload"]["kind"] == "first_patch"
    forwards.clear()
    again, hit = load_or_extract(model, ds, payload=payload(), kind="first_patch", **kwargs)
    assert hit and forwards == [] and torch.equal(again.features, got.features)
    # another key: with a patch_tokens entry cached, first_patch is cut from it (N-D source), no forward
    other = payload(seed=1)
    tokens, _ = load_or_extract(model, ds, payload=other, kind="patch_tokens", **kwargs)
    forwards.clear()
    cut, hit = load_or_extract(model, ds, payload=other, kind="first_patch", **kwargs)
    assert hit and forwards == [] and torch.equal(cut.features, tokens.features[:, 0, 0])
    derived = json.loads(FeatureCache(tmp_path, {**other, "kind": "first_patch"}).manifest.read_text())
    assert derived["derived_from"] == {"kind": "patch_tokens", "key": cache_key({**other, "kind": "patch_tokens"}),
                                       "patch": [0, 0]}
    with pytest.raises(PluginError) as err:
        extract_features(model, ds, kind="broken", kinds=get_registries().feature_kinds)
    assert "feature kind 'broken' (kinds-plugin) returned shape [11, 1] for 12 images" in one_line(err)


# --- N-D entries, memory-mapped --------------------------------------------------------------------------


def test_patch_tokens_entry_is_nd_memory_mapped_and_equals_a_forward(tmp_path, forwards):
    model, ds = tiny_model(), grid_images(20)
    kwargs = dict(payload=payload(), cache_dir=tmp_path, batch_size=8, chunk_size=6, kind="patch_tokens")
    first, hit = load_or_extract(model, ds, **kwargs)
    assert not hit and sum(rows for _, rows in forwards) == 20
    h, w = GRID
    assert first.features.shape == (20, h, w, 64) and first.features.dtype == torch.float32
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.inference_mode():
        tokens = model.forward_features(images)["x_norm_patchtokens"]  # [N, h * w, D], row-major patches
    torch.testing.assert_close(first.features, tokens.reshape(20, h, w, 64), atol=1e-5, rtol=0)
    entry = FeatureCache(tmp_path, {**payload(), "kind": "patch_tokens"})
    manifest = json.loads(entry.manifest.read_text())
    assert manifest["shape"] == [20, h, w, 64] and manifest["dtype"] == "float32" and manifest["chunks"] == 4
    assert not entry.chunks_dir.exists()
    forwards.clear()
    again, hit = load_or_extract(model, ds, **kwargs)
    assert hit and forwards == [] and torch.equal(again.features, first.features)
    assert mapping_of(again.features) == str(entry.features_file)  # a view of the file, not a copy in RAM
    assert mapping_of(again.labels) == str(entry.labels_file)
    assert again.labels.tolist() == [i % 3 for i in range(20)]
    again.features[0] = 0.0  # copy-on-write: a protocol's in-place op never reaches the file
    assert torch.equal(load_or_extract(model, ds, **kwargs)[0].features, first.features)


def test_fp16_entry_round_trips_with_its_own_key(tmp_path, forwards):
    model, ds = tiny_model(depth=4), grid_images(20)
    kwargs = dict(payload=payload(), cache_dir=tmp_path, batch_size=8, chunk_size=8)
    full, _ = load_or_extract(model, ds, kind="patch_tokens", **kwargs)
    half, hit = load_or_extract(model, ds, kind="patch_tokens", dtype="float16", **kwargs)
    assert not hit and half.features.dtype == torch.float16 and half.features.shape == full.features.shape
    torch.testing.assert_close(half.features.float(), full.features, atol=2e-3, rtol=1e-3)
    assert torch.equal(half.features, full.features.half())  # fp16 of the float32 features, nothing else
    f32 = FeatureCache(tmp_path, {**payload(), "kind": "patch_tokens"})
    f16 = FeatureCache(tmp_path, {**payload(), "kind": "patch_tokens", "dtype": "float16"})
    assert f32.key != f16.key and sorted(entries(tmp_path)) == sorted([f32.dir, f16.dir])
    assert json.loads(f16.manifest.read_text())["dtype"] == "float16"
    assert f16.features_file.stat().st_size < 0.6 * f32.features_file.stat().st_size
    forwards.clear()
    again, hit = load_or_extract(model, ds, kind="patch_tokens", dtype="float16", **kwargs)
    assert hit and forwards == [] and torch.equal(again.features, half.features)
    assert mapping_of(again.features) == str(f16.features_file)
    # no cache: the same dtype
    assert torch.equal(extract_features(model, ds, batch_size=8, kind="patch_tokens", dtype="float16").features,
                       half.features)
    # the cut of cls from cls4_avgpool also works in fp16, bit for bit
    load_or_extract(model, ds, kind="cls4_avgpool", dtype="float16", **kwargs)
    forwards.clear()
    cls, hit = load_or_extract(model, ds, kind="cls", dtype="float16", **kwargs)
    assert hit and forwards == [] and cls.features.dtype == torch.float16
    assert torch.equal(cls.features, extract_features(model, ds, batch_size=8, dtype="float16").features)


def test_float32_keys_are_those_of_entries_written_before_kinds_were_a_registry(tmp_path, forwards):
    """An entry written by the earlier code (same key formula, manifest without ``targets``) is found."""
    base = payload()
    assert entry_payload(base, "cls") == {**base, "kind": "cls"}  # float32: no dtype in the key
    assert entry_payload(base, "cls", "float16") == {**base, "kind": "cls", "dtype": "float16"}
    old_key = __import__("hashlib").sha256(canonical_json({**base, "kind": "cls"})).hexdigest()
    entry = FeatureCache(tmp_path, {**base, "kind": "cls"})
    assert entry.key == old_key
    model, ds = tiny_model(), RandomImages(10)
    reference = extract_features(model, ds, batch_size=4)
    entry.dir.mkdir(parents=True)
    np.save(entry.features_file, reference.features.numpy())
    np.save(entry.labels_file, reference.labels.numpy())
    sha = lambda p: __import__("hashlib").sha256(p.read_bytes()).hexdigest()  # noqa: E731
    entry.manifest.write_text(json.dumps({
        "key": old_key, "payload": entry.payload, "shape": [10, 64], "dtype": "float32", "labels_dtype": "int64",
        "chunks": 1, "features_sha256": sha(entry.features_file), "labels_sha256": sha(entry.labels_file)}))
    forwards.clear()
    got, hit = load_or_extract(model, ds, payload=base, cache_dir=tmp_path, batch_size=4)
    assert hit and forwards == [] and torch.equal(got.features, reference.features)
    assert torch.equal(got.labels, reference.labels) and got.targets is got.labels
    # chunk files of an interrupted extraction by the earlier code (features + labels only) are resumed
    resumed = FeatureCache(tmp_path, {**payload(seed=2), "kind": "cls"})
    resumed.chunks_dir.mkdir(parents=True)
    np.savez(resumed.chunks_dir / f"rows_{0:012d}_{5:012d}.npz", features=reference.features[:5].numpy(),
             labels=reference.labels[:5].numpy())
    forwards.clear()
    got, hit = load_or_extract(model, ds, payload=payload(seed=2), cache_dir=tmp_path, batch_size=4, chunk_size=5)
    assert not hit and forwards == [("cls", 4), ("cls", 1)]  # only rows [5, 10)
    assert torch.equal(got.features[:5], reference.features[:5]) and torch.equal(got.labels, reference.labels)


# --- arbitrary per-sample targets ------------------------------------------------------------------------------


class DictTargets(RandomImages):
    """Targets: a dict of an int, a float, a float32 box and a uint8 mask."""

    def __getitem__(self, index):
        image, label = super().__getitem__(index)
        return image, {"label": label, "weight": index / 2, "box": np.array([index, 1, 2, 3.5], dtype=np.float32),
                       "mask": torch.full((2, 3), index % 7, dtype=torch.uint8)}


class ArrayTargets(RandomImages):
    """Targets: one float64 array ``[2, 3]`` per sample (e.g. keypoints)."""

    def __getitem__(self, index):
        image, _ = super().__getitem__(index)
        return image, np.arange(6, dtype=np.float64).reshape(2, 3) * index


def expected_dict_targets(n: int) -> dict[str, torch.Tensor]:
    return {"label": torch.tensor([i % 3 for i in range(n)]), "weight": torch.arange(n, dtype=torch.float64) / 2,
            "box": torch.tensor([[i, 1, 2, 3.5] for i in range(n)], dtype=torch.float32),
            "mask": torch.stack([torch.full((2, 3), i % 7, dtype=torch.uint8) for i in range(n)])}


def assert_same_targets(got, want) -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want)
        for name in want:
            assert got[name].dtype == want[name].dtype and torch.equal(got[name], want[name]), name
    else:
        assert got.dtype == want.dtype and torch.equal(got, want)


@pytest.mark.parametrize("dataset, want", [
    (DictTargets(13), expected_dict_targets(13)),
    (ArrayTargets(13), torch.stack([torch.arange(6, dtype=torch.float64).reshape(2, 3) * i for i in range(13)])),
])
def test_dict_and_array_targets_round_trip(tmp_path, forwards, dataset, want):
    model = tiny_model()
    kwargs = dict(payload=payload(), cache_dir=tmp_path, batch_size=4, chunk_size=5)
    fresh, hit = load_or_extract(model, dataset, **kwargs)
    assert not hit and fresh.labels is None
    assert_same_targets(fresh.targets, want)
    forwards.clear()
    cached, hit = load_or_extract(model, dataset, **kwargs)
    assert hit and forwards == []
    assert_same_targets(cached.targets, want)
    assert_same_targets(extract_features(model, dataset, batch_size=4).targets, want)  # no cache: the same
    entry = FeatureCache(tmp_path, {**payload(), "kind": "cls"})
    manifest = json.loads(entry.manifest.read_text())["targets"]
    names = sorted(want) if isinstance(want, dict) else ["target"]
    assert manifest["structure"] == ("dict" if isinstance(want, dict) else "array")
    assert sorted(manifest["arrays"]) == names and not entry.labels_file.exists()
    for name in names:
        spec, value = manifest["arrays"][name], want[name] if isinstance(want, dict) else want
        assert spec["file"] == f"targets/{name}.npy" and spec["shape"] == list(value.shape[1:])
        target_file = entry.dir / spec["file"]
        assert spec["dtype"] == str(np.load(target_file).dtype)
        assert mapping_of(cached.targets[name] if isinstance(want, dict) else cached.targets) == str(target_file)
    # a damaged target file fails its checksum: recomputed, never silently used
    target_file = entry.dir / manifest["arrays"][names[-1]]["file"]
    blob = bytearray(target_file.read_bytes())
    blob[-1] ^= 0xFF
    target_file.write_bytes(bytes(blob))
    forwards.clear()
    repaired, hit = load_or_extract(model, dataset, **kwargs)
    assert not hit and sum(rows for _, rows in forwards) == 13
    assert_same_targets(repaired.targets, want)


def test_dict_targets_survive_the_cut_of_cls_from_cls4_avgpool(tmp_path, forwards):
    model, ds = tiny_model(depth=4), DictTargets(10)
    kwargs = dict(payload=payload(), cache_dir=tmp_path, batch_size=4)
    load_or_extract(model, ds, kind="cls4_avgpool", **kwargs)
    forwards.clear()
    cls, hit = load_or_extract(model, ds, kind="cls", **kwargs)
    assert hit and forwards == []
    assert torch.equal(cls.features, extract_features(model, ds, batch_size=4).features)
    assert_same_targets(cls.targets, expected_dict_targets(10))


class StringTargets(RandomImages):
    def __getitem__(self, index):
        return super().__getitem__(index)[0], {"name": f"img{index}"}


class RaggedTargets(RandomImages):
    def __getitem__(self, index):
        return super().__getitem__(index)[0], np.zeros(1 + index % 2)


@pytest.mark.parametrize("dataset, message", [
    (StringTargets(4), "target 'name' batches to list; cached targets must be ints, floats or arrays"),
    (RaggedTargets(4), "samples do not batch"),
])
def test_targets_that_cannot_be_cached_are_one_line_data_errors(tmp_path, dataset, message):
    with pytest.raises(DataError) as err:
        load_or_extract(tiny_model(), dataset, payload=payload(), cache_dir=tmp_path, batch_size=4)
    assert message in one_line(err)
