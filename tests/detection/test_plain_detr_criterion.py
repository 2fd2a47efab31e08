"""Plain-DETR training criterion: the matcher against brute force, the losses against their formulas, hybrid
matching (targets repeated for the one-to-many group), and that the criterion prefers the right answer."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from dinobench.heads.plain_detr import HungarianMatcher, PlainDetrCriterion
from dinobench.heads.plain_detr.boxes import bbox2delta
from dinobench.heads.plain_detr.criterion import focal_class_cost


def _outputs(gen: torch.Generator, b: int, q: int, c: int, reparam: bool) -> dict:
    boxes = torch.cat([torch.rand(b, q, 2, generator=gen) * 60 + 20, torch.rand(b, q, 2, generator=gen) * 30 + 5], -1)
    out = {"pred_logits": torch.randn(b, q, c, generator=gen), "pred_boxes": boxes if reparam else boxes / 100}
    if reparam:
        out["pred_boxes_old"] = boxes + torch.randn(b, q, 4, generator=gen)
        out["pred_deltas"] = 0.1 * torch.randn(b, q, 4, generator=gen)
    return out


def _targets(gen: torch.Generator, counts: list[int], c: int, reparam: bool) -> list[dict]:
    scale = 1.0 if reparam else 0.01
    return [{"labels": torch.randint(0, c, (n,), generator=gen),
             "boxes": torch.cat([torch.rand(n, 2, generator=gen) * 60 + 20, torch.rand(n, 2, generator=gen) * 30 + 5],
                                -1) * scale} for n in counts]


@pytest.mark.parametrize("reparam", [True, False])
def test_matcher_equals_brute_force_assignment(reparam):
    gen = torch.Generator().manual_seed(3)
    matcher = HungarianMatcher(reparam=reparam)
    for trial in range(4):
        outputs = _outputs(gen, 2, 5, 3, reparam)
        targets = _targets(gen, [3, 1 + trial % 3], 3, reparam)
        for b, (rows, cols) in enumerate(matcher(outputs, targets)):
            cost = matcher.cost_matrix(outputs, b, targets[b])
            t = cost.shape[1]
            best = min(sum(cost[q, j] for j, q in enumerate(perm)) for perm in itertools.permutations(range(5), t))
            assert len(rows) == t and sorted(cols.tolist()) == list(range(t))
            assert float(cost[rows, cols].sum()) == pytest.approx(float(best), rel=1e-5)


def test_cost_terms_match_their_formulas():
    logits = torch.tensor([[0.3, -1.2]])
    p = torch.sigmoid(logits)
    pos = 0.25 * (1 - p) ** 2 * -torch.log(p + 1e-8)
    neg = 0.75 * p ** 2 * -torch.log(1 - p + 1e-8)
    torch.testing.assert_close(focal_class_cost(logits, torch.tensor([1, 0])),
                               torch.stack([pos[0, 1] - neg[0, 1], pos[0, 0] - neg[0, 0]])[None])
    matcher = HungarianMatcher(cost_class=0.0, cost_bbox=1.0, cost_giou=0.0, reparam=False)
    out = {"pred_logits": torch.zeros(1, 1, 2), "pred_boxes": torch.tensor([[[0.5, 0.5, 0.2, 0.2]]])}
    tgt = {"labels": torch.tensor([0]), "boxes": torch.tensor([[0.4, 0.5, 0.2, 0.3]])}
    assert float(matcher.cost_matrix(out, 0, tgt)) == pytest.approx(0.1 + 0.1)  # L1 over (cx, cy, w, h)
    matcher = HungarianMatcher(cost_class=0.0, cost_bbox=0.0, cost_giou=1.0, reparam=False)
    out["pred_boxes"] = torch.tensor([[[0.5, 0.5, 0.2, 0.2]]])
    tgt["boxes"] = torch.tensor([[0.6, 0.5, 0.2, 0.2]])  # overlap 0.1 x 0.2, union 0.06, hull 0.3 x 0.2
    giou = (0.02 / 0.06) - (0.06 - 0.06) / 0.06
    assert float(matcher.cost_matrix(out, 0, tgt)) == pytest.approx(-giou, abs=1e-6)


def test_losses_match_hand_computed_values():
    crit = PlainDetrCriterion(2, reparam=False, k_one2many=0)
    logits = torch.tensor([[[2.0, -1.0], [0.5, 0.0]]])
    out = {"pred_logits": logits, "pred_boxes": torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.1]]])}
    tgt = [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.4]])}]
    indices = [(torch.tensor([0]), torch.tensor([0]))]
    onehot = torch.tensor([[[0.0, 1.0], [0.0, 0.0]]])
    p = logits.sigmoid()
    pt = p * onehot + (1 - p) * (1 - onehot)
    alpha = 0.25 * onehot + 0.75 * (1 - onehot)
    focal = alpha * (1 - pt) ** 2 * -torch.log(pt)
    expected = focal.mean(1).sum() / 1.0 * 2  # mean over queries, sum, / num_boxes, x num_queries
    assert float(crit.loss_labels(out, tgt, indices, 1.0)) == pytest.approx(float(expected), rel=1e-5)
    l1, giou = crit.loss_boxes(out, tgt, indices, 1.0)
    assert float(l1) == pytest.approx(0.2) and float(giou) == pytest.approx(0.5)  # IoU 0.04/0.08, hull = union
    reparam = PlainDetrCriterion(2, reparam=True, k_one2many=0)
    old = torch.tensor([[[50.0, 50, 20, 20], [30, 30, 10, 10]]])
    target = torch.tensor([[52.0, 49, 24, 18]])
    deltas = bbox2delta(old[0, :1], target)
    out = {"pred_logits": logits, "pred_boxes": old, "pred_boxes_old": old,
           "pred_deltas": torch.cat([deltas, torch.zeros(1, 4)])[None]}
    l1, _ = reparam.loss_boxes(out, [{"labels": torch.tensor([1]), "boxes": target}], indices, 1.0)
    assert float(l1) == pytest.approx(0.0, abs=1e-6)  # the predicted deltas are exactly the target's


def test_hybrid_matching_repeats_targets_and_weights_every_layer():
    gen = torch.Generator().manual_seed(0)
    out = _outputs(gen, 1, 4, 3, True)
    many = _outputs(gen, 1, 12, 3, True)
    out.update({f"{k}_one2many": v for k, v in many.items()})
    out["aux_outputs"] = [_outputs(gen, 1, 4, 3, True)]
    out["aux_outputs_one2many"] = [_outputs(gen, 1, 12, 3, True)]
    out["enc_outputs"] = _outputs(gen, 1, 20, 3, True)
    targets = _targets(gen, [2], 3, True)
    crit = PlainDetrCriterion(3, reparam=True, k_one2many=3, lambda_one2many=0.5)
    seen = []
    original = crit.matcher.forward
    crit.matcher.forward = lambda o, t: seen.append((o["pred_logits"].shape[1], len(t[0]["labels"]))) or original(o, t)
    total, logs = crit(out, targets)
    # one-to-one: final, aux, proposals (2 targets); one-to-many: final + aux against 3 x 2 repeated targets
    assert seen == [(4, 2), (4, 2), (20, 2), (12, 6), (12, 6)]
    parts = crit.group_losses(out, targets)
    many_group = {k[: -len("_one2many")]: v for k, v in out.items() if k.endswith("_one2many")}
    repeated = [{"labels": targets[0]["labels"].repeat(3), "boxes": targets[0]["boxes"].repeat(3, 1)}]
    many_parts = crit.group_losses(many_group, repeated)
    expected = sum(crit.weights["_".join(k.split("_")[:2])] * v for k, v in parts.items()) + 0.5 * sum(
        crit.weights["_".join(k.split("_")[:2])] * v for k, v in many_parts.items())
    assert float(total) == pytest.approx(float(expected), rel=1e-5)
    assert set(logs) == {"loss_ce", "loss_bbox", "loss_giou", "loss_ce_one2many", "loss_bbox_one2many",
                         "loss_giou_one2many"} and all(math.isfinite(v) for v in logs.values())


def test_criterion_prefers_the_right_answer_and_handles_empty_images():
    target = {"labels": torch.tensor([2, 0]), "boxes": torch.tensor([[30.0, 30, 20, 20], [70, 60, 30, 40]])}
    good_logits = torch.full((1, 3, 3), -6.0)
    good_logits[0, 0, 2], good_logits[0, 1, 0] = 6.0, 6.0
    boxes = torch.cat([target["boxes"], torch.tensor([[50.0, 50, 10, 10]])])[None]
    good = {"pred_logits": good_logits, "pred_boxes": boxes, "pred_boxes_old": boxes, "pred_deltas": torch.zeros(1, 3, 4)}
    bad = {**good, "pred_logits": good_logits[:, [2, 0, 1]], "pred_boxes": boxes[:, [1, 2, 0]],
           "pred_boxes_old": boxes[:, [1, 2, 0]]}
    crit = PlainDetrCriterion(3, reparam=True)
    assert float(crit(good, [target])[0]) < 0.1 * float(crit(bad, [target])[0])
    empty = {"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}
    total, logs = crit(good, [empty])
    assert math.isfinite(float(total)) and logs["loss_bbox"] == 0.0  # only "no object" class terms


def test_reparam_matching_cost_pairs_every_query_with_every_target_when_their_counts_agree():
    """Issue 31, item 9: with as many targets as the group has queries, the box cost was computed on the diagonal
    pairs only (equal shapes were taken as already paired); every cost is now delta(old_q, target_t)."""
    gen = torch.Generator().manual_seed(5)
    outputs = _outputs(gen, 1, 4, 3, True)
    (target,) = _targets(gen, [4], 3, True)  # 4 targets, 4 queries
    matcher = HungarianMatcher(cost_class=0.0, cost_bbox=1.0, cost_giou=0.0, reparam=True)
    cost = matcher.cost_matrix(outputs, 0, target)
    old, deltas = outputs["pred_boxes_old"][0].float(), outputs["pred_deltas"][0].float()
    expected = torch.tensor([[float((deltas[q] - bbox2delta(old[q:q + 1], target["boxes"][t:t + 1].float())[0])
                                    .abs().sum()) for t in range(4)] for q in range(4)])
    torch.testing.assert_close(cost, expected, rtol=1e-5, atol=1e-5)
