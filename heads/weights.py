"""Head checkpoints: read a released or dinobench-trained head's state dict and load it strictly.

Released DINOv3 heads are ``.pth`` files holding a bare state dict or one under ``model``/``state_dict``;
dinobench writes the same layout (``.pth`` or ``.safetensors``). Loading is strict except for key
prefixes the caller names (the frozen backbone, which a head file does not carry): a missing, unexpected or
wrongly shaped key is a one-line :class:`~dinobench.errors.WeightsError` naming the first offenders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from torch import Tensor, nn

from dinobench.backbones.loading import unwrap_wrappers
from dinobench.errors import WeightsError
from dinobench.utils.tensor_files import load_tensor_file

#: wrappers a training checkpoint may put around the state dict (``linear_classifiers``: official eval/linear.py)
HEAD_WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "linear_classifiers")


def read_head_state(path: str | Path, prefixes: Sequence[str] = ()) -> dict[str, Tensor]:
    """The tensors of a head checkpoint (``torch.load(weights_only=True)`` or safetensors), unwrapped from
    ``model``/``state_dict``, a DDP ``module.`` prefix and the first of ``prefixes`` that every key carries (e.g.
    ``segmentation_model.1.``, where the official segmentation training keeps its head)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"{path}: head weights file does not exist; pass a .pth or .safetensors file")
    obj = unwrap_wrappers(load_tensor_file(path, "head checkpoint"), path, HEAD_WRAPPER_KEYS)
    state = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    for prefix in ("module.", *prefixes):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_head_state(module: nn.Module, state: Mapping[str, Tensor], source: object = "<state dict>",
                    optional_prefixes: Sequence[str] = ()) -> None:
    """Load ``state`` into ``module``: every key of ``module`` except those under ``optional_prefixes`` must
    be present with its shape, and no other key may be; else a one-line WeightsError."""
    expected = {**dict(module.named_parameters(remove_duplicate=False)),
                **dict(module.named_buffers(remove_duplicate=False))}
    optional = tuple(optional_prefixes)
    missing = [k for k in expected if k not in state and not k.startswith(optional)]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k}: expected {tuple(expected[k].shape)} found {tuple(state[k].shape)}"
             for k in state if k in expected and tuple(expected[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"{len(wrong)} shape mismatches (first: {'; '.join(wrong[:2])})")
        if missing:
            parts.append(f"{len(missing)} missing keys (first: {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (first: {', '.join(unexpected[:3])})")
        raise WeightsError(f"{source}: weights do not fit this head: {'; '.join(parts)} -- check the head's "
                           f"config (hidden_dim, num_classes, backbone) against the checkpoint")
    module.load_state_dict(dict(state), strict=False)
