"""The one training engine for everything that trains (head training, SSL pretraining).

- :mod:`~dinobench.training.loop`: the loop (:class:`TrainingLoop`) driven by a :class:`Recipe`;
  exact-resume checkpoints, SIGTERM, NaN stop, periodic evaluation, JSONL metrics, DDP.
- :mod:`~dinobench.training.head`: the head-training recipe, :func:`train_head`, run keys and folders.
- :mod:`~dinobench.training.ssl`: the SSL pretraining recipe (``dinobench train``).
- :mod:`~dinobench.training.schedules` / :mod:`~dinobench.training.optim`: schedule and optimizer
  registries, parameter groups; :mod:`~dinobench.training.config`: the ``train`` section.
- :mod:`~dinobench.training.sampler`: the seeded, resumable data stream.
- :mod:`~dinobench.metrics.sharded`: :func:`evaluate_sharded` (each rank its share, metrics merged).
- :mod:`~dinobench.utils.distributed` / :mod:`~dinobench.training.checkpoint`: torch.distributed glue,
  checkpoint files.
"""

from dinobench.training.config import RUNTIME_TRAIN_KEYS, TRAIN_DEFAULTS, TrainConfig, train_config
from dinobench.metrics.sharded import MergeableMetric, evaluate_sharded, shard_indices, sync_metric
from dinobench.training.head import HeadRecipe, head_training_loop, run_key, train_head, work_dir_for
from dinobench.training.loop import LoopSettings, Recipe, TrainingDiverged, TrainingInterrupted, TrainingLoop
from dinobench.training.optim import build_optimizer, param_groups, register_optimizer
from dinobench.training.sampler import SeededSamples, ShardedIterationSampler
from dinobench.training.schedules import register_schedule, schedule_at

__all__ = [
    "HeadRecipe", "LoopSettings", "MergeableMetric", "RUNTIME_TRAIN_KEYS", "Recipe", "SeededSamples",
    "ShardedIterationSampler", "TRAIN_DEFAULTS", "TrainConfig", "TrainingDiverged", "TrainingInterrupted",
    "TrainingLoop", "build_optimizer", "evaluate_sharded", "head_training_loop", "param_groups", "register_optimizer", "register_schedule",
    "run_key", "schedule_at", "shard_indices", "sync_metric", "train_config", "train_head", "work_dir_for",
]
