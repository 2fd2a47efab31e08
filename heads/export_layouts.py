"""The official files of the first-party trained heads (``dinobench export --run``), one function per layout,
registered by the families' plugins (``dinobench_register_head_layouts``):

- ``classifier``: ``linear_head.pth`` = ``{weight, bias}``, the hub head's layout (``dinov3_vit7b16_lc``), and
  ``linear_classifiers.pth`` = an official ``eval/linear.py`` checkpoint holding that one head (its grid name);
- ``segmentation``: ``model_final.pth`` = ``{"model": {segmentation_model.1.*}}`` (as the official ADE20K training
  writes it; Mask2Former: the segmentor without its backbone) and ``config.yaml`` with the official
  ``decoder_head`` section and ``load_from``;
- ``depth`` (linear / DPT / CHMv2): ``model_final.pth`` = ``{"model": decoder state}`` (what
  ``make_depther_from_config`` loads) and ``config.yaml`` with ``decoder_head`` = the ``DecoderConfig`` fields.

A family whose head has a layout of its own keeps it beside the head and registers it from its plugin.
"""

from __future__ import annotations

from typing import Any

from dinobench.errors import WeightsError
from dinobench.heads.linear_classifier import grid_state


def _yaml(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def classifier_files(state: dict[str, Any], config: dict[str, Any]) -> dict[str, object]:
    """The hub head and a one-head official ``linear.py`` checkpoint."""
    if set(state) != {"weight", "bias"}:
        raise WeightsError(f"a classifier head holds weight and bias, found {sorted(state)[:4]}")
    return {"linear_head.pth": state,
            "linear_classifiers.pth": {"iteration": 0, "linear_classifiers": grid_state(config["classifier"], state)}}


def decoder_files(state: dict[str, Any], config: dict[str, Any]) -> dict[str, object]:
    """``model_final.pth`` and the ``config.yaml`` the official segmentation / depth evaluations read."""
    return {"model_final.pth": {"model": state},
            "config.yaml": _yaml({"decoder_head": config, "load_from": "model_final.pth"})}
