"""Released DINOv3 linear classifiers: read one head from the files the official code writes or ships.

Two official layouts hold an ``nn.Linear`` over ``create_linear_input(n, avgpool=True)`` = the normalised class
tokens of the last ``n`` blocks then the mean of the last block's normalised patch tokens:

- the hub head ``dinov3_vit7b16_lc`` (``dinov3_vit7b16_imagenet1k_linear_head-*.pth``): a bare ``{weight, bias}``
  with ``n = 1`` (input ``2 * embed_dim``); dinobench exports its selected head the same way;
- an official ``eval/linear.py`` checkpoint (``<output>/final/checkpoint.pth``): ``linear_classifiers`` holds the
  whole grid, ``classifiers_dict.classifier_{n}_blocks_avgpool_True_lr_{lr:.5f}.linear.{weight,bias}`` (dots of
  the scaled lr written as ``_``; ``module.`` under DDP). The one to use is named by ``classifier`` (the
  ``best_classifier.name`` of the run's ``results_eval_linear.json``); a grid of one needs no name.

The result is ``(n_blocks, nn.Linear, name)``; the input width must be ``(n_blocks + 1) * embed_dim``.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from torch import Tensor, nn

from dinobench.errors import WeightsError
from dinobench.heads.weights import load_head_state, read_head_state

#: ``AllClassifiers`` entries: ``classifiers_dict.<name>.linear.{weight,bias}``
GRID_KEY = re.compile(r"^(?:module\.)?classifiers_dict\.(?P<name>[^.]+)\.linear\.(?P<param>weight|bias)$")
NAME = re.compile(r"^classifier_(?P<n>\d+)_blocks_avgpool_(?P<avgpool>True|False)_lr_(?P<lr>\d+_\d+)$")


def official_classifier_name(n_blocks: int, scaled_lr: float) -> str:
    """The official grid name of the head for ``n_blocks`` trained at ``scaled_lr`` (lr * batch / 256)."""
    return f"classifier_{int(n_blocks)}_blocks_avgpool_True_lr_{scaled_lr:.5f}".replace(".", "_")


def _linear(weight: Tensor, bias: Tensor, source: object) -> nn.Linear:
    """An ``nn.Linear`` holding ``weight`` / ``bias`` (loaded strictly)."""
    if weight.ndim != 2 or bias.ndim != 1 or bias.shape[0] != weight.shape[0]:
        raise WeightsError(f"{source}: weight {tuple(weight.shape)} / bias {tuple(bias.shape)} is not a linear "
                           f"classifier ([classes, dim] and [classes])")
    linear = nn.Linear(int(weight.shape[1]), int(weight.shape[0]))
    load_head_state(linear, {"weight": weight.float(), "bias": bias.float()}, source)
    return linear


def _blocks_from_width(width: int, embed_dim: int, source: object) -> int:
    """``n`` of a head whose input is ``(n + 1) * embed_dim`` wide."""
    if width % embed_dim or not 2 <= width // embed_dim <= 5:
        raise WeightsError(f"{source}: a classifier over {width} features does not fit this backbone (embed_dim "
                           f"{embed_dim}: the official input is (n + 1) * embed_dim wide, n = 1..4); use the "
                           f"backbone the head was trained on")
    return width // embed_dim - 1


def read_linear_classifier(path: str | Path, embed_dim: int, classifier: str | None = None
                           ) -> tuple[int, nn.Linear, str]:
    """``(n_blocks, head, name)`` of the classifier in ``path`` (see the module docstring)."""
    path = Path(path).expanduser()
    state = read_head_state(path)  # unwrapped from linear_classifiers / model and DDP's module.
    grid: dict[str, dict[str, Tensor]] = {}
    for key, value in state.items():
        match = GRID_KEY.match(key)
        if match:
            grid.setdefault(match["name"], {})[match["param"]] = value
    if not grid:
        if set(state) != {"weight", "bias"}:
            raise WeightsError(f"{path}: not a linear classifier: expected keys weight, bias (hub head) or "
                               f"classifiers_dict.<name>.linear.* (official linear.py), found {sorted(state)[:4]}")
        weight = state["weight"]
        return _blocks_from_width(int(weight.shape[1]), embed_dim, path), _linear(weight, state["bias"], path), "head"
    names = sorted(grid)
    if classifier is None:
        if len(names) > 1:
            raise WeightsError(f"{path}: holds {len(names)} classifiers ({', '.join(names[:3])}, ...); name one with "
                               f"--cfg-options protocol.classifier=NAME (the best_classifier of "
                               f"results_eval_linear.json)")
        classifier = names[0]
    if classifier not in grid:
        close = difflib.get_close_matches(classifier, names, n=1)
        hint = f"did you mean {close[0]}?" if close else f"available: {', '.join(names[:4])}"
        raise WeightsError(f"{path}: no classifier named {classifier!r} ({hint})")
    params = grid[classifier]
    if set(params) != {"weight", "bias"}:
        raise WeightsError(f"{path}: classifier {classifier} lacks {'weight' if 'weight' not in params else 'bias'}")
    width = int(params["weight"].shape[1])
    match = NAME.match(classifier)
    n_blocks = int(match["n"]) if match else _blocks_from_width(width, embed_dim, path)
    if match and match["avgpool"] != "True":
        raise WeightsError(f"{path}: classifier {classifier} uses no average pooling; dinobench's input "
                           f"(cls4_avgpool) always includes it")
    if width != (n_blocks + 1) * embed_dim:
        raise WeightsError(f"{path}: classifier {classifier} reads {width} features but {n_blocks} blocks of this "
                           f"backbone give {(n_blocks + 1) * embed_dim}; use the backbone it was trained on")
    return n_blocks, _linear(params["weight"], params["bias"], path), classifier


def classifier_state(head: nn.Linear) -> dict[str, Tensor]:
    """A head as the hub file holds it: ``{weight, bias}`` (CPU copies)."""
    return {"weight": head.weight.detach().cpu().clone(), "bias": head.bias.detach().cpu().clone()}


def grid_state(name: str, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A hub-layout ``{weight, bias}`` as the official ``linear.py`` grid entry ``name`` (an ``AllClassifiers`` of one)."""
    return {f"classifiers_dict.{name}.linear.{param}": value for param, value in state.items()}


__all__ = ["classifier_state", "grid_state", "official_classifier_name", "read_linear_classifier"]
