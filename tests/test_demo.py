"""`dinobench demo` end to end at a reduced schedule: pretrain -> protocols for both backbones -> report."""

from __future__ import annotations

import csv


def test_demo_writes_a_report_comparing_pretrained_and_random_init(run_cli, tmp_path):
    out = tmp_path / "demo"
    code, stdout, err = run_cli("demo", "--output", str(out), "--no-dense", "optim.epochs=1")
    assert code == 0, err
    assert (out / "pretrain" / "teacher_checkpoint.pth").is_file()
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
    code, stdout, err = run_cli("demo", "--output", str(out), "--no-dense", "optim.epochs=1")
    assert code == 0, err
    assert "reusing the finished pretraining run" in stdout
