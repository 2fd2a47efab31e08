"""The periodic evaluations of a head training are kept in its checkpoints: the best one made before a kill is still
the best after the resume, a SIGTERM at an evaluation point is evaluated on resume, and a resume whose checkpoint
lacks evaluations (another grid, another evaluation config) is refused when the best one is to be reported."""

import os
import signal

import pytest
import torch

from conftest import TINY
from helpers import CFG, ToySegmentation, seg_loss

import dinobench
from dinobench.errors import ConfigError
from dinobench.heads.linear_seg import LinearSegHead
from dinobench.heads.model import BackboneNeckHead
from dinobench.training import TrainingInterrupted, head_training_loop
from dinobench.training.evaluations import Evaluation, EvaluationHistory, best_evaluation, evaluation_grid
from dinobench.training.head import check_resumed_evaluations


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return dinobench.create_backbone("vit_tiny", **TINY)


def trainer(backbone, work_dir, evaluate, loss_fn=seg_loss, eval_key="e", **cfg):
    torch.manual_seed(123)  # the same initial head every time
    model = BackboneNeckHead(backbone, LinearSegHead(64, num_classes=3, dropout=0.1), [1])
    return head_training_loop(model, ToySegmentation(), loss_fn, {**CFG, "eval_every": 2, **cfg}, work_dir,
                              evaluate=evaluate, seed=3, run_key="k", eval_key=eval_key)


def head_weights(model):
    return torch.cat([v.detach().flatten().double() for v in model.head.state_dict().values()
                      if v.is_floating_point()])


@pytest.fixture(scope="module")
def closeness(backbone, tmp_path_factory):
    """An evaluation peaking after 4 of the 7 iterations: minus the distance of the head's weights to those the
    straight run has after 4 iterations (it depends only on the model, so it is the same after a resume)."""
    snapshots = []
    trainer(backbone, tmp_path_factory.mktemp("probe"), lambda m: snapshots.append(head_weights(m)) or {}).fit()
    target = snapshots[1]  # evaluations after 2, 4, 6 and 7 iterations

    def evaluate(model):
        return {"closeness": -float(torch.sum((head_weights(model) - target) ** 2))}
    return evaluate


def test_the_best_evaluation_made_before_a_kill_survives_the_resume(backbone, closeness, tmp_path):
    straight = trainer(backbone, tmp_path / "straight", closeness).fit()
    assert [e["iteration"] for e in straight["evaluations"]] == [2, 4, 6, 7]
    best = best_evaluation([Evaluation(**e) for e in straight["evaluations"]], "closeness")
    assert best.iteration == 4 and best.metrics["closeness"] == 0.0 < -straight["metrics"]["closeness"] + 1

    def crashing(model, batch, iteration):  # dies in iteration 5: the checkpoint after 4 iterations is the last
        if iteration == 5:
            raise RuntimeError("killed")
        return seg_loss(model, batch, iteration)

    with pytest.raises(RuntimeError, match="killed"):
        trainer(backbone, tmp_path / "killed", closeness, loss_fn=crashing).fit()
    saved = torch.load(tmp_path / "killed" / "checkpoints" / "checkpoint_00000003.pth", weights_only=True)
    assert [e["iteration"] for e in saved["evaluations"]["evaluations"]] == [2, 4]  # evaluated before the save
    resumed = trainer(backbone, tmp_path / "killed", closeness)
    assert resumed.resume() and resumed.start_iter == 4
    check_resumed_evaluations(resumed)
    summary = resumed.fit()
    assert summary["evaluations"] == straight["evaluations"]  # those before the kill come from the checkpoint
    assert best_evaluation([Evaluation(**e) for e in summary["evaluations"]], "closeness").iteration == 4


def test_a_sigterm_at_an_evaluation_point_is_evaluated_on_resume(backbone, closeness, tmp_path):
    def terminated(model, batch, iteration):  # stops after 4 iterations: checkpoint saved, evaluation skipped
        if iteration == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return seg_loss(model, batch, iteration)

    with pytest.raises(TrainingInterrupted, match="after iteration 3"):
        trainer(backbone, tmp_path / "t", closeness, loss_fn=terminated).fit()
    saved = torch.load(tmp_path / "t" / "checkpoints" / "checkpoint_00000003.pth", weights_only=True)
    assert [e["iteration"] for e in saved["evaluations"]["evaluations"]] == [2]
    resumed = trainer(backbone, tmp_path / "t", closeness)
    assert resumed.resume()
    summary = resumed.fit()
    straight = trainer(backbone, tmp_path / "s", closeness).fit()
    assert summary["evaluations"] == straight["evaluations"]


def test_a_resume_lacking_evaluations_is_refused_before_training(backbone, tmp_path):
    done = trainer(backbone, tmp_path / "r", lambda m: {"score": 1.0}, checkpoint_every=3)
    done.fit()  # evaluations after 2, 4, 6 and 7 iterations; checkpoints after 3, 6 and 7
    for eval_every, eval_key, error in ((1, "e", "another train.eval_every"), (2, "other", "another evaluation"),
                                        (4, "e", None), (2, "e", None)):
        loop = trainer(backbone, tmp_path / "r", lambda m: {"score": 1.0}, checkpoint_every=3,
                       eval_every=eval_every, eval_key=eval_key)
        assert loop.resume() and loop.start_iter == 7
        if error is None:
            check_resumed_evaluations(loop)
            kept = [e.iteration for e in loop.history.on_grid(eval_every, 7)]
            assert kept == [t for t in (2, 4, 6) if t % eval_every == 0]
        else:
            with pytest.raises(ConfigError, match=f"evaluations at iterations .*{error}.*protocol.report=final"):
                check_resumed_evaluations(loop)


def test_best_of_ties_nan_and_direction():
    history = EvaluationHistory("k")
    for t, value in ((2, 5.0), (4, 7.0), (6, 7.0), (8, float("nan")), (10, 6.0)):
        history.add(t, {"m": value})
    assert best_evaluation(history.items(), "m").iteration == 4  # of equal values the earliest, as the official `>`
    assert best_evaluation(history.items(), "m", higher_is_better=False).iteration == 2
    assert evaluation_grid(4, 10) == [4, 8, 10] and evaluation_grid(0, 10) == [10] and evaluation_grid(5, 10) == [5, 10]
    assert [e.iteration for e in history.on_grid(4, 10)] == [4, 8, 10] and history.missing(3, 10) == [3, 9]
    restored = EvaluationHistory("k")
    restored.load(history.state(), None)
    assert restored.items() == history.items()
    stale = EvaluationHistory("other")
    stale.load(history.state(), "ckpt")
    assert len(stale) == 0 and stale.dropped == 5
