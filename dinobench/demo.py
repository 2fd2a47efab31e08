"""``dinobench demo``: the whole pipeline on a fresh machine, no downloads, a few CPU minutes.

1. SSL-pretrain ``vit_tiny`` on real images: Fashion-MNIST when the Debian package
   ``dataset-fashion-mnist`` is installed, else scikit-learn's bundled digits (``--dataset``);
2. run the classification protocols (kNN, logistic regression, linear probe) on the held-out
   images for the pretrained teacher and for the same architecture at random init;
3. run linear segmentation on a synthetic ADE20K-layout dataset for both (predictions saved);
4. write the leaderboard report (Markdown, CSV, self-contained HTML) that shows the gain.

Every step is resumable: a second call reuses the finished pretraining run and the cached features.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

from dinobench.errors import DinobenchError

logger = logging.getLogger("dinobench")

BACKBONE = "vit_tiny"
#: dataset -> (pretraining config, classification tasks, their --cfg-options). The linear probe runs
#: first: kNN and logreg then cut their CLS features from its cached cls4_avgpool entry (no extraction).
DATASETS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "digits": ("vit_tiny_digits_pretrain.py", ("digits-linear", "digits-knn", "digits-logreg"), ()),
    # seeded stratified subsets keep feature extraction + the logreg C sweep within the CPU budget
    "fashion-mnist": ("vit_tiny_fashion_pretrain.py",
                      ("fashion-mnist-linear", "fashion-mnist-knn", "fashion-mnist-logreg"),
                      ("dataset.train_subset=10000", "dataset.val_subset=2000")),
}
#: per-task extra --cfg-options: on 9k Fashion-MNIST training images the official 45-value C grid
#: costs ~100 s per backbone; every 4th value (10^-6 ... 10^5, one per decade) keeps the demo in budget
TASK_OPTIONS: dict[str, tuple[str, ...]] = {"fashion-mnist-logreg": ("protocol.grid_size=12",)}
DENSE_TASK = "ade20k-linear"
#: CPU-sized schedule of the dense task on the synthetic 64 px ADE20K (see configs/tasks/ade20k-linear.py)
DENSE_OPTIONS = (
    "train.max_iters=60", "train.batch_size=8", "train.num_workers=0", "train.eval_every=0",
    "train.optimizer.lr=0.01", "train.scheduler.warmup_iters=5", "transform.train.scale=64",
    "transform.train.crop_size=[64,64]", "transform.eval.scale=64", "protocol.inference.crop_size=64",
    "protocol.inference.stride=48", "protocol.num_visualizations=2",
)


def _say(step: str) -> None:
    print(f"\n==> {step}", flush=True)


def default_dataset() -> str:
    """``fashion-mnist`` when the Debian package is installed, else the always-present ``digits``."""
    from dinobench.data.fashion_mnist import DEBIAN_ROOT

    return "fashion-mnist" if any(DEBIAN_ROOT.glob("train-images-idx3-ubyte*")) else "digits"


def pretrain(output: Path, config: str, overrides: Sequence[str] = ()) -> Path:
    """SSL-pretrain the toy backbone with ``configs/train/<config>`` (resumes a partial run);
    return its exported teacher checkpoint."""
    from dinobench.utils.paths import configs_dir
    from dinobench.training.launch import launch, resolve_train_config

    cfg = resolve_train_config(configs_dir() / "train" / config, list(overrides))
    checkpoint = output / "teacher_checkpoint.pth"  # exported (atomically) only when training finished
    if checkpoint.is_file():
        print(f"reusing the finished pretraining run {output}")
        return checkpoint
    summary = launch(cfg, output)
    if "interrupted_at" in summary:
        raise DinobenchError(f"{output}: pretraining stopped at iteration {summary['interrupted_at']}; "
                             "run the demo again to resume it")
    return checkpoint


def run_demo(output: str | Path = "demo-output", pretrain_overrides: Sequence[str] = (), dataset: str = "auto",
             dense: bool = True, seed: int = 0) -> dict[str, Any]:
    """Run the demo into ``output``; return ``{"report": [paths], "results": [Result, ...]}``.

    ``dataset``: ``auto`` (Fashion-MNIST if installed, else digits), ``digits`` or ``fashion-mnist``.
    """
    import dinobench
    from dinobench.synthetic.dense import write_synthetic_ade20k
    from dinobench.leaderboard import build_leaderboard, scan
    from dinobench.report import write_report

    dataset = default_dataset() if dataset == "auto" else dataset
    if dataset not in DATASETS:
        raise DinobenchError(f"demo --dataset {dataset!r}: expected auto, {', '.join(DATASETS)}")
    config, tasks, task_options = DATASETS[dataset]
    output = Path(output)
    results_dir = output / "results"
    start = time.perf_counter()
    _say(f"[1/4] SSL pretraining {BACKBONE} on real {dataset} images (DINO + iBOT + KoLeo; {config})")
    teacher = pretrain(output / f"pretrain-{dataset}", config, pretrain_overrides)
    variants = (("random-init", None), ("SSL-pretrained", str(teacher)))
    results = []
    _say(f"[2/4] classification protocols on held-out {dataset}: {', '.join(tasks)}")
    for label, weights in variants:
        for task in tasks:
            result = dinobench.run(BACKBONE, task, weights=weights, output_dir=str(results_dir), seed=seed,
                                   options=[*task_options, *TASK_OPTIONS.get(task, ())])
            results.append(result)
            main = result.main_metric
            print(f"  {task:<16} {label:<15} {main.name} = {main.value:.2f}")
    if dense:
        _say(f"[3/4] {DENSE_TASK} on a synthetic ADE20K-layout dataset (64 px textured shapes)")
        ade = write_synthetic_ade20k(output / "data", n_train=32, n_val=8, size=64, seed=seed)
        for label, weights in variants:
            result = dinobench.run(BACKBONE, DENSE_TASK, weights=weights, data_root=str(ade),
                                   output_dir=str(results_dir), options=list(DENSE_OPTIONS), seed=seed,
                                   save_predictions=True)
            results.append(result)
            print(f"  {DENSE_TASK:<16} {label:<15} {result.main_metric.name} = {result.main_metric.value:.2f}")
    else:
        _say("[3/4] dense task skipped")
    _say("[4/4] report")
    frame = scan([results_dir])
    paths = write_report(frame, build_leaderboard(frame), output / "report", ("md", "csv", "html"),
                         title=f"dinobench demo: SSL-pretrained vs random-init vit_tiny ({dataset})")
    print((output / "report" / "leaderboard.md").read_text())
    print(f"demo finished in {time.perf_counter() - start:.0f} s")
    for path in paths:
        print(f"report: {path}")
    return {"report": paths, "results": results}
