"""``dinobench export --run RUN --output DIR``: a head trained by a dinobench run, in the files the official tools
read.

A run that trained a head keeps it beside its record (``head.pth``: the official key layout; ``head.json``: its
layout and official config). The layout names a registered entry (``dinobench_register_head_layouts``; the
first-party ones are in :mod:`dinobench.heads.export_layouts`) that turns them into files; every exported file
loads back with ``--cfg-options protocol.head_weights=FILE`` (same metrics). The folder is written in a staging
directory and renamed: nothing half-written remains.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from dinobench.errors import ConfigError, WeightsError
from dinobench.registry import resolve_object
from dinobench.results import Result
from dinobench.utils.io import safe_component, write_atomic, write_folder_atomic
from dinobench.utils.tensor_files import load_tensor_file


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


def export_head(run: str | Path, output: str | Path, layouts: Any = None) -> list[Path]:
    """Write the official files of the head trained in ``run`` into the new folder ``output``; their paths.
    ``layouts``: the head-layout registry (default: the process's registries)."""
    folder, output = _run_folder(run), Path(output).expanduser()
    try:
        meta = json.loads((folder / "head.json").read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or not isinstance(meta.get("config") or {}, dict):
            raise ValueError("not an object with a layout and a config object")
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise WeightsError(f"{folder / 'head.json'}: not a head description ({type(exc).__name__}: {str(exc)[:80]}); "
                           f"re-run the training or restore the file") from None
    layout, config = meta.get("layout"), dict(meta.get("config") or {})
    if layouts is None:
        from dinobench.plugin_manager import get_registries

        layouts = get_registries().head_layouts
    if not isinstance(layout, str) or layout not in layouts:
        raise WeightsError(f"{folder / 'head.json'}: unknown head layout {layout!r} (registered: "
                           f"{', '.join(layouts.names())}); install the plugin that trained it")
    state = load_tensor_file(folder / "head.pth", "head checkpoint", mmap=False)
    try:
        files: dict[str, object] = resolve_object(layouts.get(layout).files)(state, config)
    except WeightsError as exc:
        raise WeightsError(f"{folder / 'head.pth'}: {exc}") from None
    for name in files:
        if safe_component(name) != name:
            raise WeightsError(f"head layout {layout!r} names the file {name!r}; a file name is one plain path "
                               "component")

    def fill(staging: Path) -> None:
        for name, content in files.items():
            if isinstance(content, str):
                write_atomic(staging / name, content)
            else:
                write_atomic(staging / name, lambda f, obj=content: torch.save(obj, f))

    write_folder_atomic(output, fill, "folder for the exported head")
    return [output / name for name in files]
