"""Checkpoint reading and loading into a backbone, without holding two copies of the weights.

Reads ``.pth``/``.pt`` with ``torch.load(weights_only=True, mmap=True)`` and ``.safetensors``
with the safetensors package; unwraps training checkpoints (``teacher``/``model``/
``state_dict``, ``backbone.``/``module.`` prefixes) and, when they hold several sub-models,
keeps the teacher's backbone (see :data:`SUB_MODELS`); loads with ``assign=True`` into a model
built on the meta device. Shape/key mismatches raise :class:`WeightsError` with the first keys.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import urlparse

import torch
import torch.hub
from torch import Tensor, nn

from dinobench.errors import WeightsError
from dinobench.utils.tensor_files import load_tensor_file

logger = logging.getLogger("dinobench")

WRAPPER_KEYS = ("teacher", "model_ema", "model", "state_dict", "model_state_dict", "module")
PREFIXES = ("module.", "backbone.", "_orig_mod.")
#: sub-models whose ``<prefix>backbone.*`` may be taken, most preferred first: dinobench training
#: checkpoints' EMA teacher (``emas.<student>.``), an official teacher (``teacher.``) or bare
#: ``backbone.``, a ``model_ema``-style EMA, the student (``student.``, ``students.<name>.``)
SUB_MODELS = ((r"emas\.[^.]+\.", "the EMA teacher"), (r"teacher\.", "the teacher"), (r"", "the backbone"),
              (r"(model_ema|ema_model|ema)\.", "the EMA model"), (r"students\.[^.]+\.|student\.", "the student"))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(path: str | Path) -> str:
    """sha256 of a checkpoint file, or of the weight file inside a Hugging Face directory."""
    path = Path(path)
    if path.is_dir():
        path = next((path / f for f in HF_WEIGHT_FILES if (path / f).is_file()), path / HF_WEIGHT_FILES[0])
    return sha256_file(path)


HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class Checkpoint:
    """Tensors of a checkpoint plus, for a Hugging Face directory, its ``config.json``."""

    state: dict[str, Tensor]
    path: Path
    hf_config: dict[str, Any] | None = None


def resolve_source(weights: str | Path) -> Path:
    """A local path for ``weights``: a path as is, a URL via torch.hub's cache, an HF repo id via
    huggingface_hub (honours ``HF_TOKEN``, ``HF_HOME``, ``HF_HUB_OFFLINE``)."""
    text = str(weights)
    if text.startswith(("http://", "https://", "file://")):
        return _download_url(text)
    path = Path(text).expanduser()
    if path.exists() or not _REPO_ID.match(text):
        if not path.exists():
            raise WeightsError(f"{path}: weights file does not exist; pass a checkpoint path, URL or HF repo id")
        return path
    return _download_hf_repo(text)


def _download_url(url: str) -> Path:
    target = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(target), progress=True)
        except Exception as exc:  # urllib raises many types
            raise WeightsError(f"{url}: download failed ({type(exc).__name__}: {exc}); "
                               "download it yourself and pass the local path") from exc
    return target


def _download_hf_repo(repo_id: str) -> Path:
    # huggingface_hub (a dependency of timm) is imported only when a repo id is actually fetched
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors"],
                                      token=os.environ.get("HF_TOKEN")))
    except (LocalEntryNotFoundError, HFValidationError, OSError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
        hint = " (HF_HUB_OFFLINE is set and it is not in the local cache)" if offline else ""
        raise WeightsError(f"{repo_id}: cannot fetch Hugging Face repo{hint}: {type(exc).__name__}") from exc


def read_checkpoint(source: str | Path) -> Checkpoint:
    """Read a checkpoint file or a Hugging Face directory (``config.json`` + weights)."""
    path = resolve_source(source)
    if path.is_dir():
        config_file = path / "config.json"
        weight_file = next((path / f for f in HF_WEIGHT_FILES if (path / f).is_file()), None)
        if not config_file.is_file() or weight_file is None:
            raise WeightsError(f"{path}: not a Hugging Face model directory (needs config.json and "
                               f"{' or '.join(HF_WEIGHT_FILES)}); pass a checkpoint file instead")
        return Checkpoint(read_state_dict(weight_file), path, read_hf_config(config_file))
    config_file = path.parent / "config.json"
    hf_config = None
    if path.name in HF_WEIGHT_FILES and config_file.is_file():
        hf_config = read_hf_config(config_file)
    return Checkpoint(read_state_dict(path), path, hf_config)


def read_hf_config(config_file: Path) -> dict:
    """A Hugging Face ``config.json`` as a dict; unreadable, malformed or not an object is one WeightsError."""
    try:
        config = json.loads(config_file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        detail = f"line {exc.lineno} column {exc.colno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else exc
        raise WeightsError(f"{config_file}: not a readable JSON config ({detail}); re-download or re-export the "
                           f"model directory") from None
    if not isinstance(config, dict):
        raise WeightsError(f"{config_file}: expected a JSON object, got {type(config).__name__}; re-export the "
                           f"model directory")
    return config


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a ``.pth``/``.pt``/``.bin`` or ``.safetensors`` file (memory-mapped)."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{path}: weights file does not exist; pass --weights with a checkpoint path")
    if path.is_dir():
        raise WeightsError(f"{path}: is a directory; pass the checkpoint file (.pth or .safetensors)")
    return unwrap_state_dict(load_tensor_file(path), path)


def unwrap_wrappers(obj: Any, path: str | Path = "<checkpoint>",
                    wrapper_keys: Sequence[str] = WRAPPER_KEYS) -> Mapping[str, Any]:
    """The first mapping holding tensors, descending through ``wrapper_keys`` (``model``, ``state_dict``, ...)."""
    while isinstance(obj, Mapping) and not any(isinstance(v, Tensor) for v in obj.values()):
        key = next((k for k in wrapper_keys if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            raise WeightsError(f"{path}: no tensors found (top-level keys: {list(obj)[:8]})")
        obj = obj[key]
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return obj


def unwrap_state_dict(obj: Any, path: str | Path = "<checkpoint>") -> dict[str, Tensor]:
    """Find the backbone state dict inside a training checkpoint and strip wrapper prefixes."""
    obj = unwrap_wrappers(obj, path)
    state = _strip_shared_prefixes({k: v for k, v in obj.items() if isinstance(v, Tensor)})
    prefix = _pick_sub_model(_backbone_prefixes(state), path)
    if prefix is None:
        return state
    start = prefix + "backbone."  # e.g. backbone + dino_head in one dict, or student + EMA teacher
    return _strip_shared_prefixes({k[len(start):]: v for k, v in state.items() if k.startswith(start)})


def _strip_shared_prefixes(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop ``module.``/``backbone.``/``_orig_mod.`` when every key has it."""
    for prefix in PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _backbone_prefixes(state: Mapping[str, Tensor]) -> list[str]:
    """Distinct ``P`` of keys ``P + "backbone." + name`` (``""`` for a bare ``backbone.``), in key order."""
    heads = [("." + k).partition(".backbone.") for k in state]
    return list(dict.fromkeys(head[1:] + "." if head else "" for head, found, _ in heads if found))


def _pick_sub_model(prefixes: list[str], path: str | Path) -> str | None:
    """The prefix of the preferred sub-model in :data:`SUB_MODELS` order, None if none is known."""
    for pattern, label in SUB_MODELS:
        matches = [p for p in prefixes if re.fullmatch(pattern, p)]
        if len(matches) > 1:
            matches = [p for p in matches if ("." + p).endswith(".student.")]
            if len(matches) != 1:
                choices = ", ".join(f"'{p}backbone'" for p in prefixes if re.fullmatch(pattern, p))
                raise WeightsError(f"{path}: holds several candidates for {label} ({choices}) and none is named "
                                   "'student'; load one exported backbone instead (the run's teacher_checkpoint*.pth)")
        if matches:
            if matches[0] or len(prefixes) > 1:  # a nested sub-model or a choice: say which
                logger.info("loaded %s '%sbackbone' from %s", label, matches[0], Path(path).name)
            return matches[0]
    return None  # unknown layout: keep every tensor (a mismatch then names the keys)


def _named_tensors(model: nn.Module) -> dict[str, Tensor]:
    """Every parameter and buffer by state-dict name, shared ones under each name (e.g. an official
    ConvNeXt registers its final norm as both ``norm`` and ``norms.3``)."""
    return {**dict(model.named_parameters(remove_duplicate=False)),
            **dict(model.named_buffers(remove_duplicate=False))}


def _mismatch_message(path: Any, model: nn.Module, state: Mapping[str, Tensor]) -> str | None:
    expected = _named_tensors(model)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [(k, tuple(expected[k].shape), tuple(state[k].shape))
             for k in expected if k in state and expected[k].shape != state[k].shape]
    if not (missing or unexpected or wrong):
        return None
    parts = []
    if wrong:
        parts.append("shape mismatch " + ", ".join(f"{k}: expected {e} found {f}" for k, e, f in wrong[:3]))
    if missing:
        parts.append(f"{len(missing)} missing keys (first: {', '.join(missing[:4])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (first: {', '.join(unexpected[:4])})")
    return f"{path}: weights do not fit the architecture: " + "; ".join(parts) + \
        " -- pick the backbone these weights were trained with"


def load_into(model: nn.Module, state: Mapping[str, Tensor], path: Any = "<checkpoint>",
              strict: bool = True) -> nn.Module:
    """Assign ``state`` into ``model`` (which may live on the meta device) and return it."""
    message = _mismatch_message(path, model, state)
    if message and strict:
        raise WeightsError(message)
    if message:
        logger.warning("strict=False: %s", message)
    expected = _named_tensors(model)
    usable = {k: v for k, v in state.items() if k in expected and expected[k].shape == v.shape}
    # keep the model's dtype for float tensors; assign=True avoids a second copy when dtypes agree
    usable = {k: (v.to(expected[k].dtype) if v.is_floating_point() else v) for k, v in usable.items()}
    model.load_state_dict(usable, strict=False, assign=True)
    still_meta = [n for n, t in _named_tensors(model).items() if t.is_meta]
    if still_meta:
        raise WeightsError(f"{path}: weights leave {len(still_meta)} tensors uninitialised "
                           f"(first: {', '.join(still_meta[:4])})")
    return model
