"""The SSL engine: schedules, param groups, config validation, checkpoints + exact resume after a
kill, 2-rank torchrun (DDP and FSDP2) == single process, NaN handling, export of the teacher."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import dinobench
from dinobench.errors import ConfigError
from dinobench.training.launch import resolve_train_config
from dinobench.training.optim import param_groups
from dinobench.training.ssl_schedules import apply_schedules, cosine_schedule
from conftest import REPO
from helpers import CONFIG, FAST

def test_cosine_schedule_hand_computed():
    s = cosine_schedule(1.0, 0.0, total=6, warmup=2, start_warmup=0.0, freeze=1)
    assert s.tolist()[:3] == [0.0, 0.0, 1.0]
    np.testing.assert_allclose(s[3:], [1.0, 0.5 * (1 + np.cos(np.pi / 3)), 0.5 * (1 + np.cos(2 * np.pi / 3))])


def test_param_groups_layerwise_decay_and_no_wd_on_norms():
    backbone = dinobench.create_backbone("vit_tiny", embed_dim=32, depth=2, num_heads=2)
    from dinobench.ssl.heads import DINOHead

    head = DINOHead(32, 16, hidden_dim=32, bottleneck_dim=8)
    groups = param_groups({"backbone": backbone, "dino_head": head}, layerwise_decay=0.5, patch_embed_lr_mult=0.2)
    by_param = {id(p): g for g in groups for p in g["params"]}
    assert by_param[id(backbone.patch_embed.proj.weight)]["lr_multiplier"] == pytest.approx(0.5**3 * 0.2)
    assert by_param[id(backbone.cls_token)]["lr_multiplier"] == pytest.approx(0.5**3)
    assert by_param[id(backbone.blocks[0].attn.qkv.weight)]["lr_multiplier"] == pytest.approx(0.5**2)
    assert by_param[id(backbone.blocks[1].attn.qkv.weight)]["lr_multiplier"] == pytest.approx(0.5)
    assert by_param[id(backbone.norm.weight)]["lr_multiplier"] == 1.0
    assert by_param[id(backbone.norm.weight)]["wd_multiplier"] == 0.0
    assert by_param[id(backbone.blocks[0].attn.qkv.bias)]["wd_multiplier"] == 0.0
    assert by_param[id(head.last_layer.weight)]["is_last_layer"] is True
    optimizer = torch.optim.AdamW(groups)
    apply_schedules(optimizer.param_groups, {"lr": 1.0, "last_layer_lr": 0.0, "weight_decay": 0.1})
    last = next(g for g in optimizer.param_groups if g["is_last_layer"])
    assert last["lr"] == 0.0  # frozen during the first epoch


def test_unknown_config_key_is_rejected_naming_it():
    with pytest.raises(ConfigError, match=r"unknown key 'optim.lrr' \(did you mean optim.lr\?\)"):
        resolve_train_config(CONFIG, ["optim.lrr=0.1"])
    cfg = resolve_train_config(CONFIG, ["student.overrides.depth=2", "optim.lr=0.1"])
    assert cfg["student"]["overrides"]["depth"] == 2 and cfg["optim"]["lr"] == 0.1


def test_unknown_key_in_a_config_file_names_the_file_the_key_and_the_closest_valid_key(tmp_path):
    typo = tmp_path / "typo.py"
    typo.write_text(f"_base_ = [{str(CONFIG)!r}]\noptim = dict(lrr=1e-3)\n")
    with pytest.raises(ConfigError) as info:
        resolve_train_config(typo)
    assert str(info.value) == f"{typo}: unknown key 'optim.lrr' (did you mean optim.lr?)"
    child = tmp_path / "child.py"  # the typo lives in the base file: that file is named
    child.write_text("_base_ = ['./typo.py']\ntrain = dict(batch_size_per_gpu=4)\n")
    with pytest.raises(ConfigError, match=rf"^{typo}: unknown key 'optim.lrr' \(did you mean optim.lr\?\)$"):
        resolve_train_config(child)
    misplaced = tmp_path / "misplaced.py"
    misplaced.write_text(f"_base_ = [{str(CONFIG)!r}]\ntrain = dict(lr=1e-3)\n")
    with pytest.raises(ConfigError, match=r"unknown key 'train.lr' \(did you mean optim.lr\?\)"):
        resolve_train_config(misplaced)
    free_form = tmp_path / "free.py"  # backbone arguments and dataset options stay free-form
    free_form.write_text(f"_base_ = [{str(CONFIG)!r}]\nstudent = dict(overrides=dict(depth=2, new_arg=1))\n"
                         "train = dict(dataset=dict(reader_option=3))\n")
    cfg = resolve_train_config(free_form)
    assert cfg["student"]["overrides"]["new_arg"] == 1 and cfg["train"]["dataset"]["reader_option"] == 3


@pytest.mark.parametrize("config", sorted(p.name for p in (REPO / "configs" / "train").glob("*.py")))
def test_every_shipped_train_config_resolves(config):
    from dinobench.config import load_config

    path = REPO / "configs" / "train" / config
    if load_config(path).get("recipe") == "dinotxt":  # the other recipe `dinobench train` runs
        from dinobench.text.train import resolve_dinotxt_config

        assert resolve_dinotxt_config(path)["train"]["optimizer"]["lr"] > 0
    else:
        assert resolve_train_config(path)["optim"]["lr"] > 0


def _train_cli(output: Path, *extra: str, env_extra: dict | None = None, wait: bool = True):
    env = {**os.environ, "TQDM_DISABLE": "1", **(env_extra or {})}
    cmd = [sys.executable, "-m", "dinobench", "train", "--config", str(CONFIG), "--output", str(output), *FAST, *extra]
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


def _metrics(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]


def test_training_runs_logs_and_exports_a_loadable_teacher(tmp_path):
    done = _train_cli(tmp_path / "run")
    assert done.returncode == 0, done.stderr
    rows = _metrics(tmp_path / "run")
    assert [r["iteration"] for r in rows] == list(range(6))
    for key in ("total_loss", "dino_local_crops_loss", "dino_global_crops_loss", "koleo_loss", "ibot_loss", "lr",
                "momentum", "teacher_temp", "weight_decay", "images_per_s"):
        assert key in rows[-1] and np.isfinite(rows[-1][key]), key
    assert rows[0]["teacher_temp"] == pytest.approx(0.04) and rows[-1]["teacher_temp"] == pytest.approx(0.07)
    teacher = dinobench.create_backbone("vit_tiny", weights=str(tmp_path / "run" / "teacher_checkpoint.pth"),
                                        embed_dim=32, depth=2, num_heads=2)
    assert teacher(torch.randn(2, 3, 32, 32)).shape == (2, 32)
    assert len(list((tmp_path / "run" / "checkpoints").glob("checkpoint_*.pth"))) == 2  # max_to_keep


def _final_teacher(output: Path) -> dict:
    return torch.load(output / "teacher_checkpoint.pth", weights_only=True)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_kill_and_resume_equals_uninterrupted(tmp_path, sig):
    reference = _train_cli(tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr
    proc = _train_cli(tmp_path / "killed", wait=False)
    ckpt_dir = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 600
    while not list(ckpt_dir.glob("checkpoint_00000001.pth")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(sig)
    assert proc.wait(timeout=300) in (-signal.SIGKILL, 143)  # SIGTERM: checkpoint, then exit 128+15
    assert not (tmp_path / "killed" / "teacher_checkpoint.pth").exists()
    resumed = _train_cli(tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr
    a, b = _final_teacher(tmp_path / "reference"), _final_teacher(tmp_path / "killed")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    losses = {r["iteration"]: r["total_loss"] for r in _metrics(tmp_path / "killed")}
    for row in _metrics(tmp_path / "reference"):
        assert losses[row["iteration"]] == row["total_loss"]


def test_two_rank_torchrun_equals_single_process(tmp_path):
    # Sinkhorn-Knopp (the DINOv3 default) is exactly rank-invariant; the softmax-centering iBOT centre
    # averages per-rank means of unequal masked-token counts (as the official code does), so it is not
    common = ["dino.koleo_loss_distributed=true", "train.epoch_length=2", "optim.epochs=1",
              "train.centering=sinkhorn_knopp"]
    single = _train_cli(tmp_path / "single", *common, "train.batch_size_per_gpu=8")
    assert single.returncode == 0, single.stderr
    env = {**os.environ, "TQDM_DISABLE": "1", "DINOBENCH_DIST_BACKEND": "gloo", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "dinobench", "train", "--config", str(CONFIG), "--output", str(tmp_path / "ddp"), *FAST, *common,
           "train.batch_size_per_gpu=4"]
    ddp = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert ddp.returncode == 0, ddp.stderr[-4000:]
    one, two = _metrics(tmp_path / "single"), _metrics(tmp_path / "ddp")
    assert len(one) == len(two) == 2
    for a, b in zip(one, two):
        for key in ("total_loss", "dino_local_crops_loss", "dino_global_crops_loss", "koleo_loss", "ibot_loss"):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), (a["iteration"], key)
    ta, tb = _final_teacher(tmp_path / "single"), _final_teacher(tmp_path / "ddp")
    for key in ta:
        torch.testing.assert_close(tb[key], ta[key], rtol=1e-4, atol=1e-5)


def _torchrun(output: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TQDM_DISABLE": "1", "DINOBENCH_DIST_BACKEND": "gloo", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "dinobench", "train", "--config", str(CONFIG), "--output", str(output), *FAST, *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


def test_two_rank_fsdp2_on_cpu_equals_single_process_and_resumes_exactly(tmp_path):
    # FSDP2 (fully_shard, students and EMA teachers sharded) on CPU with gloo; reduce-scatter sums in
    # another order than one process, hence the tolerance. Checkpoints hold full (unsharded) state dicts.
    common = ["dino.koleo_loss_distributed=true", "train.epoch_length=3", "optim.epochs=1",
              "train.centering=sinkhorn_knopp"]
    single = _train_cli(tmp_path / "single", *common, "train.batch_size_per_gpu=8")
    assert single.returncode == 0, single.stderr
    fsdp = _torchrun(tmp_path / "fsdp", *common, "train.batch_size_per_gpu=4", "train.parallel=fsdp")
    assert fsdp.returncode == 0, fsdp.stderr[-4000:]
    one, two = _metrics(tmp_path / "single"), _metrics(tmp_path / "fsdp")
    assert len(one) == len(two) == 3
    for a, b in zip(one, two):
        for key in ("total_loss", "dino_local_crops_loss", "dino_global_crops_loss", "koleo_loss", "ibot_loss",
                    "grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), (a["iteration"], key)
    ta, tb = _final_teacher(tmp_path / "single"), _final_teacher(tmp_path / "fsdp")
    assert set(ta) == set(tb)
    for key in ta:
        torch.testing.assert_close(tb[key], ta[key], rtol=1e-4, atol=1e-5)
    teacher = dinobench.create_backbone("vit_tiny", weights=str(tmp_path / "fsdp" / "teacher_checkpoint.pth"),
                                        embed_dim=32, depth=2, num_heads=2)
    assert teacher(torch.randn(2, 3, 32, 32)).shape == (2, 32)
    saved = torch.load(tmp_path / "fsdp" / "checkpoints" / "checkpoint_00000001.pth", weights_only=True)
    reference = torch.load(tmp_path / "single" / "checkpoints" / "checkpoint_00000001.pth", weights_only=True)
    assert all(type(v) is torch.Tensor and v.shape == reference["model"][k].shape for k, v in saved["model"].items())
    assert set(saved["model"]) == set(reference["model"])
    # resume: drop the last checkpoint and the export, rerun; the run continues bit for bit
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    (resumed / "checkpoints" / "checkpoint_00000001.pth").write_bytes(
        (tmp_path / "fsdp" / "checkpoints" / "checkpoint_00000001.pth").read_bytes())
    again = _torchrun(resumed, *common, "train.batch_size_per_gpu=4", "train.parallel=fsdp")
    assert again.returncode == 0, again.stderr[-4000:]
    assert "SSL training resumed after iteration 1" in again.stderr
    assert [r["total_loss"] for r in _metrics(resumed)] == [two[2]["total_loss"]]
    final = _final_teacher(resumed)
    for key in tb:
        assert torch.equal(final[key], tb[key]), key


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    from dinobench.ssl.meta_arch import SSLMetaArch
    from dinobench.training import TrainingDiverged
    from dinobench.training import ssl as train_module

    original = SSLMetaArch.forward_backward

    def poisoned(self, data, teacher_temp, gram_weight=0.0):
        loss, metrics = original(self, data, teacher_temp, gram_weight)
        if data["iteration"] == 3:
            metrics["total_loss"] = float("nan")
        return loss, metrics

    monkeypatch.setattr(SSLMetaArch, "forward_backward", poisoned)
    cfg = resolve_train_config(CONFIG, FAST)
    with pytest.raises(TrainingDiverged, match=r"iteration 3: SSL training loss is nan \(dino_local_crops_loss=.*total_loss=nan\); "
                                               r"stopped, last good checkpoint kept: .*checkpoint_00000001.pth"):
        train_module.train(cfg, tmp_path / "run")
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("checkpoint_*.pth"))
    assert kept == ["checkpoint_00000001.pth"]
    assert not (tmp_path / "run" / "teacher_checkpoint.pth").exists()


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pretrain") / "run"
    done = _train_cli(out)
    assert done.returncode == 0, done.stderr
    return out


def test_high_resolution_adaptation_starts_from_the_teacher(pretrained_run, tmp_path):
    from dinobench.training.checkpoint import load_teacher_student_state
    from dinobench.training.ssl import Trainer

    cfg = resolve_train_config(REPO / "configs" / "train" / "vit_tiny_digits_highres.py",
                               FAST + [f"init.from_teacher_checkpoint={pretrained_run}", f"gram.ckpt={pretrained_run}",
                                       "crops.global_crops_size=48", "crops.local_crops_size=24",
                                       "crops.gram_teacher_crops_size=96"])
    trainer = Trainer(cfg, tmp_path / "hr")
    teacher = load_teacher_student_state(pretrained_run)
    for name, value in trainer.model.students["student"].state_dict().items():
        assert torch.equal(value, teacher[name]), name
    for name, value in trainer.model.gram_teacher.state_dict().items():
        assert torch.equal(value, teacher["backbone." + name]), name
    summary = trainer.fit()
    assert Path(summary["exported"]["student"]).is_file()


def test_gram_anchoring_logs_a_falling_gram_loss(pretrained_run, tmp_path):
    out = tmp_path / "gram"
    done = subprocess.run(
        [sys.executable, "-m", "dinobench", "train", "--config", str(REPO / "configs" / "train" / "vit_tiny_digits_gram.py"),
         "--output", str(out), *FAST, f"init.from_teacher_checkpoint={pretrained_run}", f"gram.ckpt={pretrained_run}",
         "crops.gram_teacher_crops_size=64", "train.epoch_length=8", "optim.epochs=2", "optim.lr=0.001",
         "gram.loss_weight=50"],  # Gram-dominated so that 16 iterations show the anchoring pull
        capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"}, timeout=900)
    assert done.returncode == 0, done.stderr
    gram = [r["gram_loss"] for r in _metrics(out)]
    assert len(gram) == 16 and all(np.isfinite(gram))
    assert np.mean(gram[-4:]) < np.mean(gram[:4])


def test_distillation_into_one_and_two_students(pretrained_run, tmp_path):
    for config, names in (("vit_tiny_digits_distill.py", ["small"]), ("vit_tiny_digits_multidistill.py", ["small", "micro"])):
        out = tmp_path / config
        done = subprocess.run(
            [sys.executable, "-m", "dinobench", "train", "--config", str(REPO / "configs" / "train" / config),
             "--output", str(out), *FAST, f"distillation.checkpoint_path={pretrained_run}",
             "distillation.teacher.overrides.embed_dim=32", "distillation.teacher.overrides.depth=2",
             "distillation.teacher.overrides.num_heads=2", "train.epoch_length=2", "optim.epochs=1"],
            capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"}, timeout=900)
        assert done.returncode == 0, done.stderr
        rows = _metrics(out)
        if len(names) == 2:
            assert {"small/ibot_loss", "micro/ibot_loss"} <= set(rows[-1])
            assert (out / "teacher_checkpoint_micro.pth").is_file()
        small = dinobench.create_backbone("vit_tiny", weights=str(out / "teacher_checkpoint.pth"), embed_dim=64,
                                          depth=2, num_heads=2)
        assert small.embed_dim == 64


def test_gram_teacher_refresh_schedule():
    """gram.rep_update: the Gram teacher is reloaded from the EMA teacher after every update_frequency-th
    iteration from it_first_update on, at most max_updates times."""
    from types import SimpleNamespace

    from dinobench.training.ssl import SSLRecipe

    refreshed = []
    fake = SimpleNamespace(config={"gram": {"use_loss": True, "rep_update": True, "it_first_update": 4,
                                         "update_frequency": 3, "max_updates": 2}},
                           gram_updates=0, model=SimpleNamespace(load_gram_from_teacher=lambda: refreshed.append(it)))
    for it in range(20):
        SSLRecipe.refresh_gram(fake, it)
    assert refreshed == [5, 8] and fake.gram_updates == 2  # after iterations 6 and 9 (1-based), then the limit
    fake.config["gram"]["rep_update"], fake.gram_updates, refreshed[:] = False, 0, []
    for it in range(20):
        SSLRecipe.refresh_gram(fake, it)
    assert refreshed == []


def test_gradient_clipping_returns_the_unclipped_norm_and_clips():
    from dinobench.utils.distributed import clip_grad_norm

    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(4))]
    params[0].grad, params[1].grad = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 4.0, 0.0, 0.0])
    assert clip_grad_norm(params, 1.0) == pytest.approx(5.0)  # sqrt(3^2 + 4^2), before clipping
    total = torch.sqrt(sum((p.grad ** 2).sum() for p in params))
    assert total.item() == pytest.approx(1.0, rel=1e-5)
    assert torch.allclose(params[0].grad, torch.tensor([0.6, 0.0, 0.0]), atol=1e-5)
