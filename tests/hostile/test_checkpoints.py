"""Malicious pickles in every place a pickle can arrive, truncated safetensors, wrong-shape and wrong-family
checkpoints: one line and exit 2, nothing run, nothing written."""

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import TINY, TINY_OPTIONS
from helpers import smoke_options

import dinobench
from dinobench.synthetic.dense import write_synthetic_ade20k
from dinobench.errors import WeightsError
from dinobench.utils.tensor_files import load_tensor_file

REPO = Path(__file__).resolve().parents[2]
SSL_CONFIG = REPO / "configs" / "train" / "vit_tiny_digits_pretrain.py"
KNN = ("run", "--backbone", "vit_tiny", "--task", "digits-knn")


class _Payload:
    """Unpickling this runs ``touch <marker>``: the test fails if the marker appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def write_malicious(path: Path, marker: Path, style: str) -> Path:
    """A checkpoint-looking file that runs code when unpickled: torch's zip format, its legacy format, or a
    bare pickle (``.bin`` / ``.pt`` files of other tools)."""
    obj = {"model": {"weight": torch.zeros(2)}, "iteration": 0, "extra": _Payload(marker)}
    if style == "zip":
        torch.save(obj, path)
    elif style == "legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(obj, protocol=2))
    return path


def one_line(code: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, (code, err)
    return lines[0]


@pytest.mark.parametrize("style,suffix", [("zip", ".pth"), ("legacy", ".pth"), ("raw", ".bin")])
def test_malicious_backbone_weights_are_refused_without_running(run_cli, tmp_path, style, suffix):
    marker = tmp_path / "marker"
    evil = write_malicious(tmp_path / f"evil{suffix}", marker, style)
    code, _, err = run_cli(*KNN, "--weights", str(evil), "--output", str(tmp_path / "out"), "--cfg-options",
                           *TINY_OPTIONS)
    line = one_line(code, err)
    assert str(evil) in line and "refused to load this checkpoint" in line and "GLOBAL" in line
    assert not marker.exists() and not list((tmp_path / "out").rglob("result.json"))


def test_malicious_head_weights_and_training_checkpoints_are_refused(tmp_path):
    marker = tmp_path / "marker"
    evil = write_malicious(tmp_path / "head.pth", marker, "zip")
    from dinobench.heads.weights import read_head_state
    from dinobench.training.checkpoint import load_teacher_student_state

    with pytest.raises(WeightsError, match="refused to load this head checkpoint"):
        read_head_state(evil)
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    write_malicious(tmp_path / "run" / "checkpoints" / "checkpoint_00000003.pth", marker, "zip")
    with pytest.raises(WeightsError, match="refused to load this training checkpoint"):
        load_teacher_student_state(tmp_path / "run")  # train.init / distillation / gram teacher
    with pytest.raises(WeightsError, match="refused to load this cached text embedding"):
        load_tensor_file(evil, "cached text embedding")
    assert not marker.exists()


def test_malicious_checkpoint_in_a_head_training_folder_stops_the_resume(run_cli, tmp_path):
    root = write_synthetic_ade20k(tmp_path / "ade", n_train=4, n_val=2, size=32)
    work = tmp_path / "work"
    (work / "checkpoints").mkdir(parents=True)
    marker = tmp_path / "marker"
    planted = write_malicious(work / "checkpoints" / "checkpoint_00000003.pth", marker, "zip")
    code, _, err = run_cli("run", "--backbone", "vit_tiny", "--task", "ade20k-linear", "--data-root", str(root),
                           "--output", str(tmp_path / "out"), "--cfg-options", *smoke_options("ade20k-linear"),
                           "train.max_iters=4", f"train.work_dir={work}")
    line = one_line(code, err)
    assert str(planted) in line and "refused to load this training checkpoint" in line
    assert not marker.exists() and not list((tmp_path / "out").rglob("result.json"))


def _ssl_train(run_cli, output: Path):
    return run_cli("train", "--config", str(SSL_CONFIG), "--output", str(output),
                   "student.overrides.embed_dim=32", "student.overrides.depth=2", "student.overrides.num_heads=2",
                   "crops.global_crops_size=32", "crops.local_crops_size=16", "crops.local_crops_number=2",
                   "train.batch_size_per_gpu=4", "train.epoch_length=2", "optim.epochs=1", "train.num_workers=0")


def test_malicious_or_foreign_checkpoint_in_an_ssl_run_folder_stops_the_resume(run_cli, tmp_path):
    marker = tmp_path / "marker"
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    planted = write_malicious(tmp_path / "run" / "checkpoints" / "checkpoint_00000000.pth", marker, "zip")
    line = one_line(*_ssl_train(run_cli, tmp_path / "run")[::2])
    assert str(planted) in line and "refused to load this training checkpoint" in line and not marker.exists()
    # a genuine checkpoint of another model in the same folder: wrong keys and shapes, one line
    torch.save({"model": {"students.student.backbone.cls_token": torch.zeros(1, 1, 7)}, "iteration": 0,
                "optimizer": {}, "rng": {}, "gram_teacher_initialized": False, "gram_updates": 0}, planted)
    line = one_line(*_ssl_train(run_cli, tmp_path / "run")[::2])
    assert str(planted) in line and "does not fit the run being resumed" in line
    assert not (tmp_path / "run" / "teacher_checkpoint.pth").exists()


def test_malicious_head_file_of_a_run_is_refused_by_export(run_cli, tmp_path):
    code, _, err = run_cli("run", "--backbone", "vit_tiny", "--task", "digits-linear", "--output", str(tmp_path / "out"),
                           "--cfg-options", *TINY_OPTIONS, "protocol.epochs=1", "backbone.depth=4")
    assert code == 0, err
    run_dir = next((tmp_path / "out").rglob("result.json")).parent
    marker = tmp_path / "marker"
    write_malicious(run_dir / "head.pth", marker, "zip")
    line = one_line(*run_cli("export", "--run", str(run_dir), "--output", str(tmp_path / "exported"))[::2])
    assert "head.pth: refused to load this head checkpoint" in line
    assert not marker.exists() and not (tmp_path / "exported").exists()


def test_a_planted_feature_cache_array_is_never_unpickled(tmp_path):
    from dinobench.features.cache import FeatureCache

    entry = FeatureCache(tmp_path, {"kind": "cls", "x": 1})
    entry.dir.mkdir(parents=True)
    marker = tmp_path / "marker"
    np.save(entry.features_file, np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    np.save(entry.labels_file, np.zeros(1, dtype=np.int64))
    entry.manifest.write_text(json.dumps({"payload": {"kind": "cls", "x": 1}, "n": 1}))
    assert entry.load() is None and not marker.exists()  # unreadable = recomputed, never executed


def _saved_vit_tiny(tmp_path: Path, **overrides) -> dict:
    model = dinobench.create_backbone("vit_tiny", **{**TINY, **overrides})
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def test_truncated_safetensors_weights_and_heads_are_one_line(run_cli, tmp_path):
    good = tmp_path / "good.safetensors"
    save_file(_saved_vit_tiny(tmp_path), str(good))
    cut = tmp_path / "cut.safetensors"
    for size in (good.stat().st_size // 2, 7):  # cut in the tensor data / inside the 8-byte header length
        cut.write_bytes(good.read_bytes()[:size])
        code, _, err = run_cli(*KNN, "--weights", str(cut), "--output", str(tmp_path / "out"), "--cfg-options",
                               *TINY_OPTIONS)
        line = one_line(code, err)
        assert str(cut) in line and "not a readable safetensors checkpoint" in line
    from dinobench.heads.weights import read_head_state

    with pytest.raises(WeightsError, match="not a readable safetensors head checkpoint"):
        read_head_state(cut)
    hf = tmp_path / "hf"
    assert run_cli("export", "--backbone", "vit_tiny", "--output", str(hf))[0] == 0
    weights = hf / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64])
    line = one_line(*run_cli(*KNN, "--weights", str(hf), "--output", str(tmp_path / "out"), "--cfg-options",
                             *TINY_OPTIONS)[::2])
    assert "model.safetensors" in line and "not a readable safetensors" in line
    assert not list((tmp_path / "out").rglob("result.json"))


def test_wrong_shape_and_wrong_family_checkpoints_name_the_first_mismatch(run_cli, tmp_path):
    wide = tmp_path / "wide.safetensors"
    save_file(_saved_vit_tiny(tmp_path, embed_dim=96), str(wide))  # same family, another width
    line = one_line(*run_cli(*KNN, "--weights", str(wide), "--output", str(tmp_path / "out"), "--cfg-options",
                             *TINY_OPTIONS)[::2])
    assert str(wide) in line and "cls_token" in line and "shape" in line
    convnext = dinobench.create_backbone("convnext_tiny", depths=[1, 1, 1, 1], dims=[8, 16, 24, 32])
    other = tmp_path / "convnext.pth"
    torch.save(convnext.state_dict(), other)  # another family
    line = one_line(*run_cli(*KNN, "--weights", str(other), "--output", str(tmp_path / "out"), "--cfg-options",
                             *TINY_OPTIONS)[::2])
    assert str(other) in line and "tensors are not in" in line and "downsample_layers.0.0.weight" in line
    assert not list((tmp_path / "out").rglob("result.json"))
