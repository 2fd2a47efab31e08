"""`dinobench run` end to end on real digits, and every bad-input path (exit 2, one line, no result)."""

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from conftest import TINY, TINY_OPTIONS
from helpers import brute_force_knn

import dinobench
from dinobench.data.digits import build_digits
from dinobench.data.transforms import build_eval_transform
from dinobench.features import extract_features
from dinobench.resolve import resolve_task
from dinobench.utils.seeding import seed_everything

REQUIRED_FIELDS = {"task", "protocol", "protocol_version", "protocol_plugin", "protocol_hash", "backbone", "weights",
                   "weights_sha256", "seed", "metrics", "main_metric", "config", "dataset", "environment",
                   "timings", "created_at", "schema_version"}


def _result_files(root: Path) -> list[Path]:
    return sorted(root.rglob("result.json"))


def test_run_digits_knn_writes_a_valid_record_matching_brute_force(run_cli, tmp_path):
    code, out, err = run_cli("run", "--backbone", "vit_tiny", "--task", "digits-knn", "--output", str(tmp_path),
                             "--seed", "7", "--cfg-options", *TINY_OPTIONS)
    assert code == 0, err
    (path,) = _result_files(tmp_path)
    assert path.parent.parent == tmp_path / "vit_tiny" / "digits-knn"
    assert f"result: {path}" in out
    record = json.loads(path.read_text())
    assert REQUIRED_FIELDS <= set(record)
    assert record["weights"] == "random-init" and record["seed"] == 7 and record["weights_sha256"] is None
    assert record["protocol"] == "knn" and record["protocol_plugin"] == "dinobench.plugins.knn"
    assert record["main_metric"]["name"] == "top1" and record["main_metric"]["higher_is_better"] is True
    assert record["config"]["backbone"] == TINY
    env = record["environment"]
    assert env["torch"] == torch.__version__ and env["device"] == "cpu" and env["dtype"] == "float32"
    assert env["dinobench_version"] == dinobench.__version__
    import platform

    import sklearn

    assert env["python"] == platform.python_version() and env["scikit_learn"] == sklearn.__version__
    assert env["blas"] and env["blas"].split()[0] in {"openblas", "mkl", "blis", "accelerate"}, env["blas"]
    assert len(env["git_commit"] or "") == 40 and isinstance(env["git_dirty"], bool)  # run from the checkout
    assert record["dataset"]["splits"]["train"]["size"] + record["dataset"]["splits"]["val"]["size"] == 1797

    # independent recomputation on the same features: same seed -> same random-init backbone
    seed_everything(7)
    model = dinobench.create_backbone("vit_tiny", **TINY)
    cfg = resolve_task("digits-knn", None)
    splits = build_digits(cfg["dataset"])
    feats = {}
    for name, ds in splits.items():
        ds.transform = build_eval_transform(cfg["transform"], model.image_mean, model.image_std)
        feats[name] = extract_features(model, ds, batch_size=128)
    ks = cfg["protocol"]["nb_knn"]
    want = brute_force_knn(feats["train"].features.double().numpy(), feats["train"].labels.numpy(),
                           feats["val"].features.double().numpy(), feats["val"].labels.numpy(), ks, 0.07, 10)
    for k in ks:
        assert abs(record["metrics"][f"top1_k{k}"] - want[f"top1_k{k}"]) < 1e-6
    assert record["main_metric"]["value"] == max(record["metrics"][f"top1_k{k}"] for k in ks)
    assert record["main_metric"]["value"] > 20  # a random ViT still beats chance (10%) on digits


def test_runs_never_overwrite_each_other(tmp_path):
    for _ in range(2):
        dinobench.run(backbone="vit_tiny", task="digits-knn", output_dir=str(tmp_path),
                      options=TINY_OPTIONS + ["protocol.nb_knn=[10]"])
    files = _result_files(tmp_path)
    assert len(files) == 2 and files[0].parent != files[1].parent
    a, b = (json.loads(f.read_text()) for f in files)
    assert a["metrics"] == b["metrics"] and a["protocol_hash"] == b["protocol_hash"]  # deterministic


def _assert_clean_failure(run_cli, tmp_path, argv, expected):
    code, out, err = run_cli(*argv, "--output", str(tmp_path / "out"))
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err
    assert not _result_files(tmp_path / "out")
    assert not list((tmp_path / "out").rglob(".staging-*"))
    return lines[0]


def test_debug_shows_the_traceback_of_a_bad_input_error(run_cli, tmp_path):
    code, _, err = run_cli("--debug", "run", "--backbone", "vitl61", "--task", "digits-knn",
                           "--output", str(tmp_path / "out"))
    assert code == 2 and "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1].startswith("dinobench run: error: unknown backbone 'vitl61'")
    assert not _result_files(tmp_path / "out")


def test_unknown_backbone_and_task_suggest(run_cli, tmp_path):
    line = _assert_clean_failure(run_cli, tmp_path, ["run", "--backbone", "vitl61", "--task", "digits-knn"],
                                 "unknown backbone 'vitl61'")
    assert "did you mean 'vitl16'" in line
    line = _assert_clean_failure(run_cli, tmp_path, ["run", "--backbone", "vit_tiny", "--task", "digit-knn"],
                                 "unknown task 'digit-knn'")
    assert "did you mean 'digits-knn'" in line


def _image_folder(root: Path, classes=("a", "b"), per_class=3) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in classes:
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / split / cls / f"{i}.png")
    return root


def test_data_errors(run_cli, tmp_path):
    base = ["run", "--backbone", "vit_tiny", "--task", "folder-knn", "--cfg-options", *TINY_OPTIONS,
            "transform.resize=16", "transform.crop=16"]
    _assert_clean_failure(run_cli, tmp_path, base, "needs a data root; pass --data-root")
    missing = tmp_path / "missing"
    _assert_clean_failure(run_cli, tmp_path, [*base, "--data-root", str(missing)], f"{missing}: data root does not exist")

    empty = _image_folder(tmp_path / "empty")
    for f in (empty / "val" / "b").iterdir():
        f.unlink()
    _assert_clean_failure(run_cli, tmp_path, [*base, "--data-root", str(empty)],
                          f"{empty / 'val' / 'b'}: class folder has no images")

    mismatch = _image_folder(tmp_path / "mismatch")
    (mismatch / "val" / "b").rename(mismatch / "val" / "c")
    _assert_clean_failure(run_cli, tmp_path, [*base, "--data-root", str(mismatch)], "train and val classes differ")

    nosplit = _image_folder(tmp_path / "nosplit")
    import shutil

    shutil.rmtree(nosplit / "val")
    _assert_clean_failure(run_cli, tmp_path, [*base, "--data-root", str(nosplit)], "split folder missing")

    corrupt = _image_folder(tmp_path / "corrupt")
    bad = corrupt / "train" / "a" / "1.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    _assert_clean_failure(run_cli, tmp_path, [*base, "--data-root", str(corrupt)], f"{bad}: cannot read image")


def test_folder_knn_runs_on_a_valid_folder(run_cli, tmp_path):
    root = _image_folder(tmp_path / "ok", per_class=4)
    code, _, err = run_cli("run", "--backbone", "vit_tiny", "--task", "folder-knn", "--data-root", str(root),
                           "--output", str(tmp_path / "out"), "--cfg-options", *TINY_OPTIONS,
                           "transform.resize=16", "transform.crop=16", "protocol.nb_knn=[1,3]")
    assert code == 0, err
    (path,) = _result_files(tmp_path / "out")
    assert json.loads(path.read_text())["dataset"]["splits"]["val"]["size"] == 8


def test_weights_errors(run_cli, tmp_path):
    _assert_clean_failure(run_cli, tmp_path, ["run", "--backbone", "vit_tiny", "--task", "digits-knn",
                                              "--weights", str(tmp_path / "none.pth")], "none.pth: weights file does not exist")
    wrong = tmp_path / "wrong.pth"
    torch.save(dinobench.create_backbone("vit_tiny", **TINY).state_dict(), wrong)
    _assert_clean_failure(run_cli, tmp_path, ["run", "--backbone", "vit_tiny", "--task", "digits-knn",
                                              "--weights", str(wrong)], "weights do not fit the architecture")


def test_weights_are_recorded_with_sha256(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(dinobench.create_backbone("vit_tiny", **TINY).state_dict(), path)
    result = dinobench.run(backbone="vit_tiny", task="digits-knn", weights=str(path), output_dir=str(tmp_path / "o"),
                           options=TINY_OPTIONS + ["protocol.nb_knn=[10]"])
    import hashlib

    assert result.weights == str(path.resolve())
    assert result.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_usage_errors_are_one_line(run_cli, tmp_path):
    line = _assert_clean_failure(run_cli, tmp_path, ["run", "--task", "digits-knn"],
                                 "the following arguments are required: --backbone")
    assert "see dinobench run --help" in line
    _assert_clean_failure(run_cli, tmp_path, ["run", "--backbone", "vit_tiny", "--task", "digits-knn",
                                              "--cfg-options", "protocol.temprature=1"], "unknown key 'protocol.temprature'")
    _assert_clean_failure(run_cli, tmp_path, ["run", "--backbone", "vit_tiny", "--task", "digits-knn",
                                              "--device", "cuda:0"] if not torch.cuda.is_available() else
                          ["run", "--backbone", "vit_tiny", "--task", "digits-knn", "--device", "tpu"],
                          "--device")
