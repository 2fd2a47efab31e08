"""It learns: the toy recipe pretrains vit_tiny on the real digits (train split) in a few CPU
minutes, and kNN on the held-out digits beats the same architecture at random init by >= 5;
Gram anchoring chained on top lowers its Gram loss and keeps the gain."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

CONFIG = REPO / "configs" / "train" / "vit_tiny_digits_pretrain.py"
GRAM_CONFIG = REPO / "configs" / "train" / "vit_tiny_digits_gram.py"


def _cli(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, "-m", "dinobench", *argv], capture_output=True, text=True, env=env,
                          timeout=1500)


def _top1(output: Path) -> float:
    (path,) = output.rglob("result.json")
    return json.loads(path.read_text())["main_metric"]["value"]


@pytest.mark.slow
def test_toy_pretraining_beats_random_init_on_held_out_digits(tmp_path):
    run = tmp_path / "run"
    trained = _cli("train", "--config", str(CONFIG), "--output", str(run))
    assert trained.returncode == 0, trained.stderr[-3000:]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 220 and all(np.isfinite(r["total_loss"]) for r in rows)
    ssl = _cli("run", "--backbone", "vit_tiny", "--task", "digits-knn", "--weights", str(run / "teacher_checkpoint.pth"),
               "--output", str(tmp_path / "ssl"))
    assert ssl.returncode == 0, ssl.stderr
    rand = _cli("run", "--backbone", "vit_tiny", "--task", "digits-knn", "--output", str(tmp_path / "random"))
    assert rand.returncode == 0, rand.stderr
    ssl_top1, random_top1 = _top1(tmp_path / "ssl"), _top1(tmp_path / "random")
    print(f"digits kNN top-1: SSL-pretrained {ssl_top1:.2f} vs random init {random_top1:.2f}")
    assert ssl_top1 >= random_top1 + 5.0

    # DINOv3 phase 2 chained on the learned model: Gram anchoring at the recipe's weight (2.0)
    # pulls the student's patch-similarity structure towards the frozen Gram teacher.
    gram_run = tmp_path / "gram"
    gram = _cli("train", "--config", str(GRAM_CONFIG), "--output", str(gram_run), f"init.from_teacher_checkpoint={run}",
                f"gram.ckpt={run}", "optim.epochs=1")
    assert gram.returncode == 0, gram.stderr[-3000:]
    rows = [json.loads(line) for line in (gram_run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["gram_loss"] for r in rows]
    assert len(losses) == 22 and all(np.isfinite(losses))
    print(f"Gram loss (weight 2.0): first 5 iterations {np.mean(losses[:5]):.4f} -> last 5 {np.mean(losses[-5:]):.4f}")
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])
    anchored = _cli("run", "--backbone", "vit_tiny", "--task", "digits-knn", "--weights",
                    str(gram_run / "teacher_checkpoint.pth"), "--output", str(tmp_path / "gram-knn"))
    assert anchored.returncode == 0, anchored.stderr
    gram_top1 = _top1(tmp_path / "gram-knn")
    print(f"digits kNN top-1 after Gram anchoring: {gram_top1:.2f}")
    assert gram_top1 >= random_top1 + 5.0  # anchoring keeps what pretraining learned
