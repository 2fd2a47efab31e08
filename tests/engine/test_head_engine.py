"""The head-training engine: schedules, exact resume after a crash or SIGTERM, evaluation, fine-tuning."""

import json
import math
import os
import signal

import pytest
import torch

from conftest import TINY
from helpers import CFG, ToySegmentation, seg_loss

import dinobench
from dinobench.heads.model import BackboneNeckHead as DenseModel
from dinobench.errors import ConfigError
from dinobench.training import TrainingDiverged, TrainingInterrupted, head_training_loop, schedule_at, train_config
from dinobench.utils.seeding import seed_from
from dinobench.heads.linear_seg import LinearSegHead


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return dinobench.create_backbone("vit_tiny", **TINY)


def make_trainer(backbone, work_dir, loss_fn=seg_loss, evaluate=None, finetune=False, **cfg):
    torch.manual_seed(123)  # the same initial head every time
    head = LinearSegHead(64, num_classes=3, dropout=0.1)
    model = DenseModel(backbone, head, [1], finetune=finetune, layer_decay=0.5)
    return head_training_loop(model, ToySegmentation(), loss_fn, {**CFG, **cfg}, work_dir, evaluate=evaluate,
                              seed=3, run_key="k")


def head_state(loop):
    """A copy of the trained head's weights."""
    return {k: v.detach().clone() for k, v in loop.recipe.model.head.state_dict().items()}


def test_kill_and_resume_gives_the_same_head_bit_for_bit(backbone, tmp_path):
    straight = make_trainer(backbone, tmp_path / "straight")
    straight.fit()
    want = head_state(straight)
    initial = head_state(make_trainer(backbone, tmp_path / "x"))
    assert not all(torch.equal(want[k], initial[k]) for k in want)  # training changed the head

    def crashing(model, batch, iteration):  # the process dies in iteration 5 (checkpoint of iteration 3 on disk)
        if iteration == 5:
            raise RuntimeError("killed")
        return seg_loss(model, batch, iteration)

    with pytest.raises(RuntimeError, match="killed"):
        make_trainer(backbone, tmp_path / "resumed", loss_fn=crashing).fit()
    names = sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir())
    assert names == ["checkpoint_00000001.pth", "checkpoint_00000003.pth"]
    resumed = make_trainer(backbone, tmp_path / "resumed")
    assert resumed.resume() and resumed.start_iter == 4
    summary = resumed.fit()
    assert summary["resumed_from"] == 4
    got = head_state(resumed)
    assert got.keys() == want.keys()
    for key in want:
        assert torch.equal(got[key], want[key]), key
    steps = [loop.recipe.optimizer.state_dict()["state"][0]["step"] for loop in (resumed, straight)]
    assert steps[0] == steps[1]
    log = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == [0, 1, 2, 3, 4, 4, 5, 6]  # iteration 4 ran twice, 5 was lost
    ref = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] == ref[-1]["loss"]


def test_sigterm_saves_a_checkpoint_and_resumes_exactly(backbone, tmp_path):
    straight = make_trainer(backbone, tmp_path / "a", checkpoint_every=0)
    straight.fit()

    def terminated(model, batch, iteration):
        if iteration == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return seg_loss(model, batch, iteration)

    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted, match="after iteration 2") as info:
        make_trainer(backbone, tmp_path / "b", loss_fn=terminated, checkpoint_every=0).fit()
    assert info.value.exit_code == 143 and signal.getsignal(signal.SIGTERM) == previous  # handler restored
    assert [p.name for p in (tmp_path / "b" / "checkpoints").iterdir()] == ["checkpoint_00000002.pth"]
    resumed = make_trainer(backbone, tmp_path / "b", checkpoint_every=0)
    resumed.resume()
    resumed.fit()
    for key, value in head_state(straight).items():
        assert torch.equal(head_state(resumed)[key], value), key


def test_evaluation_runs_periodically_without_shifting_training(backbone, tmp_path):
    calls = []

    def evaluate(model):
        assert not model.training
        torch.rand(100)  # evaluation may use the RNG: training must not notice
        calls.append(1)
        return {"score": float(len(calls))}

    with_eval = make_trainer(backbone, tmp_path / "e", evaluate=evaluate, eval_every=3)
    summary = with_eval.fit()
    assert len(calls) == 3 and summary["metrics"] == {"score": 3.0}  # after 3, 6 and at the end (7)
    evals = [json.loads(x) for x in (tmp_path / "e" / "metrics.jsonl").read_text().splitlines() if "eval" in x]
    assert [r["iteration"] for r in evals] == [3, 6, 7]
    plain = make_trainer(backbone, tmp_path / "p")
    plain.fit()
    for key, value in head_state(plain).items():
        assert torch.equal(head_state(with_eval)[key], value), key


def test_data_stream_depends_only_on_seed_and_iteration(backbone, tmp_path):
    a, b = make_trainer(backbone, tmp_path / "w0"), make_trainer(backbone, tmp_path / "w2", num_workers=2)
    batches_a = [next(iter(a.loader())) for _ in range(2)]
    torch.rand(5)  # the global RNG state does not matter
    batches_b = [next(iter(b.loader())) for _ in range(2)]
    for x, y in zip(batches_a, batches_b):
        assert torch.equal(x["image"], y["image"]) and x["name"] == y["name"]
    b.start_iter = 3
    late = next(iter(b.loader()))
    a.fit()
    assert not torch.equal(late["image"], batches_a[0]["image"])
    assert seed_from(3, 1, 2) == seed_from(3, 1, 2) != seed_from(3, 2, 1)


def test_resume_refuses_a_folder_of_another_run(backbone, tmp_path):
    make_trainer(backbone, tmp_path / "r", max_iters=2).fit()
    other = make_trainer(backbone, tmp_path / "r", max_iters=2)
    other.recipe.run_key = "another"
    with pytest.raises(ConfigError, match="holds a head-training run of another config"):
        other.resume()


def test_non_finite_loss_stops_with_a_clear_error(backbone, tmp_path):
    def nan_loss(model, batch, iteration):
        loss, logs = seg_loss(model, batch, iteration)
        return loss * (float("nan") if iteration == 3 else 1.0), logs

    with pytest.raises(TrainingDiverged, match="iteration 3: head training loss is nan.*checkpoint_00000001"):
        make_trainer(backbone, tmp_path / "n", loss_fn=nan_loss).fit()


def test_finetune_uses_layerwise_lr_decay_and_updates_the_backbone(tmp_path):
    torch.manual_seed(0)
    bb = dinobench.create_backbone("vit_tiny", **TINY)
    before = bb.blocks[0].attn.qkv.weight.detach().clone()
    trainer = make_trainer(bb, tmp_path / "ft", finetune=True, max_iters=2)
    mults = sorted({g["lr_multiplier"] for g in trainer.recipe.optimizer.param_groups})
    assert mults == [0.125, 0.25, 0.5, 1.0]  # 0.5 ** (depth + 1 - layer): embeddings, block 0, block 1, head/norm
    trainer.fit()
    assert not torch.equal(bb.blocks[0].attn.qkv.weight, before)
    state = torch.load(trainer.checkpoints.latest_path(), weights_only=True)
    assert any(k.startswith("backbone.") for k in state["model"])  # a fine-tuned backbone is checkpointed


def test_frozen_backbone_is_untouched_and_not_checkpointed(backbone, tmp_path):
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    trainer = make_trainer(backbone, tmp_path / "fz", max_iters=2)
    assert len(trainer.recipe.optimizer.param_groups) == 1
    trainer.fit()
    assert all(torch.equal(v, backbone.state_dict()[k]) for k, v in before.items())
    state = torch.load(trainer.checkpoints.latest_path(), weights_only=True)
    assert state["model"] and not any(k.startswith("backbone.") for k in state["model"])
    assert trainer.recipe.optimizer.param_groups[0]["weight_decay"] == pytest.approx(1e-3)  # on every head parameter


# ----------------------------------------------------------------------------- schedules
def test_warmup_one_cycle_matches_the_official_formula_at_hand_picked_steps():
    seg = dict(type="warmup_one_cycle", warmup_iters=1500, warmup_ratio=1e-6)  # official ADE20K linear
    base, total = 1e-3, 40000
    assert schedule_at(seg, base, 0, total)["lr"] == pytest.approx(1e-9, rel=1e-6)
    k = (1 - 750 / 1500) * (1 - 1e-6)
    assert schedule_at(seg, base, 750, total)["lr"] == pytest.approx(base * (1 - k) * (1 - 750 / 40000))
    assert schedule_at(seg, base, 1500, total)["lr"] == pytest.approx(base * (1 + math.cos(math.pi * 1501 / 40000)) / 2)
    assert schedule_at(seg, base, total - 1, total)["lr"] == pytest.approx(0.0, abs=1e-15)  # final_div_factor inf
    assert "beta1" not in schedule_at(seg, base, 10, total)

    nyu = dict(type="warmup_one_cycle", warmup_iters=12800, final_div_factor=1000.0, use_beta1=True)  # official NYU
    base, total = 3e-4, 38400
    t = 6400
    want = base / 1000 + base * (1 + math.cos(math.pi * t / total)) / 2 * t / 12800
    v = schedule_at(nyu, base, t, total)
    assert v["lr"] == pytest.approx(want) and v["beta1"] == 0.0  # official: beta1 is 0 during warm-up
    assert schedule_at(nyu, base, 12800, total)["beta1"] == pytest.approx(0.85)
    end = schedule_at(nyu, base, total - 1, total)
    assert end["lr"] == pytest.approx(base / 25 / 1000) and end["beta1"] == pytest.approx(0.95, abs=1e-6)


def test_other_schedules_and_config_validation():
    poly = dict(type="poly", warmup_iters=10, warmup_ratio=0.1, power=0.9, min_lr=1e-4)
    assert schedule_at(poly, 1.0, 0, 110)["lr"] == pytest.approx(0.1)
    assert schedule_at(poly, 1.0, 5, 110)["lr"] == pytest.approx(0.55)
    assert schedule_at(poly, 1.0, 60, 110)["lr"] == pytest.approx((1 - 1e-4) * 0.5 ** 0.9 + 1e-4)
    cos = dict(type="cosine", min_lr=0.0)
    assert schedule_at(cos, 2.0, 50, 100)["lr"] == pytest.approx(1.0)
    assert schedule_at(dict(type="constant"), 2.0, 99, 100)["lr"] == 2.0
    assert schedule_at(dict(type="constant", warmup_iters=4, warmup_ratio=0.5), 2.0, 2, 100)["lr"] == 1.5
    step = dict(type="step", milestones=[10, 20], gamma=0.5, warmup_iters=4, warmup_ratio=0.0)
    assert [schedule_at(step, 2.0, t, 30)["lr"] for t in (0, 2, 4, 9, 10, 19, 20, 29)] == \
        [0.0, 1.0, 2.0, 2.0, 1.0, 1.0, 0.5, 0.5]  # linear warm-up, then lr * gamma ** (milestones passed)
    with pytest.raises(ConfigError, match="train.scheduler.type: unknown schedule 'stepp'"):
        train_config({"scheduler": {"type": "stepp"}})
    with pytest.raises(ConfigError, match=r"train.scheduler.milestone: unknown key \(did you mean milestones\?\)"):
        train_config({"scheduler": {"type": "step", "milestone": [3]}})
    with pytest.raises(ConfigError, match="train.scheduler.milestones must be a list of iterations"):
        train_config({"scheduler": {"type": "step", "milestones": 3}})
    with pytest.raises(ConfigError, match=r"^train.max_iter: unknown key \(did you mean max_iters\?\)$"):
        train_config({"max_iter": 3})
    with pytest.raises(ConfigError, match="train.batch_size must be a positive integer"):
        train_config({"batch_size": 0})
    with pytest.raises(ConfigError, match=r"train.optimizer.beta: unknown key for 'adamw' \(did you mean betas\?\)"):
        train_config({"optimizer": {"beta": [0.9, 0.99]}})
    with pytest.raises(ConfigError, match="train.optimizer.type: unknown optimizer 'adam'"):
        train_config({"optimizer": {"type": "adam"}})
    # neutral engine defaults (recipes live in configs/_base_/train/): AdamW, no weight decay, constant lr
    assert train_config({"optimizer": {"lr": 0.5}}).optimizer == {"type": "adamw", "lr": 0.5, "weight_decay": 0.0,
                                                                      "betas": [0.9, 0.999], "eps": 1e-8}
    filled = train_config({})
    assert filled.scheduler == {"type": "constant", "warmup_iters": 0, "warmup_ratio": 0.0}
    assert filled.amp is None and filled.grad_clip is None


# ----------------------------------------------------------------------------- DDP
def _ddp_worker(rank, world, port, work_dir, out_path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), DINOBENCH_DIST_BACKEND="gloo")
    from dinobench.utils import distributed as ddp

    torch.set_num_threads(1)
    torch.manual_seed(0)
    bb = dinobench.create_backbone("vit_tiny", **TINY)
    try:
        trainer = _plain_trainer(bb, work_dir)
        assert trainer.world == 2 and trainer.recipe.batch_per_rank == 2
        summary = trainer.fit()
        with open(f"{out_path}.rank{rank}.json", "w") as fh:
            json.dump(summary["evaluations"], fh)
        if rank == 0:
            torch.save(head_state(trainer), out_path)
    finally:
        ddp.shutdown()


def _sharded_miou(model):
    """mIoU over fixed images, each rank its share (merged): what the trained-head template evaluates."""
    from dinobench.metrics.dense import SegmentationMetric
    from dinobench.training import evaluate_sharded

    val, metric = ToySegmentation(n=5), SegmentationMetric(3)
    fixed = [{"image": val.images[i], "mask": val.masks[i]} for i in range(len(val))]
    return evaluate_sharded(fixed, lambda b: metric.update(model(b["image"]).argmax(1)[0], b["mask"][0]), metric)


def _plain_trainer(backbone, work_dir):
    torch.manual_seed(123)
    head = LinearSegHead(64, num_classes=3, dropout=0.0, use_batchnorm=False)  # no per-rank batch statistics
    return head_training_loop(DenseModel(backbone, head, [1]), ToySegmentation(), seg_loss,
                              {**CFG, "max_iters": 4, "checkpoint_every": 0, "eval_every": 2}, work_dir, seed=3,
                              evaluate=_sharded_miou)


def test_ddp_two_ranks_train_like_one_process_on_the_global_batch(backbone, tmp_path):
    import socket

    import torch.multiprocessing as mp

    single = _plain_trainer(backbone, tmp_path / "single")
    evaluations = single.fit()["evaluations"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_ddp_worker, args=(2, port, str(tmp_path / "ddp"), str(tmp_path / "head.pth")), nprocs=2,
                       join=True, start_method="spawn")
    got = torch.load(tmp_path / "head.pth", weights_only=True)
    for key, value in head_state(single).items():
        torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir()) == ["checkpoint_00000003.pth"]
    # the periodic evaluations (sharded, merged) are the same on both ranks, and those of one process
    ranks = [json.loads((tmp_path / f"head.pth.rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1] and [e["iteration"] for e in ranks[0]] == [2, 4]
    for got_eval, want_eval in zip(ranks[0], evaluations):
        assert got_eval["metrics"] == pytest.approx(want_eval["metrics"], abs=0.02)
    saved = torch.load(tmp_path / "ddp" / "checkpoints" / "checkpoint_00000003.pth", weights_only=True)
    assert saved["evaluations"]["evaluations"] == ranks[0][:1]  # the final evaluation comes after the last save
