"""Helpers shared by the tests of several families (run a task's documented smoke run, build a result record)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

import dinobench
from dinobench.config import protocol_hash
from dinobench.heads.linear_seg import segmentation_loss
from dinobench.results import MainMetric, Result
from dinobench.utils.paths import configs_dir

REPO = Path(__file__).resolve().parents[1]


def smoke_options(task: str) -> list[str]:
    """The ``--cfg-options`` of the CPU smoke run documented in the task config's comment block."""
    text = (configs_dir() / "tasks" / f"{task}.py").read_text()
    rest = text.split("--cfg-options", 1)[1].splitlines()
    tokens, continued = rest[0].split(), rest[0].rstrip().endswith("\\")
    for line in rest[1:]:
        if not continued:
            break
        line = line.strip().lstrip("#").strip()
        tokens += line.split()
        continued = line.endswith("\\")
    return [t for t in tokens if t != "\\"]


def run_task(run_cli, task, root, out, *options, extra=()):
    """``dinobench run`` of ``task`` with its documented smoke options (then ``options``); (record, its path)."""
    code, _, err = run_cli("run", "--backbone", "vit_tiny", "--task", task, "--data-root", str(root), "--output",
                           str(out), *extra, "--cfg-options", *smoke_options(task), *options)
    assert code == 0, err
    (path,) = sorted(Path(out).glob(f"vit_tiny/{task}/*/result.json"))[-1:]
    return json.loads(path.read_text()), path


KNN_CONFIG = {"dataset": {"type": "digits", "val_fraction": 0.2}, "protocol": {"type": "knn", "temperature": 0.07},
              "features": {"batch_size": 64}, "backbone": {}}


def make_result(value: float, *, backbone: str = "vit_tiny", task: str = "digits-knn", seed: int = 0,
                weights: str = "random-init", sha: str | None = None, version: str = "1",
                config: dict | None = None, metric: str = "top1", higher: bool = True, fingerprint: str = "fp0",
                extra: dict | None = None, params: int | None = 818_816, created_at: str = "",
                timings: dict | None = None, splits: dict | None = None, overrides: dict | None = None) -> Result:
    """A result record as the runner builds it; the protocol hash comes from the real hash function."""
    config = json.loads(json.dumps(config or KNN_CONFIG))
    metrics = {metric: float(value), **(extra or {})}
    return Result(
        task=task, protocol=config["protocol"]["type"], protocol_version=version, protocol_plugin="tests",
        protocol_hash=protocol_hash(config, fingerprint), backbone=backbone, weights=weights, weights_sha256=sha,
        seed=seed, metrics=metrics, main_metric=MainMetric(metric, float(value), higher), config=config,
        dataset={"name": "digits", "fingerprint": fingerprint,
                 "splits": splits or {"train": {"size": 1438}, "val": {"size": 359}}},
        backbone_config={"family": "dinov3_vit", "overrides": overrides or {}, "params": params},
        environment={"dinobench_version": dinobench.__version__, "torch": "2.14.1", "git_commit": "0123456789abcdef",
                     "git_dirty": False, "device": "cpu"},
        timings=timings if timings is not None else {"features_train_s": 2.0, "features_val_s": 0.5},
        created_at=created_at)


def with_config(**protocol) -> dict:
    config = json.loads(json.dumps(KNN_CONFIG))
    config["protocol"].update(protocol)
    return config


# ----------------------------------------------------------------------------- kNN reference
def brute_force_knn(train, train_labels, query, query_labels, ks, temperature, num_classes):
    """float64 numpy reference: full similarity matrix, full sort, softmax over max-k neighbours."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    query = query / np.linalg.norm(query, axis=1, keepdims=True)
    sims = query @ train.T
    max_k = min(max(ks), len(train))
    order = np.argsort(-sims, axis=1, kind="stable")[:, :max_k]
    top_sims = np.take_along_axis(sims, order, axis=1)
    weights = np.exp(top_sims / temperature)
    weights /= weights.sum(axis=1, keepdims=True)
    out = {}
    for k in ks:
        scores = np.zeros((len(query), num_classes))
        for i in range(len(query)):
            for j in range(min(k, max_k)):
                scores[i, train_labels[order[i, j]]] += weights[i, j]
        ranked = np.argsort(-scores, axis=1, kind="stable")
        out[f"top1_k{k}"] = 100 * np.mean(ranked[:, 0] == query_labels)
        # top-5 is well defined only when the 5th and 6th scores differ (else zero-vote ties)
        sorted_scores = -np.sort(-scores, axis=1)
        if np.all(sorted_scores[:, 4] > sorted_scores[:, 5]):
            out[f"top5_k{k}"] = 100 * np.mean((ranked[:, :5] == query_labels[:, None]).any(axis=1))
    return out


# ----------------------------------------------------------------------------- head training
class ToySegmentation(Dataset):
    """Fixed images/masks; the transform draws from torch's global RNG (flip + noise), like real ones."""

    def __init__(self, n=10, size=16):
        g = torch.Generator().manual_seed(1)
        self.images = torch.randn(n, 3, size, size, generator=g)
        self.masks = (self.images[:, 0] > 0).long() + (self.images[:, 1] > 0.5).long()

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        image, mask = self.images[i], self.masks[i]
        if torch.rand(()) < 0.5:
            image, mask = image.flip(-1), mask.flip(-1)
        return {"image": image + 0.1 * torch.randn_like(image), "mask": mask, "name": str(i)}


def seg_loss(model, batch, iteration):
    return segmentation_loss(model(batch["image"]), batch["mask"]), {}


CFG = dict(max_iters=7, batch_size=4, checkpoint_every=2, log_every=1, eval_every=0, max_to_keep=2,
           optimizer=dict(lr=5e-2, weight_decay=1e-3),
           scheduler=dict(type="warmup_one_cycle", warmup_iters=2, warmup_ratio=1e-6))


# ----------------------------------------------------------------------------- SSL training
CONFIG = REPO / "configs" / "train" / "vit_tiny_digits_pretrain.py"
#: a very small, fast run: 8 images per rank, 2 local crops, 6 iterations, checkpoints every 2
FAST = ["student.overrides.embed_dim=32", "student.overrides.depth=2", "student.overrides.num_heads=2",
        "crops.global_crops_size=32", "crops.local_crops_size=16",
        "dino.head_n_prototypes=64", "ibot.head_n_prototypes=64", "dino.head_hidden_dim=64",
        "ibot.head_hidden_dim=64", "dino.head_bottleneck_dim=32", "ibot.head_bottleneck_dim=32",
        "crops.local_crops_number=2", "train.batch_size_per_gpu=8", "train.epoch_length=3", "optim.epochs=2",
        "optim.warmup_epochs=1", "teacher.warmup_teacher_temp_epochs=1", "teacher.teacher_temp=0.07",
        "checkpointing.period=2"]
