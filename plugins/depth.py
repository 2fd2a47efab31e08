"""Monocular depth estimation with a frozen backbone, the official DINOv3 NYU protocols.

Two protocols share this file because they are one protocol with two heads (same data, loss,
schedule, inference and metrics):

* ``linear_depth``: last layer, backbone norm, BatchNorm + 1x1 conv to 256 bins (AdaBins-style
  classification-regression, bins linear in ``[min_depth, max_depth]``);
* ``dpt``: a DPT decoder over 4 evenly spaced layers (official FOUR_EVEN_INTERVALS), 256 bins.

Training (:mod:`dinobench.engine`, official ``config-nyu.yaml``): SigLoss (variance term after 100
warm-up iterations) over pixels with ground truth, AdamW lr 3e-4, wd 1e-4, betas (0.9, 0.99),
gradient clip 35, WarmupOneCycle (12.8k warm-up of 38.4k iterations, beta1 driven as official),
batch 16. Evaluation: whole image with horizontal-flip TTA, prediction resized to the ground
truth, clamped to the range, metrics inside the Eigen crop
(:class:`dinobench.dense_metrics.DepthMetric`); main metric RMSE (lower is better).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dinobench.errors import ConfigError
from dinobench.hookspecs import hookimpl
from dinobench.registry import ProtocolRegistry

if TYPE_CHECKING:
    from torch import nn

PROTOCOL_VERSION = "1"
COMMON_HEAD = dict(use_cls_token=False, use_batchnorm=True, use_backbone_norm=True, n_bins=256,
                   bins_strategy="linear", norm_strategy="linear")
LINEAR_HEAD = dict(COMMON_HEAD, layers="last")
DPT_HEAD = dict(COMMON_HEAD, layers="four_even", channels=512, post_process_channels=None, n_hidden_channels=32)
LOSS_DEFAULTS = dict(warm_up=True, warm_iter=100)
INFERENCE_DEFAULTS = dict(mode="whole", flip=True, crop_size=512, stride=341)


def evaluate_depth(model: "nn.Module", dataset: Any, inference: dict[str, Any], device: str = "cpu",
                   num_workers: int = 0) -> dict[str, float]:
    """a1..a3, abs_rel, sq_rel, rmse, rmse_log, log10, silog, mae of ``model`` on ``dataset``."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from dinobench.dense_metrics import DepthMetric

    metric = DepthMetric(dataset.min_depth, dataset.max_depth, dataset.eigen_crop)
    loader = DataLoader(dataset, batch_size=1, shuffle=False, num_workers=num_workers,
                        generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        for sample in tqdm(loader, desc="eval depth", unit="img", leave=False):
            gt = sample["depth"][0]
            metric.update(predict_depth(model, sample["image"].to(device), inference, gt.shape)[0, 0].cpu(), gt)
    return metric.compute()


def predict_depth(model: "nn.Module", images: Any, inference: dict[str, Any], out_size: Any) -> Any:
    """Depth ``[B, 1, H, W]`` at ``out_size`` (whole or sliding windows, optional flip TTA)."""
    from dinobench.dense_inference import dense_predict

    return dense_predict(model, images, mode=inference["mode"], num_outputs=1, crop_size=inference["crop_size"],
                         stride=inference["stride"], flip=bool(inference["flip"]), out_size=tuple(out_size))


def save_depth_figures(model: "nn.Module", dataset: Any, inference: dict[str, Any], out_dir: Any, count: int,
                       mean: Any, std: Any, device: str = "cpu") -> list[str]:
    """Colourised predicted depth of the first ``count`` val images (ground truth's colour range),
    and one side-by-side figure (image | ground truth | prediction) of the first."""
    import numpy as np
    import torch

    from dinobench.utils.io import safe_component
    from dinobench.visualize import colorize_depth, denormalize_image, side_by_side

    written = []
    model.eval()
    with torch.no_grad():
        for index in range(min(count, len(dataset))):
            sample = dataset[index]
            gt = sample["depth"].numpy()
            pred = predict_depth(model, sample["image"][None].to(device), inference, gt.shape)[0, 0].cpu().numpy()
            valid = gt[(gt > dataset.min_depth) & (gt < dataset.max_depth)]
            lo, hi = (float(np.percentile(valid, 2)), float(np.percentile(valid, 98))) if valid.size else (None, None)
            pred_image = colorize_depth(pred, lo, hi)
            name = f"{index:03d}_{safe_component(str(sample['name']))}_pred.png"
            pred_image.save(out_dir / name)
            written.append(name)
            if index == 0:
                panels = [("image", denormalize_image(sample["image"].numpy(), mean, std)),
                          ("ground truth", colorize_depth(gt, lo, hi)), ("prediction", pred_image)]
                written.append(side_by_side(panels, out_dir / "side_by_side.png").name)
    return written


class DepthProtocol:
    """Shared implementation; subclasses choose the head (:meth:`make_head`) and its defaults."""

    name = "depth"
    head_defaults: dict[str, Any] = LINEAR_HEAD

    def __init__(self, cfg: dict[str, Any]) -> None:
        from dinobench.dense_inference import config_section

        self.head_cfg = config_section(cfg, "head", self.head_defaults, "protocol")
        self.loss_cfg = config_section(cfg, "loss", LOSS_DEFAULTS, "protocol")
        self.inference = config_section(cfg, "inference", INFERENCE_DEFAULTS, "protocol")
        if self.inference["mode"] not in ("whole", "slide"):
            raise ConfigError(f"protocol.inference.mode must be 'whole' or 'slide', got {self.inference['mode']!r}")
        self.num_visualizations = int(cfg.get("num_visualizations", 4))

    def make_head(self, channels: list[int], min_depth: float, max_depth: float) -> "nn.Module":
        """The depth head over layers with ``channels``."""
        from dinobench.heads.depth import LinearDepthHead

        hc = self.head_cfg
        return LinearDepthHead(channels, n_bins=hc["n_bins"], min_depth=min_depth, max_depth=max_depth,
                               use_batchnorm=hc["use_batchnorm"], use_cls_token=hc["use_cls_token"],
                               bins_strategy=hc["bins_strategy"], norm_strategy=hc["norm_strategy"])

    def run(self, ctx: Any) -> dict[str, Any]:
        """Train the depth head on ``train``, evaluate on ``val``."""
        from dinobench.data.dense_transforms import build_depth_eval_transform, build_depth_train_transform
        from dinobench.backbones.contract import backbone_normalisation
        from dinobench.dense_inference import build_dense_model, transform_sections
        from dinobench.engine import train_head
        from dinobench.heads.depth import SigLoss

        train_set, val_set = ctx.datasets["train"], ctx.datasets["val"]
        mean, std = backbone_normalisation(ctx.backbone)
        transform = transform_sections(ctx.cfg)
        train_set.transform = build_depth_train_transform(transform["train"], mean, std)
        val_set.transform = build_depth_eval_transform(transform["eval"], mean, std)
        min_depth, max_depth = float(train_set.min_depth), float(train_set.max_depth)
        model = build_dense_model(ctx, lambda channels: self.make_head(channels, min_depth, max_depth),
                                  self.head_cfg["layers"], self.head_cfg["use_backbone_norm"])
        sigloss = SigLoss(warm_up=bool(self.loss_cfg["warm_up"]), warm_iter=int(self.loss_cfg["warm_iter"]))
        workers = int(ctx.cfg.get("train", {}).get("num_workers", 0))

        def loss_fn(net: "nn.Module", batch: dict[str, Any], iteration: int):
            gt = batch["depth"][:, None]
            return sigloss(net(batch["image"]), gt, gt > 0, iteration=iteration), {}

        def evaluate(net: "nn.Module") -> dict[str, float]:
            return evaluate_depth(net, val_set, self.inference, ctx.device, workers)

        summary = train_head(ctx, model, train_set, loss_fn, evaluate)
        if ctx.predictions_dir is not None and self.num_visualizations > 0:
            save_depth_figures(model, val_set, self.inference, ctx.predictions_dir, self.num_visualizations,
                               mean, std, ctx.device)
        return {"metrics": summary["metrics"], "main_metric": "rmse", "higher_is_better": False}


class LinearDepthProtocol(DepthProtocol):
    """``protocol=dict(type="linear_depth", head=dict(...), loss=dict(...), inference=dict(...))``."""

    name = "linear_depth"


class DPTDepthProtocol(DepthProtocol):
    """``protocol=dict(type="dpt", head=dict(channels=..., ...), loss=dict(...), inference=dict(...))``."""

    name = "dpt"
    head_defaults = DPT_HEAD

    def make_head(self, channels: list[int], min_depth: float, max_depth: float) -> "nn.Module":
        """A DPT head (readout ``project`` when the class token is used, as official)."""
        from dinobench.heads.dpt import DPTHead

        hc = self.head_cfg
        if len(channels) != 4:
            raise ConfigError(f"protocol.head.layers must select 4 layers for DPT, got {len(channels)}")
        return DPTHead(channels, channels=hc["channels"], post_process_channels=hc["post_process_channels"],
                       readout_type="project" if hc["use_cls_token"] else "ignore",
                       use_batchnorm=hc["use_batchnorm"], n_bins=hc["n_bins"],
                       n_hidden_channels=hc["n_hidden_channels"], min_depth=min_depth, max_depth=max_depth,
                       bins_strategy=hc["bins_strategy"], norm_strategy=hc["norm_strategy"])


@hookimpl
def dinobench_register_protocols(registry: ProtocolRegistry) -> None:
    """The linear and DPT depth protocols."""
    registry.add("linear_depth", "dinobench.plugins.depth:LinearDepthProtocol", version=PROTOCOL_VERSION,
                 description="official DINOv3 linear depth: frozen backbone, BN + 1x1 conv to 256 bins, SigLoss, "
                             "flip TTA, Eigen-crop metrics")
    registry.add("dpt", "dinobench.plugins.depth:DPTDepthProtocol", version=PROTOCOL_VERSION,
                 description="DPT depth head on 4 backbone layers (official DINOv3 depther), 256 bins, SigLoss")
