"""``dinobench train``: resolve an SSL training config and run it here, under torchrun, or on SLURM
through submitit (optional dependency, imported when ``--slurm`` asks for it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dinobench.config import apply_options, load_config, parse_options
from dinobench.errors import ConfigError, DinobenchError
from dinobench.ssl.schema import TRAIN_OPEN_SECTIONS, check_override_keys, check_train_config, check_train_types
from dinobench.training.ssl import train


def resolve_train_config(path: str | Path, overrides: list[str] | dict[str, Any] | None = None,
                         data_root: str | None = None) -> dict[str, Any]:
    """The config file (``_base_`` merged) with validated ``key=value`` overrides.

    Every key, of the file (and its ``_base_`` files) and of the overrides, must be one of the
    defaults in ``configs/_base_/train/ssl_default.py`` (free-form sections excepted): a typo is a
    :class:`ConfigError` naming the file and the key and suggesting the closest valid key.
    """
    cfg = load_config(path)
    for section in ("student", "teacher", "dino", "ibot", "optim", "crops", "train", "checkpointing"):
        if section not in cfg:
            raise ConfigError(f"{path}: training config lacks the {section!r} section (inherit "
                              "configs/_base_/train/ssl_default.py)")
    check_train_config(cfg, path)
    check_train_types(cfg, path)
    options = parse_options(overrides)
    check_override_keys(list(options), where=f"{path} (override)")
    cfg = apply_options(cfg, options, where=str(path), open_sections=TRAIN_OPEN_SECTIONS)
    check_train_types(cfg, path, where=f"{path} (override)")
    if data_root is not None:
        cfg["train"]["data_root"] = data_root
    return cfg


def launch(cfg: dict[str, Any], output: Path, slurm: bool = False, nodes: int = 1, gpus_per_node: int = 8,
           partition: str | None = None, timeout_min: int = 1440) -> dict[str, Any]:
    """Train in this process (torchrun sets up the ranks) or submit a SLURM job via submitit."""
    if not slurm:
        return train(cfg, output)
    try:
        import submitit
    except ImportError as exc:
        raise DinobenchError("--slurm needs submitit: pip install 'dinobench[slurm]'") from exc
    executor = submitit.AutoExecutor(folder=str(output / "slurm"))
    executor.update_parameters(nodes=nodes, gpus_per_node=gpus_per_node, tasks_per_node=gpus_per_node,
                               cpus_per_task=max(cfg["train"].get("num_workers", 0), 1) + 1,
                               timeout_min=timeout_min, slurm_partition=partition, name="dinobench-train")
    job = executor.submit(_SlurmEntry(cfg, output))
    return {"slurm_job": job.job_id, "output": str(output)}


class _SlurmEntry:
    """Runs on every SLURM task: export the torch.distributed env, then train (resumes on requeue)."""

    def __init__(self, cfg: dict[str, Any], output: Path) -> None:
        self.cfg, self.output = cfg, output

    def __call__(self) -> dict[str, Any]:
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        return train(self.cfg, self.output)

    def checkpoint(self) -> Any:
        """Preemption/timeout: requeue; the new job resumes from the newest checkpoint."""
        import submitit

        return submitit.helpers.DelayedSubmission(_SlurmEntry(self.cfg, self.output))
