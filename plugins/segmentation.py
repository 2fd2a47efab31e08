"""Linear semantic segmentation, the official DINOv3 ADE20K linear protocol.

Frozen backbone; last-layer patch tokens (backbone norm, no class token) -> Dropout2d(0.1) ->
BatchNorm -> 1x1 conv, trained with per-pixel cross-entropy (ignore index 255, averaged over all
pixels as the official loss) by :mod:`dinobench.engine`: AdamW lr 1e-3, wd 1e-3, 1500 warm-up
iterations + one-cycle cosine, 40k iterations, batch 16, random resize (0.5-2.0) crop 512 + flip.
Evaluation: sliding windows (crop 512, stride 341; or whole image), logits resized to the
original label, argmax, mIoU / aAcc / mAcc from mmseg's ``IoUMetric``
(:class:`dinobench.dense_metrics.SegmentationMetric`). Reported: the final head's metrics (the
official script reports the best of its periodic evaluations, a selection on the val set).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dinobench.errors import ConfigError
from dinobench.hookspecs import hookimpl
from dinobench.registry import ProtocolRegistry

if TYPE_CHECKING:
    from torch import nn

PROTOCOL_VERSION = "1"
HEAD_DEFAULTS = dict(layers="last", use_cls_token=False, use_batchnorm=True, use_backbone_norm=True, dropout=0.1)
INFERENCE_DEFAULTS = dict(mode="slide", crop_size=512, stride=341)


def evaluate_segmentation(model: "nn.Module", dataset: Any, num_classes: int, inference: dict[str, Any],
                          device: str = "cpu", num_workers: int = 0) -> dict[str, float]:
    """mIoU / aAcc / mAcc of ``model`` on ``dataset`` (one image at a time, original-size labels)."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from dinobench.dense_inference import dense_predict
    from dinobench.dense_metrics import SegmentationMetric

    metric = SegmentationMetric(num_classes, ignore_index=getattr(dataset, "ignore_index", 255))
    loader = DataLoader(dataset, batch_size=1, shuffle=False, num_workers=num_workers,
                        generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        for sample in tqdm(loader, desc="eval segmentation", unit="img", leave=False):
            label = sample["mask"][0]
            logits = dense_predict(model, sample["image"].to(device), mode=inference["mode"],
                                   num_outputs=num_classes, crop_size=inference["crop_size"],
                                   stride=inference["stride"], out_size=label.shape[-2:])
            metric.update(logits[0].argmax(0).cpu(), label)
    return metric.compute()


def save_segmentation_figures(model: "nn.Module", dataset: Any, num_classes: int, inference: dict[str, Any],
                              out_dir: Any, count: int, mean: Any, std: Any, device: str = "cpu") -> list[str]:
    """Colourised predicted masks of the first ``count`` val images, and one side-by-side figure
    (image | ground truth | prediction) of the first; returns the written file names."""
    import torch

    from dinobench.dense_inference import dense_predict
    from dinobench.utils.io import safe_component
    from dinobench.visualize import colorize_mask, denormalize_image, side_by_side

    written = []
    model.eval()
    with torch.no_grad():
        for index in range(min(count, len(dataset))):
            sample = dataset[index]
            label = sample["mask"]
            logits = dense_predict(model, sample["image"][None].to(device), mode=inference["mode"],
                                   num_outputs=num_classes, crop_size=inference["crop_size"],
                                   stride=inference["stride"], out_size=label.shape[-2:])
            pred = logits[0].argmax(0).cpu().numpy()
            pred_image = colorize_mask(pred, num_classes)
            name = f"{index:03d}_{safe_component(str(sample['name']))}_pred.png"
            pred_image.save(out_dir / name)
            written.append(name)
            if index == 0:
                image = denormalize_image(sample["image"].numpy(), mean, std)
                gt = colorize_mask(label.numpy(), num_classes)
                figure = side_by_side([("image", image), ("ground truth", gt), ("prediction", pred_image)],
                                      out_dir / "side_by_side.png")
                written.append(figure.name)
    return written


class LinearSegProtocol:
    """``protocol=dict(type="linear_seg", head=dict(...), inference=dict(...), num_visualizations=4)``."""

    name = "linear_seg"

    def __init__(self, cfg: dict[str, Any]) -> None:
        from dinobench.dense_inference import config_section

        self.head_cfg = config_section(cfg, "head", HEAD_DEFAULTS, "protocol")
        self.inference = config_section(cfg, "inference", INFERENCE_DEFAULTS, "protocol")
        if self.inference["mode"] not in ("whole", "slide"):
            raise ConfigError(f"protocol.inference.mode must be 'whole' or 'slide', got {self.inference['mode']!r}")
        self.num_visualizations = int(cfg.get("num_visualizations", 4))

    def run(self, ctx: Any) -> dict[str, Any]:
        """Train the linear head on ``train``, evaluate on ``val``."""
        from dinobench.data.dense_transforms import build_seg_eval_transform, build_seg_train_transform
        from dinobench.backbones.contract import backbone_normalisation
        from dinobench.dense_inference import build_dense_model, transform_sections
        from dinobench.engine import train_head
        from dinobench.heads.linear_seg import LinearSegHead, segmentation_loss

        train_set, val_set = ctx.datasets["train"], ctx.datasets["val"]
        mean, std = backbone_normalisation(ctx.backbone)
        transform = transform_sections(ctx.cfg)
        train_set.transform = build_seg_train_transform(transform["train"], mean, std)
        val_set.transform = build_seg_eval_transform(transform["eval"], mean, std)
        num_classes, ignore_index = int(train_set.num_classes), int(getattr(train_set, "ignore_index", 255))
        hc = self.head_cfg
        model = build_dense_model(ctx, lambda channels: LinearSegHead(
            channels, num_classes, dropout=hc["dropout"], use_batchnorm=hc["use_batchnorm"],
            use_cls_token=hc["use_cls_token"]), hc["layers"], hc["use_backbone_norm"])
        workers = int(ctx.cfg.get("train", {}).get("num_workers", 0))

        def loss_fn(net: "nn.Module", batch: dict[str, Any], iteration: int):
            return segmentation_loss(net(batch["image"]), batch["mask"], ignore_index), {}

        def evaluate(net: "nn.Module") -> dict[str, float]:
            return evaluate_segmentation(net, val_set, num_classes, self.inference, ctx.device, workers)

        summary = train_head(ctx, model, train_set, loss_fn, evaluate)
        if ctx.predictions_dir is not None and self.num_visualizations > 0:
            save_segmentation_figures(model, val_set, num_classes, self.inference, ctx.predictions_dir,
                                      self.num_visualizations, mean, std, ctx.device)
        return {"metrics": summary["metrics"], "main_metric": "mIoU", "higher_is_better": True}


@hookimpl
def dinobench_register_protocols(registry: ProtocolRegistry) -> None:
    """The linear segmentation protocol."""
    registry.add("linear_seg", "dinobench.plugins.segmentation:LinearSegProtocol", version=PROTOCOL_VERSION,
                 description="official DINOv3 linear segmentation: frozen backbone, BN + 1x1 conv head, "
                             "slide inference, mmseg mIoU")
