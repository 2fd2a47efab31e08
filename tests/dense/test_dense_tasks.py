"""Dense tasks end to end on the synthetic datasets with each task config's documented CPU override set:
a result record is written and a short training run clearly beats a trivial baseline."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dinobench.data.dense import build_ade20k, build_nyu
from dinobench.synthetic.dense import write_synthetic_ade20k, write_synthetic_nyu, write_synthetic_seg_folder
from dinobench.metrics.dense import DepthMetric, SegmentationMetric
from dinobench.resolve import resolve_task
from helpers import smoke_options


def _run(run_cli, task, root, out, *extra):
    code, stdout, err = run_cli("run", "--backbone", "vit_tiny", "--task", task, "--data-root", str(root),
                                "--output", str(out), *extra, "--cfg-options", *smoke_options(task))
    assert code == 0, err
    (path,) = sorted(Path(out).glob(f"vit_tiny/{task}/*/result.json"))[-1:]
    return json.loads(path.read_text()), path


def majority_baseline(root) -> dict:
    """Predict the most frequent training class everywhere (mmseg IoUMetric on the val split)."""
    splits = build_ade20k({"reduce_zero_label": True}, str(root))
    counts = np.zeros(256, dtype=np.int64)
    for i in range(len(splits["train"])):
        counts += np.bincount(splits["train"][i]["mask"].numpy().ravel(), minlength=256)[:256]
    counts[255] = 0
    metric = SegmentationMetric(splits["val"].num_classes)
    for i in range(len(splits["val"])):
        mask = splits["val"][i]["mask"]
        metric.update(torch.full_like(mask, int(counts.argmax())), mask)
    return metric.compute()


def mean_depth_baseline(root) -> dict:
    """Predict the mean training depth everywhere (Eigen crop, like the protocol)."""
    splits = build_nyu({}, str(root))
    train = [splits["train"][i]["depth"] for i in range(len(splits["train"]))]
    mean = float(torch.cat([d[(d > 1e-3) & (d < 10)] for d in train]).mean())
    val = splits["val"]
    metric = DepthMetric(val.min_depth, val.max_depth, val.eigen_crop)
    for i in range(len(val)):
        depth = val[i]["depth"]
        metric.update(torch.full_like(depth, mean), depth)
    return metric.compute()


def test_ade20k_linear_end_to_end_beats_the_majority_class(run_cli, tmp_path, output):
    root = write_synthetic_ade20k(tmp_path / "ade")
    record, path = _run(run_cli, "ade20k-linear", root, output, "--save-predictions")
    baseline = majority_baseline(root)
    metrics = record["metrics"]
    print(f"\nade20k-linear synthetic: mIoU {metrics['mIoU']} aAcc {metrics['aAcc']} mAcc {metrics['mAcc']} | "
          f"majority class: mIoU {baseline['mIoU']} aAcc {baseline['aAcc']} mAcc {baseline['mAcc']}")
    assert metrics["mIoU"] > baseline["mIoU"] + 15 and metrics["aAcc"] > baseline["aAcc"] + 20
    assert record["protocol"] == "linear_seg" and record["protocol_plugin"] == "dinobench.plugins.segmentation"
    assert record["main_metric"] == {"name": "mIoU", "value": metrics["mIoU"], "higher_is_better": True}
    assert record["config"]["train"]["max_iters"] == 40 and record["dataset"]["splits"]["val"]["size"] == 8
    # the per-class IoU table of the final evaluation: its mean over classes present is the reported mIoU
    table = record["tables"]["per_class_iou"]
    assert len(table) == build_ade20k({"reduce_zero_label": True}, str(root))["val"].num_classes
    assert np.nanmean([row["IoU"] for row in table]) == pytest.approx(metrics["mIoU"], abs=0.01)
    assert record["higher_is_better"]["mIoU"] is True and "protocol.num_visualizations" in record["runtime_keys"]
    # --save-predictions: colourised masks + one side-by-side figure, listed as artifacts
    assert "predictions/side_by_side.png" in record["artifacts"]
    assert sum(a.endswith("_pred.png") for a in record["artifacts"]) == 4
    figure = Image.open(path.parent / "predictions" / "side_by_side.png")
    assert figure.width > 3 * 64 and figure.mode == "RGB"
    # the engine's run folder: JSONL log with the final evaluation = the recorded final metrics (no periodic
    # evaluation in the smoke run: the best of the evaluations is the final one)
    (log,) = output.glob(".runs/*/ade20k-linear/*/metrics.jsonl")
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    final = {k: metrics[f"{k}_final"] for k in ("mIoU", "aAcc", "mAcc")}
    assert lines[-1] == {"iteration": 40, "eval": final} and metrics["best_iteration"] == 40
    assert final == {k: metrics[k] for k in final} == {k: metrics[f"{k}_best"] for k in final}
    assert [x["iteration"] for x in lines if "loss" in x][:2] == [0, 10]
    assert (log.parent / "checkpoints" / "checkpoint_00000039.pth").is_file()


def test_nyu_dpt_end_to_end_beats_the_mean_depth(run_cli, tmp_path, output):
    root = write_synthetic_nyu(tmp_path / "nyu")
    record, path = _run(run_cli, "nyu-dpt", root, output, "--save-predictions")
    baseline, metrics = mean_depth_baseline(root), record["metrics"]
    print(f"\nnyu-dpt synthetic: rmse {metrics['rmse']:.4f} abs_rel {metrics['abs_rel']:.4f} a1 {metrics['a1']:.4f} | "
          f"mean depth: rmse {baseline['rmse']:.4f} abs_rel {baseline['abs_rel']:.4f} a1 {baseline['a1']:.4f}")
    assert metrics["rmse"] < 0.75 * baseline["rmse"] and metrics["a1"] > baseline["a1"] + 0.2
    assert record["protocol"] == "dpt" and record["main_metric"]["name"] == "rmse"
    assert record["main_metric"]["higher_is_better"] is False
    assert set(metrics) == {"a1", "a2", "a3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "mae"}
    assert record["config"]["protocol"]["head"]["layers"] == "four_even"
    # sample names of the BTS layout hold a folder ("bathroom/rgb_00000"): file names are made safe
    assert "predictions/000_bathroom--rgb_00000_pred.png" in record["artifacts"]
    assert Image.open(path.parent / "predictions" / "side_by_side.png").height >= 48


def test_nyu_linear_beats_the_mean_depth_and_a_rerun_reuses_the_trained_head(run_cli, tmp_path, output):
    root = write_synthetic_nyu(tmp_path / "nyu")
    first, _ = _run(run_cli, "nyu-linear", root, output)
    baseline = mean_depth_baseline(root)
    assert first["metrics"]["rmse"] < 0.75 * baseline["rmse"]
    (log,) = output.glob(".runs/*/nyu-linear/*/metrics.jsonl")
    n_train_lines = sum("loss" in x for x in log.read_text().splitlines())
    second, _ = _run(run_cli, "nyu-linear", root, output)  # same command: resumes from the final checkpoint
    assert second["metrics"] == first["metrics"] and second["protocol_hash"] == first["protocol_hash"]
    assert sum("loss" in x for x in log.read_text().splitlines()) == n_train_lines  # nothing retrained
    print(f"\nnyu-linear synthetic: rmse {first['metrics']['rmse']:.4f} a1 {first['metrics']['a1']:.4f} | "
          f"mean depth: rmse {baseline['rmse']:.4f} a1 {baseline['a1']:.4f}")


def test_seg_folder_and_depth_folder_tasks(run_cli, tmp_path, output):
    root = write_synthetic_seg_folder(tmp_path / "segf")
    code, _, err = run_cli("run", "--backbone", "vit_tiny", "--task", "seg-folder-linear", "--data-root", str(root),
                           "--output", str(output), "--cfg-options", *smoke_options("seg-folder-linear"),
                           "train.max_iters=3")
    assert code == 0, err
    (path,) = output.glob("vit_tiny/seg-folder-linear/*/result.json")
    record = json.loads(path.read_text())
    assert record["dataset"]["splits"]["train"]["num_classes"] == 6 and 0 <= record["metrics"]["mIoU"] <= 100
    cfg = resolve_task("depth-folder-dpt", smoke_options("depth-folder-dpt"))
    assert cfg["protocol"]["type"] == "dpt" and cfg["dataset"]["type"] == "depth_folder"
    assert cfg["protocol"]["head"]["channels"] == 16 and cfg["train"]["max_iters"] == 30


def test_bad_head_settings_are_one_line_errors(run_cli, tmp_path, output):
    root = write_synthetic_nyu(tmp_path / "nyu", n_train=3, n_val=2)
    for task, extra, expected in (("nyu-dpt", ["protocol.head.layers=middle"], "protocol.head.layers: 'middle'"),
                                  ("nyu-linear", [], "train.batch_size=4 is larger than the training split (3")):
        code, _, err = run_cli("run", "--backbone", "vit_tiny", "--task", task, "--data-root", str(root),
                               "--output", str(output), "--cfg-options", *smoke_options(task), *extra)
        lines = [x for x in err.splitlines() if x.strip()]
        assert code == 2 and len(lines) == 1 and expected in lines[0], err
    assert not list(output.glob("vit_tiny/**/result.json"))


@pytest.mark.slow
def test_sigkilled_cli_run_resumes_to_the_same_result(tmp_path):
    """`dinobench run` killed with SIGKILL mid-training, then the same command again: it resumes from the
    last checkpoint and records exactly the metrics of an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = write_synthetic_ade20k(tmp_path / "ade")
    options = smoke_options("ade20k-linear") + ["train.max_iters=60", "train.checkpoint_every=5"]

    def command(out):
        return [sys.executable, "-m", "dinobench", "run", "--backbone", "vit_tiny", "--task", "ade20k-linear",
                "--data-root", str(root), "--output", str(out), "--cfg-options", *options]

    env = {**os.environ, "TQDM_DISABLE": "1"}
    straight = subprocess.run(command(tmp_path / "straight"), capture_output=True, text=True, env=env, timeout=600)
    assert straight.returncode == 0, straight.stderr
    killed = subprocess.Popen(command(tmp_path / "killed"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and killed.poll() is None:
        checkpoints = list((tmp_path / "killed").glob(".runs/*/ade20k-linear/*/checkpoints/checkpoint_*.pth"))
        if any(int(p.stem.split("_")[1]) >= 19 for p in checkpoints):
            break
        time.sleep(0.05)
    assert killed.poll() is None, "the run finished before it could be killed: raise train.max_iters"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not list((tmp_path / "killed").rglob("result.json"))  # nothing half-written
    resumed = subprocess.run(command(tmp_path / "killed"), capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    (want,) = (tmp_path / "straight").rglob("result.json")
    (got,) = (tmp_path / "killed").rglob("result.json")
    want, got = json.loads(want.read_text()), json.loads(got.read_text())
    assert got["metrics"] == want["metrics"] and got["protocol_hash"] == want["protocol_hash"]
    assert "head training resumed after iteration" in resumed.stderr, resumed.stderr[-2000:]


def test_finetune_option_trains_the_backbone_end_to_end(run_cli, tmp_path, output):
    """`--cfg-options backbone.finetune=true backbone.layer_decay=0.9` unfreezes the backbone: its
    weights in the run's checkpoint moved away from the seeded init; the frozen run keeps none."""
    import dinobench
    from dinobench.utils.seeding import seed_everything

    root = write_synthetic_ade20k(tmp_path / "ade")
    frozen, _ = _run(run_cli, "ade20k-linear", root, output / "frozen", "--seed", "4")
    tuned, _ = _run(run_cli, "ade20k-linear", root, output / "tuned", "--seed", "4", "--cfg-options",
                    "backbone.finetune=true", "backbone.layer_decay=0.9")  # a second --cfg-options adds keys
    assert tuned["protocol_hash"] != frozen["protocol_hash"]  # fine-tuning is another protocol
    assert tuned["config"]["backbone"]["finetune"] is True
    seed_everything(4)
    init = dinobench.create_backbone("vit_tiny", embed_dim=64, depth=2, num_heads=2).state_dict()
    states = {}
    for name in ("frozen", "tuned"):
        (ckpt,) = sorted((output / name).glob(".runs/*/ade20k-linear/*/checkpoints/checkpoint_*.pth"))[-1:]
        states[name] = torch.load(ckpt, map_location="cpu", weights_only=True)["model"]
    assert not any(k.startswith("backbone.") for k in states["frozen"])
    tuned_backbone = {k[len("backbone."):]: v for k, v in states["tuned"].items() if k.startswith("backbone.")}
    assert tuned_backbone.keys() >= {k for k in init if not k.endswith("bias_mask")} - {"rope_embed.periods"}
    moved = [k for k, v in tuned_backbone.items() if k in init and v.dtype.is_floating_point
             and not torch.equal(v, init[k])]
    assert "blocks.0.attn.qkv.weight" in moved and "blocks.1.mlp.fc1.weight" in moved, moved
