"""Where an SSL pretraining iteration spends its time (the demo's main cost), phase by phase.

    python benchmarks/train_step.py [--config configs/train/vit_tiny_digits_pretrain.py] [--iters 6]
        [--threads 2] [key=value ...]

Builds the recipe ``dinobench train`` builds (same config, same data), then runs ``--iters`` iterations (after one
warm-up) timing: multi-crop augmentation of the batch (the dataset's ``__getitem__``, what DataLoader workers
would run), collation + masking, the teacher's forward (targets), the students' forward, the losses, backward,
gradient clipping, the optimizer step and the EMA update. Prints seconds per iteration and the share of each
phase (median over the iterations).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "train" / "vit_tiny_digits_pretrain.py"))
    parser.add_argument("--iters", type=int, default=6)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("overrides", nargs="*", help="config overrides key=value")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from dinobench.training.launch import resolve_train_config
    from dinobench.training.ssl import SSLRecipe
    from dinobench.utils import distributed as ddp

    cfg = resolve_train_config(args.config, args.overrides)
    recipe = SSLRecipe(cfg)
    model, times = recipe.model, defaultdict(list)
    current: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*a, **k):
            start = time.perf_counter()
            out = fn(*a, **k)
            current[name] = current.get(name, 0.0) + time.perf_counter() - start
            return out
        return wrapper

    model.teacher_targets = timed("teacher forward", model.teacher_targets)
    model._student_loss = timed("losses", model._student_loss)
    for name in list(model.runners):
        runner = model.runners[name]
        runner.forward = timed("student forward", runner.forward)
    clip = float(cfg["optim"].get("clip_grad") or 0)
    generator = torch.Generator().manual_seed(0)
    print(f"{Path(args.config).name}: batch {recipe.batch_per_rank}, {torch.get_num_threads()} threads, "
          f"{sum(p.numel() for p in model.students.parameters()) / 1e6:.2f} M student parameters")
    for iteration in range(args.iters + 1):
        current.clear()
        start = time.perf_counter()
        index = torch.randint(len(recipe.dataset), (recipe.batch_per_rank,), generator=generator).tolist()
        samples = [recipe.dataset[(iteration, i)] for i in index]
        current["augmentation"] = time.perf_counter() - start
        mark = time.perf_counter()
        batch = ddp.to_device(recipe.collate_fn(samples), recipe.device)
        current["collate + masks"] = time.perf_counter() - mark
        recipe.apply_schedule(iteration)
        recipe.optimizer.zero_grad(set_to_none=True)
        mark = time.perf_counter()
        recipe.step(batch, iteration)
        step = time.perf_counter() - mark
        current["backward"] = step - current["teacher forward"] - current["student forward"] - current["losses"]
        mark = time.perf_counter()
        if clip:
            ddp.clip_grad_norm(recipe.clip_parameters(), clip)
        current["grad clip"] = time.perf_counter() - mark
        mark = time.perf_counter()
        recipe.optimizer.step()
        current["optimizer"] = time.perf_counter() - mark
        mark = time.perf_counter()
        recipe.after_step(iteration)
        current["EMA"] = time.perf_counter() - mark
        current["total"] = time.perf_counter() - start
        if iteration:  # the first one warms up
            for key, value in current.items():
                times[key].append(value)
    total = statistics.median(times["total"])
    print(f"{'phase':<18} {'s/iter':>8} {'share':>7}")
    for key, values in times.items():
        value = statistics.median(values)
        print(f"{key:<18} {value:8.3f} {100 * value / total:6.1f}%")


if __name__ == "__main__":
    main()
