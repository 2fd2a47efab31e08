"""Training checkpoints: atomic writes, newest-first resume, bounded retention."""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dinobench.errors import WeightsError
from dinobench.utils.io import write_atomic
from dinobench.utils.tensor_files import load_tensor_file

logger = logging.getLogger("dinobench")
_NAME = re.compile(r"^checkpoint_(\d{8})\.pth$")


def rng_state() -> dict[str, Any]:
    """torch (and CUDA) / python / numpy global RNG states as tensors and lists (``weights_only`` loadable)."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
             "python_gauss": random.getstate()[2], "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
             "numpy_pos": int(np_state[2])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), state["python_gauss"]))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointManager:
    """``<dir>/checkpoint_<iteration>.pth``; keeps the newest ``max_to_keep``."""

    def __init__(self, folder: Path, max_to_keep: int = 3, enabled: bool = True) -> None:
        self.folder, self.max_to_keep, self.enabled = Path(folder), max_to_keep, enabled

    def _existing(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if _NAME.match(p.name))

    def latest_path(self) -> Path | None:
        """The newest complete checkpoint (partial writes never have the final name)."""
        existing = self._existing()
        return existing[-1] if existing else None

    def save(self, state: dict[str, Any], iteration: int) -> Path | None:
        """Write atomically (temp file + fsync + rename), then prune old ones and the partial writes a killed
        process left (the training folder is owned by one process: :meth:`TrainingLoop.exclusive`)."""
        if not self.enabled:
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        target = write_atomic(self.folder / f"checkpoint_{iteration:08d}.pth", lambda fh: torch.save(state, fh))
        for old in self._existing()[: -self.max_to_keep]:
            old.unlink(missing_ok=True)
        for partial in self.folder.glob(".checkpoint_*.tmp"):
            partial.unlink(missing_ok=True)
        return target

    def load_latest(self) -> dict[str, Any] | None:
        """The newest checkpoint's state (``weights_only=True``; unreadable or refused: WeightsError), or None."""
        path = self.latest_path()
        return None if path is None else read_training_checkpoint(path)


def read_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """A dinobench training checkpoint's state dict: a one-line WeightsError when it is unreadable, pickles
    anything but tensors and plain values, or has no ``model`` state."""
    state = load_tensor_file(path, "training checkpoint", mmap=False)
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        found = sorted(map(str, state))[:6] if isinstance(state, dict) else type(state).__name__
        raise WeightsError(f"{path}: not a dinobench training checkpoint (no 'model' state; found {found}); "
                           "pass a checkpoint_*.pth of a dinobench training run, or the run folder")
    return state


def load_teacher_student_state(path: str | Path) -> dict[str, Tensor]:
    """The EMA teacher (backbone + heads) of a dinobench training checkpoint or run folder."""
    path = Path(path)
    if path.is_dir():
        latest = CheckpointManager(path / "checkpoints").latest_path()
        if latest is None:
            raise WeightsError(f"{path}: no checkpoints/checkpoint_*.pth in this training folder")
        path = latest
    if not path.is_file():
        raise WeightsError(f"{path}: training checkpoint not found")
    state = read_training_checkpoint(path)["model"]
    prefix = next((p for p in ("emas.student.", "emas.") if any(k.startswith(p) for k in state)), None)
    if prefix is None:
        raise WeightsError(f"{path}: not a dinobench training checkpoint (no EMA teacher weights)")
    if prefix == "emas.":  # several students: take the first one's EMA
        first = next(k for k in state if k.startswith("emas.")).split(".")[1]
        prefix = f"emas.{first}."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
