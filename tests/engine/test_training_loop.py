"""The shared training loop driven by a recipe other than head training (after-step hook, checkpoint extras,
SGD + step schedule), model-supplied parameter groups, nested collate_fn batches, run keys and folders,
neutral engine defaults, and the schedule/optimizer registries."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from dinobench.config import load_config
from dinobench.errors import ConfigError
from dinobench.training import (RUNTIME_TRAIN_KEYS, TRAIN_DEFAULTS, LoopSettings, Recipe, SeededSamples,
                                TrainConfig, TrainingDiverged, TrainingInterrupted, TrainingLoop, build_optimizer,
                                evaluate_sharded, head_training_loop, register_schedule, run_key, schedule_at, train_config, train_head,
                                work_dir_for)
from dinobench.training import ssl as ssl_recipe
from dinobench.training.optim import apply_lr
from dinobench.utils.paths import configs_dir


class Points(Dataset):
    """y = 3x - 1 + noise drawn from the global RNG (seeded per sample by SeededSamples)."""

    def __len__(self):
        return 12

    def __getitem__(self, i):
        x = torch.tensor([float(i) / 12])
        return {"x": x, "y": 3 * x - 1 + 0.05 * torch.randn(1)}


class EmaRecipe(Recipe):
    """A non-head recipe: a dropout MLP trained with SGD + step schedule, an EMA copy updated after each
    step and a step counter kept in the checkpoint (as SSL keeps its Gram-teacher counters)."""

    name, desc = "toy training", "toy"

    def __init__(self, crash_at: int | None = None):
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(1, 8), nn.Dropout(0.2), nn.Linear(8, 1))
        self.ema = [p.detach().clone() for p in self.model.parameters()]
        self.optimizer = build_optimizer([{"params": list(self.model.parameters())}],
                                         {"type": "sgd", "lr": 0.1, "momentum": 0.9})
        self.dataset, self.batch_per_rank = SeededSamples(Points(), seed=5), 4
        self.schedule = {"type": "step", "milestones": [4, 8], "gamma": 0.5, "warmup_iters": 2}
        self.updates, self.crash_at = 0, crash_at

    def apply_schedule(self, iteration):
        values = schedule_at(self.schedule, 0.1, iteration, 10)
        apply_lr(self.optimizer.param_groups, values["lr"], 0.0)
        return values

    def step(self, batch, iteration):
        if iteration == self.crash_at:
            raise RuntimeError("killed")
        return nn.functional.mse_loss(self.model(batch["x"]), batch["y"]), {}

    def after_step(self, iteration):
        with torch.no_grad():
            for e, p in zip(self.ema, self.model.parameters()):
                e.mul_(0.9).add_(p.detach(), alpha=0.1)
        self.updates += 1

    def state_extras(self):
        return {"ema": self.ema, "updates": self.updates}

    def load_state_extras(self, state, path):
        self.ema, self.updates = state["ema"], state["updates"]


def _loop(recipe, work_dir):
    return TrainingLoop(recipe, LoopSettings(max_iters=10, checkpoint_every=3, max_to_keep=2, grad_clip=1.0),
                        work_dir, seed=7)


def test_a_custom_recipe_resumes_bit_for_bit_with_its_after_step_state(tmp_path):
    straight = EmaRecipe()
    summary = _loop(straight, tmp_path / "a").fit()
    assert summary["iterations"] == 10 and summary["last"]["iteration"] == 9 and straight.updates == 10
    with pytest.raises(RuntimeError, match="killed"):
        _loop(EmaRecipe(crash_at=7), tmp_path / "b").fit()  # checkpoints after iterations 2 and 5 on disk
    state = torch.load(tmp_path / "b" / "checkpoints" / "checkpoint_00000005.pth", weights_only=True)
    assert {"iteration", "model", "optimizer", "schedule", "rng", "ema", "updates"} <= set(state)
    assert state["schedule"] == {"iteration": 6, "total": 10} and state["updates"] == 6
    resumed = EmaRecipe()
    loop = _loop(resumed, tmp_path / "b")
    assert loop.resume() and loop.start_iter == 6
    loop.fit()
    assert resumed.updates == 10
    for got, want in zip([*resumed.model.state_dict().values(), *resumed.ema],
                         [*straight.model.state_dict().values(), *straight.ema]):
        assert torch.equal(got, want)
    rows = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in rows] == [0.0, 0.05, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025, 0.025]
    assert all("grad_norm" in r and r["images_per_s"] > 0 for r in rows)


def test_one_loop_and_one_divergence_error_for_every_recipe():
    from dinobench.training import head, loop

    assert ssl_recipe.TrainingLoop is head.TrainingLoop is TrainingLoop and loop.TrainingDiverged is TrainingDiverged
    assert issubclass(ssl_recipe.SSLRecipe, Recipe) and issubclass(head.HeadRecipe, Recipe)
    assert TrainingInterrupted.exit_code == 143 and callable(evaluate_sharded) and callable(train_head)


class Nested(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return torch.full((2,), float(i)), i % 2


def nested_collate(samples):
    """A batch nested two levels deep (e.g. per-image box targets): dict -> list of dicts of tensors."""
    return {"inputs": {"x": torch.stack([s[0] for s in samples])},
            "targets": [{"label": torch.tensor([s[1]])} for s in samples]}


class TwoGroups(nn.Module):
    """A model that supplies its own parameter groups: ``frozen`` gets lr multiplier 0."""

    def __init__(self):
        super().__init__()
        self.trained, self.frozen = nn.Linear(2, 2), nn.Linear(2, 2)

    def forward(self, x):
        return self.frozen(self.trained(x))

    def param_groups(self):
        return [{"params": list(self.trained.parameters())},
                {"params": list(self.frozen.parameters()), "lr_multiplier": 0.0}]


def test_model_param_groups_and_a_nested_collate_fn(tmp_path):
    seen = []

    def loss_fn(model, batch, iteration):
        assert isinstance(batch["targets"], list) and batch["targets"][0]["label"].shape == (1,)
        seen.append(batch["inputs"]["x"].shape[0])
        labels = torch.cat([t["label"] for t in batch["targets"]])
        return nn.functional.cross_entropy(model(batch["inputs"]["x"]), labels), {"n": float(len(labels))}

    torch.manual_seed(0)
    model = TwoGroups()
    frozen_before = model.frozen.weight.detach().clone()
    trained_before = model.trained.weight.detach().clone()
    trainer = head_training_loop(model, Nested(), loss_fn, {"max_iters": 3, "batch_size": 4, "optimizer": {"lr": 0.1}},
                                 tmp_path, collate_fn=nested_collate)
    assert [g["lr_multiplier"] for g in trainer.recipe.optimizer.param_groups] == [1.0, 0.0]
    trainer.fit()
    assert seen == [4, 4, 4]
    assert torch.equal(model.frozen.weight, frozen_before) and not torch.equal(model.trained.weight, trained_before)
    log = (tmp_path / "metrics.jsonl").read_text()
    assert '"n": 4.0' in log


def test_neutral_engine_defaults_and_recipes_in_config_files():
    assert TRAIN_DEFAULTS.max_iters != 40000 and TRAIN_DEFAULTS.scheduler["type"] == "constant"
    assert TRAIN_DEFAULTS.optimizer["weight_decay"] == 0.0 and TRAIN_DEFAULTS.amp is None
    assert all(k.startswith("train.") and k[6:] in TrainConfig.__dataclass_fields__ for k in RUNTIME_TRAIN_KEYS)
    assert "train.max_iters" not in RUNTIME_TRAIN_KEYS and "train.num_workers" in RUNTIME_TRAIN_KEYS
    recipes = configs_dir() / "_base_" / "train"
    ade = load_config(recipes / "ade20k_linear_head.py")["train"]
    nyu = load_config(recipes / "nyu_depth_head.py")["train"]
    for task, recipe in (("ade20k-linear", ade), ("seg-folder-linear", ade), ("nyu-linear", nyu), ("nyu-dpt", nyu)):
        assert load_config(configs_dir() / "tasks" / f"{task}.py")["train"] == recipe, task
        train_config(recipe)  # every shipped recipe is a valid train section
    assert ade["max_iters"] == 40000 and ade["scheduler"]["warmup_iters"] == 1500
    assert nyu["grad_clip"] == 35.0 and nyu["scheduler"]["use_beta1"] is True


def test_schedule_registry_accepts_a_plugin_schedule(monkeypatch):
    from dinobench.training import schedules

    monkeypatch.setattr(schedules, "SCHEDULES", dict(schedules.SCHEDULES))  # the registration ends with the test

    @register_schedule("halving_test", every=10)
    def halving(cfg, base_lr, t, total):
        return {"lr": base_lr * 0.5 ** (t // cfg["every"])}

    cfg = train_config({"scheduler": {"type": "halving_test", "every": 5}})
    assert cfg.scheduler == {"type": "halving_test", "warmup_iters": 0, "warmup_ratio": 0.0, "every": 5}
    assert schedule_at(cfg.scheduler, 1.0, 12, 100)["lr"] == 0.25
    with pytest.raises(ConfigError, match=r"train.scheduler.evry: unknown key \(did you mean every\?\)"):
        train_config({"scheduler": {"type": "halving_test", "evry": 5}})
    # keys of another registered schedule are tolerated: switching type keeps the recipe's other keys
    assert train_config({"scheduler": {"type": "cosine", "div_factor": 25.0}}).scheduler["min_lr"] == 0.0


def test_wrong_types_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"^train.max_iters=2.5: expected int$"):
        train_config({"max_iters": 2.5})
    with pytest.raises(ConfigError, match="train.amp='fp32': expected 'bf16' or 'fp16' or None"):
        train_config({"amp": "fp32"})
    with pytest.raises(ConfigError, match=r"train.optimizer must be a dict"):
        train_config({"optimizer": 0.1})


def _ctx(tmp_path: Path, **train) -> SimpleNamespace:
    cfg = {"train": {"max_iters": 10, "num_workers": 0, **train}, "protocol": {"type": "x", "inference": {"a": 1}},
           "task": {"description": "d"}}
    return SimpleNamespace(cfg=cfg, backbone=nn.Linear(1, 1), backbone_name="vit_tiny", weights_sha256=None, seed=0,
                           datasets={"train": SimpleNamespace(fingerprint="f")}, output_dir=None, task="t/x")


def test_run_key_ignores_runtime_and_eval_only_keys(tmp_path, monkeypatch):
    base = run_key(_ctx(tmp_path))
    assert run_key(_ctx(tmp_path, num_workers=8, eval_every=5, checkpoint_every=1, work_dir="w")) == base
    assert run_key(_ctx(tmp_path, max_iters=11)) != base
    changed = _ctx(tmp_path)
    changed.cfg["protocol"]["inference"] = {"a": 2}
    assert run_key(changed) == base  # legacy: a context that does not say treats protocol.inference as eval-only
    changed.eval_only_keys = ()
    assert run_key(changed) != base  # the context says which keys are evaluation-only
    changed.eval_only_keys = ("protocol.inference",)
    assert run_key(changed) == base
    monkeypatch.setenv("DINOBENCH_OUTPUT", str(tmp_path / "out"))
    assert work_dir_for(_ctx(tmp_path), "k") == tmp_path / "out" / ".runs" / "vit_tiny" / "t--x" / "k"
    assert work_dir_for(_ctx(tmp_path, work_dir=str(tmp_path / "w")), "k") == tmp_path / "w"


def test_non_finite_loss_of_a_custom_recipe_names_the_recipe(tmp_path):
    class Bad(EmaRecipe):
        divergence_hint = "lower toy.lr"

        def step(self, batch, iteration):
            loss, logs = super().step(batch, iteration)
            return loss * float("inf"), {"mse": 1.0}

    with pytest.raises(TrainingDiverged, match=r"^iteration 0: toy training loss is inf \(mse=1\); stopped, last "
                                               r"good checkpoint kept: none yet -- lower toy.lr$"):
        _loop(Bad(), tmp_path).fit()


def _halve_at(cfg, base_lr, iteration, total):
    return {"lr": base_lr * (0.5 if iteration >= cfg["at"] * total else 1.0)}


def _plain_sgd(groups, cfg):
    return torch.optim.SGD(groups, lr=float(cfg["lr"]))


def _engine_entries_plugin() -> SimpleNamespace:
    """A plugin adding a schedule and an optimizer through the hooks (what a third-party package does)."""
    from dinobench.api import hookimpl

    @hookimpl
    def dinobench_register_schedules(registry):
        registry.add("test_halve_at", _halve_at, defaults={"at": 0.5})

    @hookimpl
    def dinobench_register_optimizers(registry):
        registry.add("test_plain_sgd", _plain_sgd, defaults={"lr": 0.1})

    return SimpleNamespace(dinobench_register_schedules=dinobench_register_schedules,
                           dinobench_register_optimizers=dinobench_register_optimizers)


def test_schedules_and_optimizers_come_from_the_hooks_through_the_runner():
    from conftest import registered
    from dinobench.resolve import resolve_task
    from dinobench.training.optim import optimizer_config

    with registered(_engine_entries_plugin(), "engine-entries"):
        options = {"train.scheduler": {"type": "test_halve_at", "at": 0.25}, "train.optimizer": {"type": "test_plain_sgd"}}
        cfg = resolve_task("digits-attentive", options)  # the runner hands the entries to the engine
        train = train_config(cfg["train"])
        assert train.scheduler["at"] == 0.25 and train.optimizer == {"type": "test_plain_sgd", "lr": 0.1,
                                                                          "weight_decay": 0.0}
        assert [schedule_at(train.scheduler, 1.0, t, 8)["lr"] for t in (0, 1, 2, 7)] == [1.0, 1.0, 0.5, 0.5]
        optimizer = build_optimizer([{"params": [torch.nn.Parameter(torch.zeros(2))]}], optimizer_config(
            {"type": "test_plain_sgd"}))
        assert type(optimizer) is torch.optim.SGD
        with pytest.raises(ConfigError, match=r"train\.scheduler\.att: unknown key \(did you mean at\?\)"):
            train_config({"scheduler": {"type": "test_halve_at", "att": 0.1}})


def test_a_plugin_schedule_may_not_replace_a_built_in_one():
    from dinobench.errors import PluginError
    from dinobench.registry import ScheduleEntry
    from dinobench.training.schedules import use_registered

    with pytest.raises(PluginError, match="schedule 'cosine' \\(from rogue\\) is a built-in schedule; rename it"):
        use_registered([ScheduleEntry("cosine", "x:y", source="rogue")])
