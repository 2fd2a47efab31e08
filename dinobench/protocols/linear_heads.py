"""The linear probe's grid of heads and how the one training engine trains it.

Follows ``dinov3/eval/linear.py``: one ``nn.Linear`` (weights ``N(0, 0.01)``, bias 0) per
(n_blocks, lr); the loss is the sum of the heads' cross-entropies; SGD momentum 0.9, weight decay 0,
lr scaled by ``batch_size / 256``, cosine annealing to 0 (``CosineAnnealingLR(eta_min=0)`` in closed
form, so the schedule is a function of the iteration and a resumed run continues it exactly). The
batches are a seeded infinite shuffle (consecutive permutations, a batch may straddle two), which
:func:`seeded_batches` replays from any iteration. :class:`LinearGridRecipe` puts all of it on
:class:`~dinobench.training.loop.TrainingLoop`, so the probe gains the engine's exact resume, SIGTERM
checkpoint, NaN stop and DDP (each rank its slice of every global batch).
"""

from __future__ import annotations

import math
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from dinobench.errors import ConfigError
from dinobench.training.loop import LoopSettings, Recipe, TrainingLoop
from dinobench.utils import distributed as ddp

#: epoch -> train features of that epoch (augmented views), or one tensor for every epoch
TrainFeatures = Tensor | Callable[[int], Tensor]


def linear_input_columns(total_dim: int, embed_dim: int, n_blocks: int) -> slice:
    """Columns of a ``cls4_avgpool`` feature that form the official linear input for ``n_blocks``."""
    if n_blocks == 4:
        return slice(0, total_dim)
    if n_blocks == 1 or (total_dim == 5 * embed_dim and 1 <= n_blocks <= 4):
        return slice(total_dim - (n_blocks + 1) * embed_dim, total_dim)
    raise ConfigError(f"linear: protocol.n_last_blocks value {n_blocks} is not available; use 1 or 4 "
                      "(2 and 3 only for ViTs, whose blocks all have width embed_dim)")


def seeded_batches(n_samples: int, batch_size: int, seed: int, start_iteration: int = 0) -> Iterator[Tensor]:
    """Index batches ``start_iteration, start_iteration + 1, ...`` of the stream made of consecutive
    ``randperm(n_samples)`` drawn from one generator seeded by ``seed`` (batch ``t`` = stream elements
    ``[t * batch_size, (t + 1) * batch_size)``); starting late replays only the skipped permutations."""
    generator = torch.Generator().manual_seed(int(seed))
    offset = start_iteration * batch_size
    for _ in range(offset // n_samples):  # permutations wholly consumed before the start
        torch.randperm(n_samples, generator=generator)
    buffer = torch.randperm(n_samples, generator=generator)[offset % n_samples:]
    while True:
        while len(buffer) < batch_size:
            buffer = torch.cat([buffer, torch.randperm(n_samples, generator=generator)])
        yield buffer[:batch_size]
        buffer = buffer[batch_size:]


class LinearHeads(nn.Module):
    """One ``nn.Linear`` per (n_blocks, lr); heads with the same ``n_blocks`` share an input slice."""

    def __init__(self, total_dim: int, embed_dim: int, n_last_blocks: Sequence[int],
                 learning_rates: Sequence[float], num_classes: int, generator: torch.Generator) -> None:
        super().__init__()
        self.specs: list[tuple[int, float]] = [(int(n), float(lr)) for n in n_last_blocks for lr in learning_rates]
        self.columns = {n: linear_input_columns(total_dim, embed_dim, n) for n, _ in self.specs}
        self.heads = nn.ModuleList()
        for n, _ in self.specs:
            cols = self.columns[n]
            head = nn.Linear(cols.stop - cols.start, num_classes)
            head.weight.data.normal_(mean=0.0, std=0.01, generator=generator)
            head.bias.data.zero_()
            self.heads.append(head)

    def forward(self, features: Tensor) -> list[Tensor]:
        """Logits ``[B, C]`` of every head for a batch of ``cls4_avgpool`` features.

        Heads sharing an input are evaluated as one matmul on their stacked weights (the stack is
        differentiable, so each head keeps its own parameters and optimizer param group).
        """
        out: list[Tensor | None] = [None] * len(self.specs)
        for n, cols in self.columns.items():
            members = [i for i, (m, _) in enumerate(self.specs) if m == n]
            weight = torch.stack([self.heads[i].weight for i in members])  # [H, C, D]
            bias = torch.stack([self.heads[i].bias for i in members])  # [H, C]
            logits = torch.einsum("bd,hcd->hbc", features[:, cols], weight) + bias[:, None, :]
            for i, logit in zip(members, logits):
                out[i] = logit
        return out  # type: ignore[return-value]

    logits = forward

    def predict_labels(self, features: Tensor, device: str, chunk_size: int = 1024) -> list[Tensor]:
        """Every head's predicted class ``[N]`` (argmax of its logits) for all rows of ``features``."""
        outputs: list[list[Tensor]] = [[] for _ in self.specs]
        with torch.inference_mode():
            for start in range(0, len(features), chunk_size):
                batch = features[start:start + chunk_size].to(device).float()
                for out, logit in zip(outputs, self.logits(batch)):
                    out.append(logit.argmax(dim=1).cpu())
        return [torch.cat(out) for out in outputs]

    def scores(self, index: int, features: Tensor, device: str, chunk_size: int = 1024) -> Tensor:
        """Logits ``[N, C]`` (CPU, float32) of head ``index`` for all rows of ``features``."""
        with torch.inference_mode():  # the same batched path as predict_labels, so argmaxes agree exactly
            return torch.cat([self.logits(features[start:start + chunk_size].to(device).float())[index].float().cpu()
                              for start in range(0, len(features), chunk_size)])


class LinearGridRecipe(Recipe):
    """The grid of linear heads on frozen features, as a :class:`~dinobench.training.loop.Recipe`."""

    name = "linear probe"
    desc = "linear heads"
    divergence_hint = "lower protocol.learning_rates"
    model_rng = "continuous"  # nothing random on the model side; no per-iteration reseeding
    run_key_fix = "delete it or use another output folder"

    def __init__(self, heads: LinearHeads, features: TrainFeatures, labels: Tensor, *, batch_size: int,
                 iterations: int, epoch_length: int, device: torch.device, run_key: str = "") -> None:
        world = ddp.world_size()
        if batch_size % world:
            raise ConfigError(f"linear: protocol.batch_size={batch_size} is not divisible by the {world} ranks; "
                              f"use a multiple of {world}")
        self.features, self.labels, self.batch_size = features, labels, batch_size
        self.iterations, self.epoch_length, self.run_key = iterations, epoch_length, run_key
        self.batch_per_rank = batch_size // world
        self.model = heads.to(device)
        self.train_model: nn.Module = self.model
        if world > 1:
            self.train_model = DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None)
        self.base_lrs = [lr * batch_size / 256.0 for _, lr in heads.specs]
        groups = [{"params": head.parameters(), "lr": lr} for head, lr in zip(heads.heads, self.base_lrs)]
        self.optimizer = torch.optim.SGD(groups, momentum=0.9, weight_decay=0.0)
        self.config = {"batch_size": batch_size, "iterations": iterations, "specs": heads.specs}

    def loader(self, start_iteration: int, *, world: int, rank: int, seed: int, num_workers: int,
               pin_memory: bool) -> Iterator[tuple[Tensor, Tensor]]:
        """This rank's slice of every global batch of :func:`seeded_batches` (features, labels); per-epoch
        features are asked for when an epoch starts (also when a resumed run starts mid-epoch)."""
        share = slice(rank * self.batch_per_rank, (rank + 1) * self.batch_per_rank)
        epoch, features = -1, None if callable(self.features) else self.features
        for iteration, idx in enumerate(seeded_batches(len(self.labels), self.batch_size, seed, start_iteration),
                                        start_iteration):
            if callable(self.features) and iteration // self.epoch_length != epoch:
                epoch = iteration // self.epoch_length
                features = self.features(epoch)
            mine = idx[share]
            yield features[mine].float(), self.labels[mine]  # type: ignore[index]

    def apply_schedule(self, iteration: int) -> dict[str, float]:
        factor = (1.0 + math.cos(math.pi * iteration / self.iterations)) / 2.0
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor
        return {}

    def step(self, batch: tuple[Tensor, Tensor], iteration: int) -> tuple[Tensor, dict[str, float]]:
        features, labels = batch
        return sum(F.cross_entropy(logit, labels) for logit in self.train_model(features)), {}  # type: ignore[return-value]


#: below this many multiply-adds per SGD step, CPU training runs on one thread: for small heads
#: OpenMP synchronisation costs more than it saves (30x slower on a loaded 2-core machine)
SINGLE_THREAD_MACS = 50_000_000


@contextmanager
def _cpu_threads(device: torch.device, macs_per_step: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    single = device.type == "cpu" and macs_per_step < SINGLE_THREAD_MACS
    if single:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if single:
            torch.set_num_threads(previous)


def train_linear_heads(train_features: TrainFeatures, train_labels: Tensor, heads: LinearHeads, *, batch_size: int,
                       iterations: int, seed: int, device: str = "cpu", epoch_length: int | None = None,
                       work_dir: str | Path | None = None, run_key: str = "") -> dict[str, Any]:
    """Train every head of ``heads`` on :class:`~dinobench.training.loop.TrainingLoop`; the loop's summary
    (``last["loss"]``: the last summed loss). ``train_features``: one tensor, or ``epoch -> tensor`` (augmented
    views, asked for once per ``epoch_length`` iterations). ``work_dir``: the run folder (checkpoints,
    ``metrics.jsonl``; a checkpoint of the same ``run_key`` there is resumed); None: a temporary folder.
    The caller's RNG state is left untouched."""
    if callable(train_features) and not epoch_length:
        raise ValueError("train_linear_heads: per-epoch features need epoch_length")
    ddp.init_from_env()
    device_ = torch.device(device)
    recipe = LinearGridRecipe(heads, train_features, train_labels, batch_size=batch_size, iterations=iterations,
                              epoch_length=int(epoch_length or iterations), device=device_, run_key=run_key)
    settings = LoopSettings(max_iters=iterations, log_every=max(1, iterations // 100))
    macs = 3 * batch_size * sum(head.weight.numel() for head in heads.heads)  # forward + backward
    with _folder_or_temporary(work_dir) as folder, torch.random.fork_rng(devices=[]), _cpu_threads(device_, macs):
        loop = TrainingLoop(recipe, settings, folder, device=device_, seed=seed)
        with loop.exclusive():
            loop.resume()
            summary = loop.fit()
    heads.eval()
    return summary


@contextmanager
def _folder_or_temporary(work_dir: str | Path | None) -> Iterator[Path]:
    """``work_dir``, or a temporary folder removed afterwards."""
    if work_dir is not None:
        yield Path(work_dir)
        return
    with tempfile.TemporaryDirectory(prefix="dinobench-linear-") as tmp:
        yield Path(tmp)
