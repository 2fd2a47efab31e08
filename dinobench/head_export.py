"""``dinobench export --run RUN --output DIR``: a head trained by a dinobench run, in the files the official
DINOv3 tools read.

A run that trained a head keeps it beside its record (``head.pth``: the official key layout; ``head.json``: its
layout and official config). Exported:

- classifier: ``linear_head.pth`` = ``{weight, bias}``, the hub head's layout (``dinov3_vit7b16_lc``), and
  ``linear_classifiers.pth`` = an official ``eval/linear.py`` checkpoint holding that one head (its grid name);
- linear segmentation: ``model_final.pth`` = ``{"model": {segmentation_model.1.*}}`` (as the official ADE20K
  training writes it) and ``config.yaml`` with the official ``decoder_head`` section and ``load_from``;
- Mask2Former: the same two files, ``model`` = the segmentor without its backbone (adapter + head);
- depth (linear / DPT / CHMv2): ``model_final.pth`` = ``{"model": decoder state}`` (what
  ``make_depther_from_config`` loads) and ``config.yaml`` with ``decoder_head`` = the ``DecoderConfig`` fields;
- Plain-DETR: ``model_final.pth`` = ``{"model": detector without its backbone}`` (what the hub detector loads).

Every exported file loads back with ``--cfg-options protocol.head_weights=FILE`` (same metrics). The folder is
written in a staging directory and renamed: nothing half-written remains.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dinobench.errors import ConfigError, WeightsError
from dinobench.heads.linear_classifier import grid_state
from dinobench.results import Result
from dinobench.utils.io import write_atomic, write_folder_atomic
from dinobench.utils.tensor_files import load_tensor_file

LAYOUTS = ("classifier", "segmentation", "depth", "detection")


def _run_folder(run: str | Path) -> Path:
    """The run folder of ``run`` (the folder or its ``result.json``), checked to hold a trained head."""
    path = Path(run).expanduser()
    folder = path.parent if path.name == "result.json" else path
    if not (folder / "result.json").is_file():
        raise ConfigError(f"{path}: not a run folder (no result.json); pass <output>/<backbone>/<task>/<UTC>")
    if not (folder / "head.pth").is_file() or not (folder / "head.json").is_file():
        record = Result.load(folder / "result.json")
        why = "it evaluated a given head" if record.head else f"protocol {record.protocol!r} keeps no head"
        raise ConfigError(f"{folder}: this run saved no trained head ({why}); export a run that trained one")
    return folder


def _yaml(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def export_head(run: str | Path, output: str | Path) -> list[Path]:
    """Write the official files of the head trained in ``run`` into the new folder ``output``; their paths."""
    folder, output = _run_folder(run), Path(output).expanduser()
    meta = json.loads((folder / "head.json").read_text())
    layout, config = meta.get("layout"), dict(meta.get("config") or {})
    if layout not in LAYOUTS:
        raise WeightsError(f"{folder / 'head.json'}: unknown head layout {layout!r} (expected {', '.join(LAYOUTS)})")
    state = load_tensor_file(folder / "head.pth", "head checkpoint", mmap=False)
    files: dict[str, object] = {}
    if layout == "classifier":
        if set(state) != {"weight", "bias"}:
            raise WeightsError(f"{folder / 'head.pth'}: a classifier head holds weight and bias, found {sorted(state)[:4]}")
        files["linear_head.pth"] = state
        files["linear_classifiers.pth"] = {"iteration": 0, "linear_classifiers": grid_state(config["classifier"], state)}
    else:
        files["model_final.pth"] = {"model": state}
        if layout != "detection":  # the official segmentation / depth evaluations read these two sections
            files["config.yaml"] = _yaml({"decoder_head": config, "load_from": "model_final.pth"})

    def fill(staging: Path) -> None:
        for name, content in files.items():
            if isinstance(content, str):
                write_atomic(staging / name, content)
            else:
                write_atomic(staging / name, lambda f, obj=content: torch.save(obj, f))

    write_folder_atomic(output, fill, "folder for the exported head")
    return [output / name for name in files]
