"""SSL losses and DINO head against hand formulas (plain math / numpy, float64), plus a 2-rank gloo check."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dinobench.ssl.heads import DINOHead
from dinobench.ssl.losses import DINOLoss, GramLoss, IBOTPatchLoss, KoLeoLoss, KoLeoLossDistributed


def log_softmax(row, temp=1.0):
    z = [v / temp for v in row]
    m = max(z)
    lse = m + math.log(sum(math.exp(v - m) for v in z))
    return [v - lse for v in z]


def cross_entropy(student_row, teacher_row, temp=1.0):
    return -sum(t * lp for t, lp in zip(teacher_row, log_softmax(student_row, temp)))


def np_sinkhorn(logits: np.ndarray, temp: float, n_iter: int = 3) -> np.ndarray:
    q = np.exp(logits / temp).T  # K x B
    k, b = q.shape
    q = q / q.sum()
    for _ in range(n_iter):
        q = q / q.sum(axis=1, keepdims=True) / k
        q = q / q.sum(axis=0, keepdims=True) / b
    return (q * b).T


def t64(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


# ---------------------------------------------------------------------------------------- DINO

STUDENT = [[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]]
TEACHER = [[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]]


@pytest.mark.parametrize("temp", [1.0, 0.1])
def test_dino_loss_two_by_two_hand(temp):
    loss = DINOLoss(3, student_temp=temp)
    s, t = t64(STUDENT)[:, None], t64(TEACHER)[:, None]  # [S=2, B=1, K=3], [T=2, B=1, K=3]
    ce = [[cross_entropy(STUDENT[i], TEACHER[j], temp) for j in range(2)] for i in range(2)]
    full = (ce[0][0] + ce[0][1] + ce[1][0] + ce[1][1]) / 4
    off_diag = (ce[0][1] + ce[1][0]) / 2
    assert loss(s, t).item() == pytest.approx(full, rel=1e-12)
    assert loss(s, t, ignore_diagonal=True).item() == pytest.approx(off_diag, rel=1e-12)
    assert off_diag != pytest.approx(full)


def test_dino_loss_uneven_crops_and_batch():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(3, 2, 4))
    t = rng.dirichlet(np.ones(4), size=(2, 2))
    loss = DINOLoss(4)
    pairs = [(i, j, b) for i in range(3) for j in range(2) for b in range(2)]
    expected = [cross_entropy(s[i, b], t[j, b], 0.1) for i, j, b in pairs]
    off = [cross_entropy(s[i, b], t[j, b], 0.1) for i, j, b in pairs if i != j]
    assert loss(t64(s), t64(t)).item() == pytest.approx(sum(expected) / 12, rel=1e-12)
    assert len(off) == 8  # B * S * T - B * min(S, T)
    assert loss(t64(s), t64(t), ignore_diagonal=True).item() == pytest.approx(sum(off) / 8, rel=1e-12)


def test_dino_sinkhorn_matches_numpy_and_balances():
    logits = np.array([[0.3, -1.2, 2.0, 0.1], [1.5, 0.2, -0.4, 0.9], [-0.7, 0.8, 0.0, 1.1]])  # B=3, K=4
    q = DINOLoss(4).sinkhorn_knopp_teacher(t64(logits), teacher_temp=0.5)
    assert q.shape == (3, 4)
    np.testing.assert_allclose(q.numpy(), np_sinkhorn(logits, 0.5), rtol=1e-12)
    np.testing.assert_allclose(q.sum(dim=1).numpy(), np.ones(3), rtol=1e-12)  # an assignment per sample
    q_long = DINOLoss(4).sinkhorn_knopp_teacher(t64(logits), teacher_temp=0.5, n_iterations=200)
    np.testing.assert_allclose(q_long.sum(dim=0).numpy(), np.full(4, 3 / 4), rtol=1e-6)  # uniform mass
    flat = DINOLoss(4).sinkhorn_knopp_teacher(torch.zeros(3, 4, dtype=torch.float64), teacher_temp=0.1)
    np.testing.assert_allclose(flat.numpy(), np.full((3, 4), 0.25), rtol=1e-12)


def test_dino_center_ema_and_fresh_loss_usable():
    loss = DINOLoss(3)
    x = t64([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]])
    fresh = loss.softmax_center_teacher(x, teacher_temp=0.5)  # centre starts at zero, never NaN
    assert torch.allclose(fresh, torch.softmax(x / 0.5, dim=-1))
    loss.update_center(x)
    assert torch.equal(loss.center, torch.zeros(1, 3))  # applied lazily
    loss.apply_center_update()
    np.testing.assert_allclose(loss.center.numpy(), [[0.2, 0.3, 0.4]], rtol=1e-6)
    loss.update_center(torch.zeros(4, 3))
    out = loss.softmax_center_teacher(x, teacher_temp=0.5)  # applies the pending update first
    center = [0.18, 0.27, 0.36]
    np.testing.assert_allclose(loss.center.numpy()[0], center, rtol=1e-6)
    row = [(v - c) / 0.5 for v, c in zip([1.0, 2.0, 3.0], center)]
    np.testing.assert_allclose(out[0].numpy(), np.exp(log_softmax(row)), rtol=1e-6)


# ---------------------------------------------------------------------------------------- iBOT

def _ibot_case():
    masks = torch.tensor([[False, True, False, False], [True, True, False, True]])  # 1 and 3 masked
    rng = np.random.default_rng(1)
    s = rng.normal(size=(4, 3))
    t = rng.dirichlet(np.ones(3), size=4)
    terms = [cross_entropy(s[i], t[i], 0.1) for i in range(4)]
    expected = (1.0 * terms[0] + (terms[1] + terms[2] + terms[3]) / 3) / 2
    return masks, s, t, expected


def test_ibot_forward_masked_hand_weights():
    masks, s, t, expected = _ibot_case()
    loss = IBOTPatchLoss(3)
    assert loss.forward_masked(t64(s), t64(t), masks).item() == pytest.approx(expected, rel=1e-12)
    weights = t64([1.0, 1 / 3, 1 / 3, 1 / 3])
    assert loss.forward_masked(t64(s), t64(t), masks, masks_weight=weights).item() == pytest.approx(expected, rel=1e-12)
    # padded rows beyond the real masked tokens are dropped by n_masked_patches
    s_pad = np.concatenate([s, np.full((2, 3), 50.0)])
    t_pad = np.concatenate([t, np.full((2, 3), 1 / 3)])
    got = loss.forward_masked(t64(s_pad), t64(t_pad), masks, n_masked_patches=4)
    assert got.item() == pytest.approx(expected, rel=1e-12)
    # an image without masked patches still counts in the denominator (B = 3 images)
    masks3 = torch.cat([masks, torch.zeros(1, 4, dtype=torch.bool)])
    assert loss.forward_masked(t64(s), t64(t), masks3).item() == pytest.approx(expected * 2 / 3, rel=1e-12)


def test_ibot_dense_forward_agrees_with_masked():
    masks, s, t, expected = _ibot_case()
    dense_s = torch.randn(2, 4, 3, dtype=torch.float64)
    dense_t = torch.softmax(torch.randn(2, 4, 3, dtype=torch.float64), dim=-1)
    dense_s[masks], dense_t[masks] = t64(s), t64(t)
    assert IBOTPatchLoss(3)(dense_s, dense_t, masks).item() == pytest.approx(expected, rel=1e-12)


def test_ibot_sinkhorn_over_masked_tokens():
    logits = np.array([[0.3, -1.2, 2.0, 0.1], [1.5, 0.2, -0.4, 0.9], [-0.7, 0.8, 0.0, 1.1]])
    loss = IBOTPatchLoss(4)
    n = torch.tensor([3])
    q = loss.sinkhorn_knopp_teacher(t64(logits), teacher_temp=0.5, n_masked_patches_tensor=n)
    np.testing.assert_allclose(q.numpy(), np_sinkhorn(logits, 0.5), rtol=1e-12)
    assert n.item() == 3  # the caller's count is not modified
    q_int = loss.sinkhorn_knopp_teacher(t64(logits), teacher_temp=0.5, n_masked_patches_tensor=3)
    assert torch.equal(q, q_int)


def test_ibot_center_uses_per_image_token_means():
    loss = IBOTPatchLoss(2)
    tokens = t64([[[1.0, 0.0], [3.0, 2.0]], [[5.0, 4.0], [7.0, 6.0]]])  # per-image means [2,1], [6,5]
    loss.update_center(tokens)
    loss.apply_center_update()
    np.testing.assert_allclose(loss.center.numpy(), [[[0.4, 0.3]]], rtol=1e-6)
    out = loss.softmax_center_teacher(tokens, teacher_temp=2.0)
    np.testing.assert_allclose(out[0, 0].numpy(), np.exp(log_softmax([(1 - 0.4) / 2, (0 - 0.3) / 2])), rtol=1e-6)


# ---------------------------------------------------------------------------------------- KoLeo

def _unit(deg):
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def test_koleo_three_points_hand():
    pts = t64([[2 * v for v in _unit(0)], [5 * v for v in _unit(10)], _unit(90)])  # norms are removed
    d01, d12, d02 = 2 * math.sin(math.radians(5)), 2 * math.sin(math.radians(40)), math.sqrt(2)
    expected = -(2 * math.log(d01) + math.log(d12)) / 3  # NNs: 0<->1, 2->1
    assert KoLeoLoss()(pts).item() == pytest.approx(expected, abs=1e-6)
    assert torch.equal(KoLeoLoss.pairwise_NNs_inner(torch.nn.functional.normalize(pts, dim=-1)),
                       torch.tensor([1, 0, 1]))
    top2 = -(2 * math.log(d01) + 2 * math.log(d12) + 2 * math.log(d02)) / 6  # everyone's 2 NNs
    assert KoLeoLossDistributed(topk=2)(pts).item() == pytest.approx(top2, abs=1e-6)
    assert KoLeoLossDistributed()(pts).item() == pytest.approx(expected, abs=1e-6)


def test_koleo_falls_as_points_spread():
    values = []
    for spread in [5, 20, 45, 90]:
        pts = t64([_unit(k * spread) for k in range(4)])
        values.append(KoLeoLoss()(pts).item())
        assert values[-1] == pytest.approx(-math.log(2 * math.sin(math.radians(spread / 2))), abs=1e-6)
    assert all(a > b for a, b in zip(values, values[1:]))


def test_koleo_distributed_equals_single_process():
    x = torch.randn(12, 6, dtype=torch.float64, requires_grad=True)
    a = KoLeoLoss()(x)
    (ga,) = torch.autograd.grad(a, x)
    b = KoLeoLossDistributed()(x)
    (gb,) = torch.autograd.grad(b, x)
    assert torch.allclose(a, b, rtol=1e-12) and torch.allclose(ga, gb, rtol=1e-10)
    assert KoLeoLossDistributed(loss_group_size=12)(x).item() == pytest.approx(a.item(), rel=1e-12)
    with pytest.raises(ValueError):
        KoLeoLossDistributed(loss_group_size=8)(x)  # not a multiple of the local batch


# ---------------------------------------------------------------------------------------- Gram

def test_gram_loss_hand_cases():
    loss = GramLoss()
    x = torch.randn(2, 5, 3)
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-7)
    assert loss(3 * x, x).item() == pytest.approx(0.0, abs=1e-7)  # cosine Gram ignores scale
    student, teacher = t64([[[1.0, 0.0], [1.0, 1.0]]]), t64([[[1.0, 0.0], [0.0, 1.0]]])
    assert loss(student, teacher).item() == pytest.approx(2 * 0.5 / 4, rel=1e-12)  # off-diagonals 1/sqrt2 vs 0
    raw = GramLoss(apply_norm=False)(student, teacher).item()
    assert raw == pytest.approx((0 + 1 + 1 + 1) / 4, rel=1e-12)  # [[1,1],[1,2]] vs identity


def test_gram_negative_similarities():
    teacher = t64([[[1.0, 0.0], [-1.0, 0.0]]])  # cosine -1
    orth, neg = t64([[[1.0, 0.0], [0.0, 1.0]]]), t64([[[1.0, 0.0], [-1.0, 1.0]]])  # cosine 0 / -1/sqrt2
    assert GramLoss()(orth, teacher).item() == pytest.approx(0.0, abs=1e-12)  # teacher -1 clamped to 0
    assert GramLoss(remove_neg=False)(orth, teacher).item() == pytest.approx(2 * 1 / 4, rel=1e-12)
    assert GramLoss()(neg, teacher).item() == pytest.approx(0.0, abs=1e-12)  # both clamped
    only_teacher = GramLoss(remove_neg=False, remove_only_teacher_neg=True)
    assert only_teacher(neg, teacher).item() == pytest.approx(2 * 0.5 / 4, rel=1e-12)  # student keeps -1/sqrt2
    assert GramLoss(remove_neg=False)(neg, teacher).item() == pytest.approx(2 * (1 - 0.5 ** 0.5) ** 2 / 4, rel=1e-12)
    with pytest.raises(ValueError):
        GramLoss(remove_neg=True, remove_only_teacher_neg=True)


def test_gram_batch_level():
    student = t64([[[1.0, 0.0]], [[1.0, 1.0]]])  # B=2, N=1: per-image Grams are [[1]]
    teacher = t64([[[1.0, 0.0]], [[0.0, 1.0]]])
    assert GramLoss()(student, teacher, img_level=True).item() == pytest.approx(0.0, abs=1e-12)
    flat = GramLoss()(student, teacher, img_level=False).item()
    assert flat == pytest.approx(2 * 0.5 / 4, rel=1e-12)  # cross-image similarity 1/sqrt2 vs 0
    assert GramLoss()(student.flatten(0, 1), teacher.flatten(0, 1), img_level=False).item() == pytest.approx(flat)
    with pytest.raises(ValueError):
        GramLoss()(student.flatten(0, 1), teacher.flatten(0, 1), img_level=True)


# ---------------------------------------------------------------------------------------- head

def test_dino_head_shapes_norm_and_init():
    head = DINOHead(16, 11, hidden_dim=32, bottleneck_dim=8, nlayers=3)
    head.init_weights()
    linears = [m for m in head.mlp if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 3 and sum(isinstance(m, torch.nn.GELU) for m in head.mlp) == 2
    assert all(torch.count_nonzero(m.bias) == 0 for m in linears)
    assert head.last_layer.bias is None and head.last_layer.weight.shape == (11, 8)
    big = DINOHead(256, 4, hidden_dim=512, bottleneck_dim=8)
    big.init_weights()
    assert big.mlp[0].weight.std().item() == pytest.approx(0.02, rel=0.05)
    x = torch.randn(5, 16)
    assert head(x).shape == (5, 11)
    z = head(x, no_last_layer=True)
    assert z.shape == (5, 8) and torch.allclose(z.norm(dim=-1), torch.ones(5), atol=1e-6)
    assert torch.allclose(head(z, only_last_layer=True), head(x), atol=1e-6)
    assert isinstance(DINOHead(16, 4, nlayers=1, bottleneck_dim=8).mlp, torch.nn.Linear)
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in DINOHead(16, 4, hidden_dim=8, use_bn=True).mlp)


# ---------------------------------------------------------------------------------------- 2 ranks

def _shared_inputs():
    gen = torch.Generator().manual_seed(7)
    return {
        "cls": torch.randn(8, 5, generator=gen, dtype=torch.float64),  # 4 per rank
        "patch": torch.randn(9, 5, generator=gen, dtype=torch.float64),  # 3 on rank 0, 6 on rank 1
        "feat": torch.randn(10, 4, generator=gen, dtype=torch.float64),  # 5 per rank
    }


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    from dinobench.utils import distributed as ddp

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        data = _shared_inputs()
        cls = data["cls"][4 * rank:4 * rank + 4]
        patch = data["patch"][:3] if rank == 0 else data["patch"][3:]
        n_local = torch.tensor([len(patch)])
        out = {"dino_sk": DINOLoss(5).sinkhorn_knopp_teacher(cls, teacher_temp=0.3),
               "ibot_sk": IBOTPatchLoss(5).sinkhorn_knopp_teacher(patch, 0.3, n_masked_patches_tensor=n_local),
               "n_local": n_local.clone()}
        center = DINOLoss(5)
        center.update_center(cls)
        center.apply_center_update()
        out["center"] = center.center.clone()
        feat = data["feat"][5 * rank:5 * rank + 5].clone().requires_grad_(True)
        loss = KoLeoLossDistributed()(feat)
        loss.backward()
        out.update(koleo=loss.detach(), koleo_grad=feat.grad.clone(),
                   koleo_top2=KoLeoLossDistributed(topk=2)(feat).detach(),
                   koleo_group=KoLeoLossDistributed(loss_group_size=5)(feat).detach())
        torch.save(out, f"{out_dir}/rank{rank}.pt")
    except BaseException:
        ddp.shutdown(synchronize=False)
        raise
    ddp.shutdown()


def test_distributed_paths_match_single_process(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    data = _shared_inputs()
    dino_sk = DINOLoss(5).sinkhorn_knopp_teacher(data["cls"], teacher_temp=0.3)
    assert torch.allclose(torch.cat([r0["dino_sk"], r1["dino_sk"]]), dino_sk, rtol=1e-10)
    ibot_sk = IBOTPatchLoss(5).sinkhorn_knopp_teacher(data["patch"], 0.3, n_masked_patches_tensor=torch.tensor([9]))
    assert torch.allclose(torch.cat([r0["ibot_sk"], r1["ibot_sk"]]), ibot_sk, rtol=1e-10)
    assert r0["n_local"].item() == 3 and r1["n_local"].item() == 6  # local counts left untouched
    center = DINOLoss(5)
    center.update_center(data["cls"])
    center.apply_center_update()
    assert torch.allclose(r0["center"], center.center) and torch.allclose(r1["center"], center.center)
    feat = data["feat"].clone().requires_grad_(True)
    single = KoLeoLoss()(feat)
    single.backward()
    assert ((r0["koleo"] + r1["koleo"]) / 2).item() == pytest.approx(single.item(), rel=1e-10)
    # DDP averages gradients over the 2 ranks; the gather's backward brings the cross-rank terms
    assert torch.allclose(torch.cat([r0["koleo_grad"], r1["koleo_grad"]]) / 2, feat.grad, rtol=1e-8, atol=1e-12)
    top2 = KoLeoLossDistributed(topk=2)(data["feat"]).item()
    assert ((r0["koleo_top2"] + r1["koleo_top2"]) / 2).item() == pytest.approx(top2, rel=1e-10)
    for rank, res in enumerate((r0, r1)):  # groups of one rank: neighbours only among local samples
        assert res["koleo_group"].item() == pytest.approx(KoLeoLoss()(data["feat"][5 * rank:5 * rank + 5]).item(),
                                                          rel=1e-10)
