"""The official file of a trained Plain-DETR detector (``dinobench export --run``, layout ``detection``)."""

from __future__ import annotations

from typing import Any


def detector_files(state: dict[str, Any], config: dict[str, Any]) -> dict[str, object]:
    """``model_final.pth`` = ``{"model": detector without its backbone}``, as the hub detector loads it."""
    return {"model_final.pth": {"model": state}}
