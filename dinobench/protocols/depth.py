"""Monocular depth estimation with a frozen backbone, the official DINOv3 NYU protocols.

Two protocols share this file because they are one protocol with two heads (same data, loss,
schedule, inference and metrics):

* ``linear_depth``: last layer, backbone norm, BatchNorm + 1x1 conv to 256 bins (AdaBins-style
  classification-regression, bins linear in ``[min_depth, max_depth]``);
* ``dpt``: a DPT decoder over 4 evenly spaced layers (official FOUR_EVEN_INTERVALS), 256 bins.

Training (:mod:`dinobench.training`, official ``config-nyu.yaml``): SigLoss (variance term after 100
warm-up iterations) over pixels with ground truth, AdamW lr 3e-4, wd 1e-4, betas (0.9, 0.99),
gradient clip 35, WarmupOneCycle (12.8k warm-up of 38.4k iterations, beta1 driven as official),
batch 16. Evaluation: whole image with horizontal-flip TTA, prediction resized to the ground
truth, clamped to the range, metrics inside the Eigen crop
(:class:`dinobench.metrics.dense.DepthMetric`); main metric RMSE (lower is better).
``protocol.inference.align_least_squares=True`` fits each prediction's scale and shift to its ground truth first
(relative depth: the official evaluation of the released SynthMix depther, which ``--head dinov3_vit7b16_dd`` sets
together with its 768-pixel short side).

``protocol.head_weights=FILE`` evaluates a given decoder without training: its keys are the official decoder's
(a released ``*_dpt_head-*.pth``, an official run's ``model_final.pth`` or a head exported by ``dinobench
export``), loaded strictly; ``protocol.head.min_depth`` / ``max_depth`` set the bins' range of such a head.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from torch import Tensor, nn

from dinobench.context import RunContext
from dinobench.data.dense_transforms import build_depth_eval_transform, build_depth_train_transform
from dinobench.dense_inference import dense_predict
from dinobench.metrics.dense import DepthMetric
from dinobench.errors import ConfigError
from dinobench.heads.depth import LinearDepthHead, SigLoss
from dinobench.heads.dpt import DPTHead
from dinobench.protocol import TrainedHead
from dinobench.protocols.dense import (DenseHeadConfig, DenseProtocol, InferenceConfig, inference_kwargs,
                                       transform_sections)
from dinobench.visualize import colorize_depth
from dinobench.templates.trained_head import TrainedHeadConfig


@dataclass
class LinearDepthHeadConfig(DenseHeadConfig):
    """Official linear depth head: last layer, backbone norm, no class token, BatchNorm, 256 linear bins."""

    n_bins: int = 256
    bins_strategy: Literal["linear", "log", "chmv2_mixlog"] = "linear"
    norm_strategy: Literal["linear", "softmax", "sigmoid", "chmv2_mixlog"] = "linear"
    min_depth: float | None = None  # range of the bins; None: the dataset's (a released head brings its own)
    max_depth: float | None = None


@dataclass
class DPTHeadConfig(LinearDepthHeadConfig):
    """Official DPT depther: 4 evenly spaced layers, 512 channels, post-process channels = backbone width."""

    layers: str | list[int] = "four_even"
    channels: int = 512
    post_process_channels: list[int] | None = None
    n_hidden_channels: int = 32
    use_bias: bool = False  # biased convs in the fusion blocks' residual units (CHMv2)
    projection_after_fusion: bool = True  # False: no 3x3 ``project`` conv after fusion (CHMv2)


@dataclass
class DepthLossConfig:
    """SigLoss with its variance-term warm-up (official)."""

    warm_up: bool = True
    warm_iter: int = 100


@dataclass
class DepthInferenceConfig(InferenceConfig):
    """Official: whole image with horizontal-flip TTA."""

    flip: bool = True
    # official: off for a head trained on NYU (config-nyu.yaml:46); True for relative depth, the released
    # SynthMix depther's evaluation (config-nyu-synthmix-dpt-inference.yaml:12): scale and shift fitted per image.
    # None (off) stays out of the protocol hash (optional key): earlier results stay comparable
    align_least_squares: bool | None = None


@dataclass
class LinearDepthConfig(TrainedHeadConfig):
    """``protocol=dict(type="linear_depth", head=dict(...), loss=dict(...), inference=dict(...))``."""

    head: LinearDepthHeadConfig = field(default_factory=LinearDepthHeadConfig)
    loss: DepthLossConfig = field(default_factory=DepthLossConfig)
    inference: DepthInferenceConfig = field(default_factory=DepthInferenceConfig)


@dataclass
class DPTDepthConfig(LinearDepthConfig):
    """``protocol=dict(type="dpt", head=dict(channels=..., ...), loss=dict(...), inference=dict(...))``."""

    head: DPTHeadConfig = field(default_factory=DPTHeadConfig)


def predict_depth(model: nn.Module, images: Tensor, inference: DepthInferenceConfig, out_size: Any) -> Tensor:
    """Depth ``[B, 1, H, W]`` at ``out_size`` (whole or sliding windows, optional flip TTA)."""
    return dense_predict(model, images, num_outputs=1, flip=bool(inference.flip), out_size=tuple(out_size),
                         **inference_kwargs(inference))


class DepthProtocol(DenseProtocol):
    """Shared implementation; subclasses choose the head (:meth:`make_head`) and its defaults."""

    version = "1"
    main_metric = "rmse"
    higher_is_better = False
    file_keys = ("head_weights",)
    optional_keys = ("head.min_depth", "head.max_depth", "inference.align_least_squares")

    def validate(self) -> None:
        """The loss of the ``loss`` section (SigLoss with its variance-term warm-up)."""
        self.sigloss = SigLoss(warm_up=self.config.loss.warm_up, warm_iter=self.config.loss.warm_iter)

    def depth_range(self, train_set: Any) -> dict[str, float]:
        """The bins' range: the head config's when set (a released head), else the dataset's."""
        hc = self.config.head
        return {"min_depth": float(train_set.min_depth if hc.min_depth is None else hc.min_depth),
                "max_depth": float(train_set.max_depth if hc.max_depth is None else hc.max_depth)}

    def transforms(self, ctx: RunContext) -> tuple[Any, Any]:
        """Official NYU train (random crop, flip, colour jitter) and eval transforms."""
        transform = transform_sections(ctx.cfg)
        return (build_depth_train_transform(transform["train"], ctx.image_mean, ctx.image_std),
                build_depth_eval_transform(transform["eval"], ctx.image_mean, ctx.image_std))

    def make_head(self, channels: list[int], train_set: Any) -> nn.Module:
        """The linear depth head over layers with ``channels``."""
        hc = self.config.head
        return LinearDepthHead(channels, n_bins=hc.n_bins, use_batchnorm=hc.use_batchnorm,
                               use_cls_token=hc.use_cls_token, bins_strategy=hc.bins_strategy,
                               norm_strategy=hc.norm_strategy, **self.depth_range(train_set))

    def trained_head(self, model: nn.Module) -> TrainedHead:
        """The decoder's state dict (the official decoder's keys) with its official depth ``DecoderConfig``."""
        hc, head = self.config.head, model.head
        config = {"type": "dpt" if isinstance(head, DPTHead) else "linear",
                  "min_depth": head.to_depth.min_depth, "max_depth": head.to_depth.max_depth,
                  "bins_strategy": hc.bins_strategy, "norm_strategy": hc.norm_strategy,
                  "backbone_out_layers": list(model.layers), "use_backbone_norm": hc.use_backbone_norm,
                  "n_output_channels": hc.n_bins, "use_batchnorm": hc.use_batchnorm, "use_cls_token": hc.use_cls_token,
                  "head_kwargs": {}}
        if isinstance(head, DPTHead):
            config["head_kwargs"] = {"channels": hc.channels, "post_process_channels": head.post_process_channels,
                                     "n_hidden_channels": hc.n_hidden_channels, "use_bias": hc.use_bias,
                                     "projection_after_fusion": hc.projection_after_fusion}
        return TrainedHead(self.official_state(model), "depth", config)

    def loss(self, model: nn.Module, batch: dict[str, Any], iteration: int) -> tuple[Tensor, dict[str, float]]:
        """SigLoss over the pixels with ground truth."""
        gt = batch["depth"][:, None]
        return self.sigloss(model(batch["image"]), gt, gt > 0, iteration=iteration), {}

    def new_metric(self, dataset: Any) -> DepthMetric:
        """a1..a3, abs_rel, rmse, ... in the dataset's depth range (Eigen crop when it says so)."""
        return DepthMetric(dataset.min_depth, dataset.max_depth, dataset.eigen_crop,
                           align_least_squares=bool(self.config.inference.align_least_squares))

    def update_metric(self, model: nn.Module, sample: dict[str, Any], metric: Any, device: str) -> None:
        """Prediction resized to the ground truth, into the metric."""
        gt = sample["depth"][0]
        metric.update(predict_depth(model, sample["image"].to(device), self.config.inference, gt.shape)[0, 0].cpu(), gt)

    def draw(self, model: nn.Module, sample: dict[str, Any], dataset: Any, ctx: RunContext) -> tuple[Any, Any]:
        """Colourised predicted and ground-truth depth of one val sample, in the ground truth's 2-98 % range."""
        gt = sample["depth"].numpy()
        pred = predict_depth(model, sample["image"][None].to(ctx.device), self.config.inference,
                             gt.shape)[0, 0].cpu().numpy()
        valid = gt[(gt > dataset.min_depth) & (gt < dataset.max_depth)]
        lo, hi = (float(np.percentile(valid, 2)), float(np.percentile(valid, 98))) if valid.size else (None, None)
        return colorize_depth(pred, lo, hi), colorize_depth(gt, lo, hi)


class LinearDepthProtocol(DepthProtocol):
    """Linear depth: BN + 1x1 conv to 256 bins on the last layer."""

    name = "linear_depth"
    Config = LinearDepthConfig


class DPTDepthProtocol(DepthProtocol):
    """DPT depth: the official DPT decoder over 4 layers."""

    name = "dpt"
    version = "2"  # 2: modules created in the official DPTHead's order (official key layout): a new random init
    Config = DPTDepthConfig

    def make_head(self, channels: list[int], train_set: Any) -> nn.Module:
        """A DPT head (readout ``project`` when the class token is used, as official)."""
        hc = self.config.head
        if len(channels) != 4:
            raise ConfigError(f"protocol.head.layers must select 4 layers for DPT, got {len(channels)}")
        return DPTHead(channels, channels=hc.channels, post_process_channels=hc.post_process_channels,
                       readout_type="project" if hc.use_cls_token else "ignore", use_batchnorm=hc.use_batchnorm,
                       n_bins=hc.n_bins, n_hidden_channels=hc.n_hidden_channels, bins_strategy=hc.bins_strategy,
                       norm_strategy=hc.norm_strategy, use_bias=hc.use_bias,
                       projection_after_fusion=hc.projection_after_fusion, **self.depth_range(train_set))
