"""`dinobench demo` end to end at a reduced schedule: pretrain -> protocols for both backbones -> report."""

from __future__ import annotations

import csv

import pytest


@pytest.mark.slow
def test_demo_writes_a_report_comparing_pretrained_and_random_init(run_cli, tmp_path):
    out = tmp_path / "demo"
    code, stdout, err = run_cli("demo", "--output", str(out), "--no-dense", "--dataset", "digits", "optim.epochs=1")
    assert code == 0, err
    assert (out / "pretrain-digits" / "teacher_checkpoint.pth").is_file()
    report = out / "report"
    for name in ("leaderboard.md", "leaderboard.csv", "report.html"):
        assert (report / name).is_file(), name
    lines = stdout.strip().splitlines()
    assert lines[-1].startswith("report: ") and lines[-1].endswith("report.html")  # last lines say where
    rows = list(csv.DictReader((report / "leaderboard.csv").open()))
    weights = sorted(row["weights"] for row in rows)
    assert len(rows) == 2 and weights[0] == "random-init" and weights[1].startswith("teacher_checkpoint.pth@")
    md = (report / "leaderboard.md").read_text()
    for task in ("digits-knn", "digits-logreg", "digits-linear"):
        assert task in md
    # a second call reuses the finished pretraining run
    code, stdout, err = run_cli("demo", "--output", str(out), "--no-dense", "--dataset", "digits", "optim.epochs=1")
    assert code == 0, err
    assert "reusing the finished pretraining run" in stdout


def test_demo_dataset_is_fashion_mnist_only_when_its_debian_package_is_installed(tmp_path, monkeypatch):
    from dinobench import demo
    from dinobench.data import fashion_mnist

    monkeypatch.setattr(fashion_mnist, "DEBIAN_ROOT", tmp_path)
    assert demo.default_dataset() == "digits"
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    assert demo.default_dataset() == "fashion-mnist"


def test_fashion_pretraining_config_replaces_the_digits_dataset():
    from dinobench.utils.paths import configs_dir
    from dinobench.training.launch import resolve_train_config

    cfg = resolve_train_config(configs_dir() / "train" / "vit_tiny_fashion_pretrain.py")
    assert cfg["train"]["dataset"] == {"type": "fashion_mnist", "root": None, "train_subset": None,
                                       "val_subset": None, "subset_seed": 0}
    assert cfg["train"]["epoch_length"] == 22 and cfg["optim"]["epochs"] == 10  # 220 iterations, as on digits
