"""The CLIP loss: a hand-computed 3x3 case, and under 2-rank gloo the gathered loss and gradients equal the
single-process ones."""

from __future__ import annotations

import math

import pytest
import torch

from dinobench.text.loss import clip_loss


def test_clip_loss_equals_a_hand_computed_3x3_case():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=torch.float64)
    text = torch.tensor([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    scale = torch.tensor(2.0, dtype=torch.float64)
    sims = [[0.8, 0.0, 1.0], [0.6, 1.0, 0.0], [0.96, 0.8, 0.6]]  # image i . text j

    def ce(rows):  # mean over rows of -log softmax(2 * row)[diagonal]
        return sum(-(2 * row[i]) + math.log(sum(math.exp(2 * v) for v in row)) for i, row in enumerate(rows)) / 3

    expected = (ce(sims) + ce([list(col) for col in zip(*sims)])) / 2
    assert float(clip_loss(image, text, scale)) == pytest.approx(expected, rel=1e-12)
    perfect = torch.eye(3, dtype=torch.float64)
    assert float(clip_loss(perfect, perfect, torch.tensor(100.0, dtype=torch.float64))) < 1e-30


def _inputs():
    gen = torch.Generator().manual_seed(3)
    image = torch.nn.functional.normalize(torch.randn(8, 6, generator=gen, dtype=torch.float64), dim=-1)
    text = torch.nn.functional.normalize(torch.randn(8, 6, generator=gen, dtype=torch.float64), dim=-1)
    return image, text, torch.tensor(7.0, dtype=torch.float64)


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    from dinobench.utils import distributed as ddp

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        image, text, scale = _inputs()
        image = image[4 * rank:4 * rank + 4].clone().requires_grad_(True)
        text = text[4 * rank:4 * rank + 4].clone().requires_grad_(True)
        scale = scale.clone().requires_grad_(True)
        loss = clip_loss(image, text, scale)
        loss.backward()
        torch.save({"loss": loss.detach(), "image": image.grad, "text": text.grad, "scale": scale.grad},
                   f"{out_dir}/rank{rank}.pt")
    except BaseException:
        ddp.shutdown(synchronize=False)
        raise
    ddp.shutdown()


def test_two_rank_gathered_loss_and_gradients_equal_single_process(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    image, text, scale = (t.clone().requires_grad_(True) for t in _inputs())
    single = clip_loss(image, text, scale)
    single.backward()
    assert float((r0["loss"] + r1["loss"]) / 2) == pytest.approx(float(single), rel=1e-12)
    # DDP averages gradients over the ranks; the gather's backward brings the other rank's terms
    torch.testing.assert_close(torch.cat([r0["image"], r1["image"]]) / 2, image.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(torch.cat([r0["text"], r1["text"]]) / 2, text.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close((r0["scale"] + r1["scale"]) / 2, scale.grad, rtol=1e-10, atol=1e-12)


def test_training_clamps_the_logit_scale_to_ln_100_after_every_step_as_the_official_loop(tmp_path):
    """Official ``train_dinotxt.py`` (lines 205-208) clamps ``logit_scale`` to [0, ln 100] after each step; a large
    learning rate pushes it past ln 100 within a step here, and the engine calls the model's ``after_step``."""
    import dinobench
    from dinobench.text import build_dinotxt
    from dinobench.training import head_training_loop

    torch.manual_seed(0)
    backbone = dinobench.create_backbone("vit_tiny", embed_dim=32, depth=1, num_heads=2)
    model = build_dinotxt(backbone, embed_dim=16, text_dim=16, text_heads=2, text_layers=1, context_length=8,
                          vocab_size=64, vision_head_blocks=1)

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return {"images": torch.randn(3, 16, 16), "tokens": torch.randint(1, 60, (8,))}

    def push_up(net, batch, iteration):  # a loss that only grows the scale: the clamp is what stops it
        return -net.logit_scale.sum() * 100.0, {}

    loop = head_training_loop(model, Pairs(), push_up, {"max_iters": 2, "batch_size": 2, "checkpoint_every": 0,
                                                        "optimizer": {"type": "sgd", "lr": 1.0}}, tmp_path)
    loop.fit()
    assert float(model.logit_scale) == pytest.approx(math.log(100))
    with torch.no_grad():
        model.logit_scale.fill_(-3.0)
    model.after_step()
    assert float(model.logit_scale) == 0.0
