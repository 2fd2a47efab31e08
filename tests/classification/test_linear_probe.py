"""Linear probe: optimiser/schedule against a float64 reference, selection, determinism, digits end to end."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import TINY

import dinobench
from dinobench.errors import ConfigError
from dinobench.features import FeatureSet, extract_features
from dinobench.protocols.linear import LinearProbeProtocol
from dinobench.protocols.linear_heads import LinearHeads, linear_input_columns, seeded_batches, train_linear_heads
from dinobench.training import TrainingDiverged, TrainingInterrupted

EMBED = 8  # features are [N, 5 * EMBED] like "cls4_avgpool"


def _features(n, num_classes=6, seed=0, spread=1.0, signal=slice(3 * EMBED, 5 * EMBED)):
    """Gaussian classes whose means differ only in the ``signal`` columns (default: the n=1 input)."""
    gen = torch.Generator().manual_seed(seed)
    centers = torch.zeros(num_classes, 5 * EMBED)
    centers[:, signal] = 3 * torch.randn(num_classes, signal.stop - signal.start,
                                         generator=torch.Generator().manual_seed(99))
    labels = torch.randint(0, num_classes, (n,), generator=gen)
    return centers[labels] + spread * torch.randn(n, 5 * EMBED, generator=gen), labels


def test_linear_input_columns_follow_create_linear_input():
    # cls4_avgpool = [cls_{L-3}, cls_{L-2}, cls_{L-1}, cls_L, avgpool_L]
    assert linear_input_columns(5 * EMBED, EMBED, 1) == slice(3 * EMBED, 5 * EMBED)  # [cls_L, avgpool_L]
    assert linear_input_columns(5 * EMBED, EMBED, 4) == slice(0, 5 * EMBED)
    assert linear_input_columns(5 * EMBED, EMBED, 2) == slice(2 * EMBED, 5 * EMBED)
    # ConvNeXt: stage widths differ, only n=1 (last 2 * embed_dim) and n=4 (all) are defined
    assert linear_input_columns(96 + 192 + 384 + 768 + 768, 768, 1) == slice(96 + 192 + 384, 2208)
    with pytest.raises(ConfigError, match="n_last_blocks"):
        linear_input_columns(96 + 192 + 384 + 768 + 768, 768, 2)


def test_training_matches_a_float64_momentum_sgd_cosine_reference():
    """Every head = its own SGD(momentum 0.9, wd 0, lr * batch / 256) with cosine to 0, loss = mean CE."""
    x, y = _features(50, num_classes=4)
    lrs, n_blocks, batch, iterations, seed = [0.5, 3.0], [1, 4], 16, 12, 5
    init = LinearHeads(5 * EMBED, EMBED, n_blocks, lrs, 4, torch.Generator().manual_seed(seed))
    start = [(h.weight.detach().double().numpy().copy(), h.bias.detach().double().numpy().copy()) for h in init.heads]
    assert all(abs(w.std() - 0.01) < 0.003 and not b.any() for w, b in start)  # N(0, 0.01) weights, zero bias
    trained = LinearHeads(5 * EMBED, EMBED, n_blocks, lrs, 4, torch.Generator().manual_seed(seed))
    train_linear_heads(x, y, trained, batch_size=batch, iterations=iterations, seed=seed)

    batches = seeded_batches(len(y), batch, seed)
    order = [next(batches).numpy() for _ in range(iterations)]
    assert sorted(np.concatenate(order[:4])[:50]) == list(range(50))  # the first 50 samples = a permutation
    xs, ys = x.double().numpy(), y.numpy()
    for (n, lr), (w0, b0), head in zip(trained.specs, start, trained.heads):
        cols = linear_input_columns(5 * EMBED, EMBED, n)
        w, b, mw, mb = w0.copy(), b0.copy(), None, None
        for t, idx in enumerate(order):
            inp, target = xs[idx][:, cols], ys[idx]
            logits = inp @ w.T + b
            prob = np.exp(logits - logits.max(1, keepdims=True))
            prob /= prob.sum(1, keepdims=True)
            prob[np.arange(len(idx)), target] -= 1
            gw, gb = prob.T @ inp / len(idx), prob.sum(0) / len(idx)
            mw, mb = (gw, gb) if mw is None else (0.9 * mw + gw, 0.9 * mb + gb)
            step_lr = lr * batch / 256 * (1 + np.cos(np.pi * t / iterations)) / 2
            w, b = w - step_lr * mw, b - step_lr * mb
        np.testing.assert_allclose(head.weight.detach().double().numpy(), w, atol=2e-5, rtol=1e-4)
        np.testing.assert_allclose(head.bias.detach().double().numpy(), b, atol=2e-5, rtol=1e-4)
        assert np.abs(w - w0).max() > 0.05  # the head did move


def test_separable_features_reach_100_percent():
    x, y = _features(600, spread=0.5)
    vx, vy = _features(300, seed=1, spread=0.5)
    metrics = LinearProbeProtocol({"epochs": 8, "batch_size": 64}).evaluate(x, y, vx, vy, 6, EMBED, seed=0)
    assert metrics["top1"] == 100.0 and metrics["top5"] == 100.0
    assert metrics["best_n_blocks"] in (1.0, 4.0) and metrics["iterations"] == 8 * (600 // 64)


def _per_head_top1(heads, x, y):
    """Each head's val top-1 recomputed in float64 from its weights."""
    out = []
    for (n, _), head in zip(heads.specs, heads.heads):
        cols = linear_input_columns(x.shape[1], EMBED, n)
        weight, bias = head.weight.detach().double().numpy(), head.bias.detach().double().numpy()
        logits = x[:, cols].double().numpy() @ weight.T + bias
        out.append(100 * np.mean(logits.argmax(1) == y.numpy()))
    return out


def test_selection_picks_the_best_val_head_and_reports_test_with_it():
    # class signal sits in cls_{L-3} only: the n=4 heads can learn it, the n=1 heads cannot
    signal = slice(0, EMBED)
    x, y = _features(400, signal=signal, spread=1.5)
    vx, vy = _features(200, seed=1, signal=signal, spread=1.5)
    tx, ty = _features(200, seed=2, signal=signal, spread=1.5)
    cfg = {"epochs": 3, "batch_size": 32, "learning_rates": [1e-4, 1e-2, 1.0], "n_last_blocks": [1, 4]}
    protocol = LinearProbeProtocol(cfg)
    heads = protocol.train(x, y, 6, EMBED, seed=3)
    val_top1 = _per_head_top1(heads, vx, vy)
    best = int(np.argmax(val_top1))
    assert max(val_top1) - min(val_top1) > 20 and heads.specs[best][0] == 4
    metrics = protocol.evaluate(x, y, vx, vy, 6, EMBED, seed=3)
    assert (metrics["best_n_blocks"], metrics["best_lr"]) == heads.specs[best]
    assert metrics["top1"] == pytest.approx(val_top1[best], abs=1e-9)  # select + report on val
    assert metrics["best_lr_scaled"] == heads.specs[best][1] * 32 / 256
    with_test = protocol.evaluate(x, y, vx, vy, 6, EMBED, seed=3, test_features=tx, test_labels=ty)
    assert with_test["val_top1"] == pytest.approx(val_top1[best], abs=1e-9)
    assert with_test["top1"] == pytest.approx(_per_head_top1(heads, tx, ty)[best], abs=1e-9)


def test_same_seed_same_metrics_other_seed_other_heads():
    x, y = _features(200, spread=2.0)
    vx, vy = _features(100, seed=1, spread=2.0)
    protocol = LinearProbeProtocol({"epochs": 2, "batch_size": 32, "learning_rates": [0.01, 0.1]})
    assert protocol.evaluate(x, y, vx, vy, 6, EMBED, seed=4) == protocol.evaluate(x, y, vx, vy, 6, EMBED, seed=4)
    a, b = protocol.train(x, y, 6, EMBED, seed=4), protocol.train(x, y, 6, EMBED, seed=5)
    assert not torch.equal(a.heads[0].weight, b.heads[0].weight)


def test_bad_config_is_a_config_error():
    for bad in ({"n_last_blocks": [5]}, {"learning_rates": []}, {"epochs": 0}):
        with pytest.raises(ConfigError):
            LinearProbeProtocol(bad)


OPTIONS = [f"backbone.{k}={v}" for k, v in dict(TINY, depth=4).items()] + [
    "protocol.epochs=10", "protocol.learning_rates=[0.01,0.1]", "transform.resize=32", "transform.crop=32"]


def test_digits_linear_end_to_end_matches_a_recomputation(run_cli, tmp_path):
    code, _, err = run_cli("run", "--backbone", "vit_tiny", "--task", "digits-linear", "--output", str(tmp_path),
                           "--seed", "2", "--cfg-options", *OPTIONS)
    assert code == 0, err
    (path,) = tmp_path.rglob("result.json")
    record = json.loads(path.read_text())
    assert record["protocol"] == "linear" and record["main_metric"]["name"] == "top1"
    metrics = record["metrics"]
    assert {"top1", "top5", "best_lr", "best_lr_scaled", "best_n_blocks", "iterations"} <= set(metrics)
    assert metrics["iterations"] == 10 * (1437 // 128)

    # the same seed gives the same backbone, features and heads
    from dinobench.data.digits import build_digits
    from dinobench.data.transforms import build_eval_transform
    from dinobench.resolve import resolve_task
    from dinobench.utils.seeding import seed_everything

    seed_everything(2)
    model = dinobench.create_backbone("vit_tiny", **dict(TINY, depth=4))
    cfg = resolve_task("digits-linear", OPTIONS)
    feats = {}
    for name, ds in build_digits(cfg["dataset"]).items():
        ds.transform = build_eval_transform(cfg["transform"], model.image_mean, model.image_std)
        feats[name] = extract_features(model, ds, batch_size=128, kind="cls4_avgpool")
    want = LinearProbeProtocol(cfg["protocol"]).evaluate(feats["train"].features, feats["train"].labels,
                                                         feats["val"].features, feats["val"].labels, 10, 64, seed=2)
    assert metrics == pytest.approx(want, abs=1e-9)
    assert metrics["top1"] > 20  # a random ViT still beats chance (10%)


def test_too_shallow_backbone_is_one_clean_line(run_cli, tmp_path):
    code, _, err = run_cli("run", "--backbone", "vit_tiny", "--task", "digits-linear", "--output", str(tmp_path),
                           "--cfg-options", *[f"backbone.{k}={v}" for k, v in TINY.items()])
    assert code == 2 and "backbone.depth=4" in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.rglob("result.json"))


def _ctx(tmp_path, **fields):
    """The parts of a RunContext the linear protocol reads (its run folder goes under ``tmp_path``)."""
    return SimpleNamespace(cfg={}, task="t", backbone_name="toy", weights_sha256=None, output_dir=str(tmp_path),
                           timings={}, seed=0, device="cpu", backbone=SimpleNamespace(embed_dim=EMBED, n_blocks=12),
                           **fields)


def test_run_requests_cls4_avgpool_of_each_split(tmp_path):
    """The cached variant (train_augmentation=False) reads the cached features of both splits."""
    x, y = _features(100)
    requested = []

    def features(split, kind="cls"):
        requested.append((split, kind))
        return FeatureSet(x, y)

    ctx = _ctx(tmp_path, features=features,
               datasets={"train": SimpleNamespace(classes=list("abcdef"), fingerprint="f"), "val": None})
    out = LinearProbeProtocol({"epochs": 1, "learning_rates": [0.1], "n_last_blocks": [1],
                               "train_augmentation": False}).run(ctx)
    assert requested == [("train", "cls4_avgpool"), ("val", "cls4_avgpool")] and out.main_metric == "top1"
    (run,) = (tmp_path / ".runs" / "toy" / "t").iterdir()  # the engine's run folder: checkpoint + metrics
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["checkpoint_00000000.pth"]
    assert (run / "metrics.jsonl").is_file() and ctx.timings["train_head_s"] >= 0


def test_the_defaults_are_the_official_recipe():
    """dinov3/eval/linear.py: n_last_blocks_list=(1,) (:93) and the RandomResizedCrop + flip train transform
    (:577-584); the cached features and the 4-block grid are named variants, not defaults."""
    config = LinearProbeProtocol().config
    assert config.n_last_blocks == [1] and config.train_augmentation is True
    assert config.batch_size == 128 and config.epochs == 10


def test_train_augmentation_embeds_a_new_view_every_epoch(tmp_path):
    """With ``train_augmentation`` the heads see fresh features each epoch, never the cached train split."""
    x, y = _features(256)
    requested, views = [], []

    def features(split, kind="cls"):
        requested.append((split, kind))
        return FeatureSet(x, y)

    def transformed_features(split, kind, transform, desc):
        views.append((split, kind, desc))
        return FeatureSet(x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(len(views))), y)

    train = SimpleNamespace(classes=list("abcdef"), labels=y.tolist())
    ctx = _ctx(tmp_path, features=features, transformed_features=transformed_features,
               datasets={"train": train, "val": None}, image_mean=(0.5,) * 3, image_std=(0.2,) * 3)
    ctx.cfg = {"transform": {"crop": 16}}
    protocol = LinearProbeProtocol({"epochs": 3, "learning_rates": [0.1], "n_last_blocks": [1],
                                    "batch_size": 64, "train_augmentation": True})
    out = protocol.run(ctx)
    assert requested == [("val", "cls4_avgpool")]
    assert [(s, k) for s, k, _ in views] == [("train", "cls4_avgpool")] * 3  # one view per epoch
    assert [d.endswith(f"(epoch {e})") for e, (_, _, d) in enumerate(views, 1)] == [True] * 3
    assert out.metrics["iterations"] == 3 * (256 // 64) and out.metrics["top1"] > 90
    with pytest.raises(ConfigError, match="train_augmentation"):
        LinearProbeProtocol({"train_augmentation": "yes"})


def test_digits_linear_with_train_augmentation_end_to_end(run_cli, tmp_path):
    """Official on-the-fly RandomResizedCrop + flip: deterministic per seed, different from cached features."""
    options = [*OPTIONS[:-4], "protocol.epochs=1", "protocol.learning_rates=[0.01,0.1]", "transform.resize=32",
               "transform.crop=32"]  # (several epochs: the unit test above)
    tops = []
    for name, extra in (("aug_a", ["protocol.train_augmentation=true"]), ("aug_b", ["protocol.train_augmentation=true"]),
                        ("plain", [])):
        code, _, err = run_cli("run", "--backbone", "vit_tiny", "--task", "digits-linear", "--output",
                               str(tmp_path / name), "--seed", "1", "--cfg-options", *options, *extra)
        assert code == 0, err
        (path,) = (tmp_path / name).rglob("result.json")
        record = json.loads(path.read_text())
        tops.append(record["metrics"])
        if name == "aug_a":
            assert record["config"]["protocol"]["train_augmentation"] is True
            assert record["timings"]["features_val_cls4_avgpool_cached"] == 0.0
            assert "features_train_cls4_avgpool_s" not in record["timings"]  # the train split is never cached
    assert tops[0] == tops[1]  # same seed, same augmented views, same heads
    # crops down to 8% of an 8x8 digit mostly erase it: the augmented heads differ (and learn less here)
    assert tops[0] != tops[2] and 0 < tops[0]["top1"] < 100 and tops[0]["iterations"] == tops[2]["iterations"]


# ----------------------------------------------------------------------------- the one engine
def test_seeded_batches_start_anywhere_in_the_same_stream():
    stream = seeded_batches(50, 16, seed=7)
    first = [next(stream) for _ in range(12)]
    for start in (1, 3, 4, 11):  # 3 and 4 straddle a permutation boundary (48, 64 > 50)
        assert torch.equal(next(seeded_batches(50, 16, seed=7, start_iteration=start)), first[start])


def _grid(seed=5):
    return LinearHeads(5 * EMBED, EMBED, [1, 4], [0.5, 3.0], 4, torch.Generator().manual_seed(seed))


def test_sigterm_checkpoints_the_grid_and_the_same_command_resumes_bit_for_bit(tmp_path):
    import os
    import signal

    x, y = _features(64, num_classes=4)
    straight = _grid()
    train_linear_heads(x, y, straight, batch_size=16, iterations=12, seed=5, epoch_length=4)

    def terminated_in_epoch_2(epoch):  # per-epoch features: a SIGTERM arrives while epoch 1 starts
        if epoch == 1 and not calls:
            calls.append(epoch)
            os.kill(os.getpid(), signal.SIGTERM)
        return x

    calls = []
    with pytest.raises(TrainingInterrupted, match="after iteration 4"):
        train_linear_heads(terminated_in_epoch_2, y, _grid(), batch_size=16, iterations=12, seed=5, epoch_length=4,
                           work_dir=tmp_path, run_key="k")
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["checkpoint_00000004.pth"]
    resumed = _grid(seed=99)  # another init: the checkpoint's weights must replace it
    summary = train_linear_heads(terminated_in_epoch_2, y, resumed, batch_size=16, iterations=12, seed=5,
                                 epoch_length=4, work_dir=tmp_path, run_key="k")
    assert summary["resumed_from"] == 5
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    with pytest.raises(ConfigError, match="linear-probe run of another config"):
        train_linear_heads(x, y, _grid(), batch_size=16, iterations=12, seed=5, work_dir=tmp_path, run_key="other")


def test_a_non_finite_loss_stops_the_probe(tmp_path):
    x, y = _features(64, num_classes=4)
    x[10:] = float("nan")
    with pytest.raises(TrainingDiverged, match="linear probe loss is nan.*protocol.learning_rates"):
        train_linear_heads(x, y, _grid(), batch_size=16, iterations=6, seed=5, work_dir=tmp_path)


def _ddp_linear_worker(rank, world, port, out_path):
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), DINOBENCH_DIST_BACKEND="gloo")
    from dinobench.utils import distributed as ddp

    torch.set_num_threads(1)
    x, y = _features(64, num_classes=4)
    heads = _grid()
    try:
        train_linear_heads(x, y, heads, batch_size=16, iterations=8, seed=5, work_dir=f"{out_path}.run")
        if rank == 0:
            torch.save(heads.state_dict(), out_path)
    finally:
        ddp.shutdown()


def test_two_ranks_train_the_grid_like_one_process(tmp_path):
    import socket

    import torch.multiprocessing as mp

    x, y = _features(64, num_classes=4)
    single = _grid()
    train_linear_heads(x, y, single, batch_size=16, iterations=8, seed=5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_ddp_linear_worker, args=(2, port, str(tmp_path / "heads.pth")), nprocs=2, join=True,
                       start_method="spawn")
    got = torch.load(tmp_path / "heads.pth", weights_only=True)
    for key, value in single.state_dict().items():
        torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6)
