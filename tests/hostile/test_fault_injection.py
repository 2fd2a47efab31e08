"""Fault injection over long runs: SSL pretraining and head training are killed at seeded random points -
before or after an optimizer step, or in the middle of a checkpoint write - and restarted until they finish;
the final weights equal the uninterrupted run's bit for bit (what the engine promises on one process)."""

import random
from pathlib import Path

import pytest
import torch

from conftest import TINY
from helpers import CFG, ToySegmentation, seg_loss
from helpers import CONFIG, FAST

import dinobench
from dinobench.heads.linear_seg import LinearSegHead
from dinobench.heads.model import BackboneNeckHead
from dinobench.training import head_training_loop
from dinobench.training.checkpoint import CheckpointManager
from dinobench.training.loop import TrainingLoop


class SimulatedKill(BaseException):
    """What SIGKILL does: nothing after this point runs, not even ``except Exception`` handlers."""


class Faults:
    """Kills the 'process' the first time the run reaches each chosen engine event: ``before step i`` (nothing of
    step i ran), ``after step i`` (its update is done, the next checkpoint is not written) or ``writing checkpoint
    i`` (half of the file written under the temp name a real kill leaves behind)."""

    def __init__(self, monkeypatch, kill_at: set[str]) -> None:
        self.kill_at, self.kills = set(kill_at), []
        step, save = TrainingLoop._train_one, CheckpointManager.save
        faults = self

        def train_one(loop, iteration, batch, autocast):
            if faults.fire(f"before step {iteration}"):
                raise SimulatedKill
            out = step(loop, iteration, batch, autocast)
            if faults.fire(f"after step {iteration}"):
                raise SimulatedKill
            return out

        def checkpoint(manager, state, iteration):
            if faults.fire(f"writing checkpoint {iteration}"):
                manager.folder.mkdir(parents=True, exist_ok=True)
                torch.save(state, manager.folder / "full.tmp")
                data = (manager.folder / "full.tmp").read_bytes()
                (manager.folder / "full.tmp").unlink()
                (manager.folder / f".checkpoint_{iteration:08d}.pth.x1y2z3.tmp").write_bytes(data[: len(data) // 2])
                raise SimulatedKill
            return save(manager, state, iteration)

        monkeypatch.setattr(TrainingLoop, "_train_one", train_one)
        monkeypatch.setattr(CheckpointManager, "save", checkpoint)

    def fire(self, where: str) -> bool:
        if where in self.kill_at:
            self.kill_at.discard(where)
            self.kills.append(where)
            return True
        return False


def events(iterations: int, checkpoint_every: int) -> list[str]:
    """The engine events of an uninterrupted run (checkpoints every ``checkpoint_every`` and after the last)."""
    names = [f"{when} step {i}" for i in range(iterations) for when in ("before", "after")]
    return names + [f"writing checkpoint {i}" for i in range(iterations)
                    if (i + 1) % checkpoint_every == 0 or i + 1 == iterations]


def run_until_done(attempt, max_restarts: int = 20):
    """Call ``attempt()`` (one 'process': build, resume, train) until it returns; the number of restarts."""
    for restarts in range(max_restarts):
        try:
            return attempt(), restarts
        except SimulatedKill:
            continue
    raise AssertionError("the run never finished")


# --- head training ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return dinobench.create_backbone("vit_tiny", **TINY)


def head_attempt(backbone, work_dir: Path):
    def attempt():
        torch.manual_seed(123)  # a new process builds the same initial head
        model = BackboneNeckHead(backbone, LinearSegHead(64, num_classes=3, dropout=0.1), [1])
        loop = head_training_loop(model, ToySegmentation(), seg_loss, {**CFG, "max_iters": 12, "checkpoint_every": 2},
                                  work_dir, seed=3, run_key="k")
        with loop.exclusive():
            loop.resume()
            loop.fit()
        return {k: v.detach().clone() for k, v in loop.recipe.model.head.state_dict().items()}
    return attempt


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_head_training_killed_at_random_points_ends_bit_identical(backbone, tmp_path, monkeypatch, seed):
    want, _ = run_until_done(head_attempt(backbone, tmp_path / "straight"))
    rng = random.Random(seed)
    faults = Faults(monkeypatch, set(rng.sample(events(12, 2), 4)))
    got, restarts = run_until_done(head_attempt(backbone, tmp_path / "killed"))
    assert restarts == len(faults.kills) == 4, faults.kills
    assert got.keys() == want.keys()
    for key in want:
        assert torch.equal(got[key], want[key]), (key, faults.kills)
    leftovers = sorted(p.name for p in (tmp_path / "killed" / "checkpoints").iterdir())
    assert all(name.startswith("checkpoint_") for name in leftovers), leftovers  # partial writes cleaned up


# --- SSL pretraining ----------------------------------------------------------------------------------------------

def ssl_attempt(output: Path):
    from dinobench.training.launch import resolve_train_config
    from dinobench.training.ssl import train

    cfg = resolve_train_config(CONFIG, [*FAST, "train.num_workers=0"])

    def attempt():
        train(cfg, output)
        return torch.load(output / "teacher_checkpoint.pth", weights_only=True)
    return attempt


def test_ssl_training_killed_at_random_points_ends_bit_identical(tmp_path, monkeypatch):
    want, _ = run_until_done(ssl_attempt(tmp_path / "straight"))
    rng = random.Random(7)
    kills = rng.sample(events(6, 2)[4:], 3)  # after the first checkpoint: a restart from scratch proves little
    faults = Faults(monkeypatch, set(kills))
    got, restarts = run_until_done(ssl_attempt(tmp_path / "killed"))
    assert restarts == len(faults.kills) == 3, faults.kills
    assert not list((tmp_path / "killed" / "checkpoints").glob(".checkpoint_*.tmp"))
    assert got.keys() == want.keys()
    for key in want:
        assert torch.equal(got[key], want[key]), (key, faults.kills)
