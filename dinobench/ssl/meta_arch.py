"""The DINOv3 SSL meta-architecture: students, teacher (EMA or frozen), Gram teacher, total loss.

``loss = w_dino * DINO(global + local) + w_koleo * KoLeo(student global CLS) + w_ibot * iBOT
+ w_gram(iter) * Gram``. Modes: ``ssl`` (teacher = EMA of the one student) and ``distillation``
(teacher = a frozen checkpoint; one or several students share one teacher pass).
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dinobench.utils.distributed import full_state_dict, reshard
from dinobench.ssl.heads import DINOHead
from dinobench.ssl.losses import DINOLoss, GramLoss, IBOTPatchLoss, KoLeoLoss, KoLeoLossDistributed

logger = logging.getLogger("dinobench")


def _local_shard(param: Tensor, partner: Tensor, name: str) -> Tensor:
    """``param``'s local shard (itself when not a DTensor); ``partner`` must be sharded alike."""
    from torch.distributed.tensor import DTensor

    if isinstance(param, DTensor) != isinstance(partner, DTensor):
        raise RuntimeError(f"EMA update: {name} is sharded on one side only; shard the EMA like the student")
    if isinstance(param, DTensor):
        if param.placements != partner.placements:
            raise RuntimeError(f"EMA update: {name} has placements {param.placements} vs {partner.placements}")
        return param.to_local()
    return param


class Student(nn.Module):
    """Backbone + DINO head (CLS) + iBOT head (patches); ``forward`` is what DDP wraps."""

    def __init__(self, backbone: nn.Module, head_cfg: dict[str, Any], ibot_cfg: dict[str, Any]) -> None:
        super().__init__()
        self.backbone = backbone
        dim = backbone.embed_dim
        self.dino_head, self.ibot_head = (
            DINOHead(dim, c["head_n_prototypes"], hidden_dim=c["head_hidden_dim"], bottleneck_dim=c["head_bottleneck_dim"],
                     nlayers=c["head_nlayers"], norm_last_layer=c.get("head_norm_last_layer", False))
            for c in (head_cfg, ibot_cfg))
        self.dino_head.init_weights()
        self.ibot_head.init_weights()

    def forward(self, global_crops: Tensor, local_crops: Tensor, masks: Tensor | None,
                mask_indices_list: Tensor) -> dict[str, Tensor]:
        """Student outputs for ``[n*B, C, H, W]`` global and local crops (masks apply to globals)."""
        global_out, local_out = self.backbone.forward_features([global_crops, local_crops], masks=[masks, None])
        g_patch = global_out["x_norm_patchtokens"]
        masked_pre_head = torch.index_select(g_patch.flatten(0, 1), 0, mask_indices_list)
        cls = torch.cat([global_out["x_norm_clstoken"], local_out["x_norm_clstoken"]])
        cls_after_head = self.dino_head(cls)
        n_global = global_crops.shape[0]
        return {
            "global_cls_pre_head": global_out["x_norm_clstoken"],
            "global_patch_pre_head": g_patch,
            "global_cls_after_head": cls_after_head[:n_global],
            "local_cls_after_head": cls_after_head[n_global:],
            "masked_patch_after_head": self.ibot_head(masked_pre_head),
        }


class SSLMetaArch(nn.Module):
    """Students, their EMA copies, the teacher and the Gram teacher, with the loss computation."""

    def __init__(self, cfg: dict[str, Any], build_backbone: Callable[[dict[str, Any]], nn.Module],
                 teacher_state: dict[str, Tensor] | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.distillation = bool(cfg.get("distillation", {}).get("enabled"))
        student_cfgs = cfg["distillation"]["students"] if self.distillation else [cfg["student"]]
        self.students = nn.ModuleDict({s.get("name", "student"): Student(build_backbone(s), cfg["dino"], cfg["ibot"])
                                       for s in student_cfgs})
        self.emas = copy.deepcopy(self.students).requires_grad_(False)
        if self.distillation:
            teacher_cfg = {**cfg["distillation"]["teacher"], "drop_path_rate": 0.0}
            self.frozen_teacher = Student(build_backbone(teacher_cfg), cfg["dino"], cfg["ibot"]).requires_grad_(False)
            if teacher_state is None:
                raise ValueError("distillation needs distillation.checkpoint_path (a dinobench training checkpoint)")
            self.frozen_teacher.load_state_dict(teacher_state)
            for name, student in self.students.items():
                if student.backbone.patch_size != self.frozen_teacher.backbone.patch_size:
                    raise ValueError(f"distillation: student {name!r} has patch size {student.backbone.patch_size} "
                                     f"but the teacher {self.frozen_teacher.backbone.patch_size}; they must match")
        gram = cfg.get("gram", {})
        self.gram_use_loss = bool(gram.get("use_loss"))
        self.gram_teacher = copy.deepcopy(self.teacher.backbone).requires_grad_(False) if self.gram_use_loss else None
        self.gram_teacher_initialized = False
        n_protos = cfg["dino"]["head_n_prototypes"]
        self.dino_loss = DINOLoss(n_protos)
        self.ibot_patch_loss = IBOTPatchLoss(cfg["ibot"]["head_n_prototypes"])
        self.koleo_loss = KoLeoLossDistributed() if cfg["dino"].get("koleo_loss_distributed") else KoLeoLoss()
        self.gram_loss = GramLoss(apply_norm=gram.get("normalized", True), img_level=gram.get("img_level", False),
                                  remove_neg=gram.get("remove_neg", False),
                                  remove_only_teacher_neg=gram.get("remove_only_teacher_neg", False))
        self.runners: dict[str, nn.Module] = dict(self.students)  # replaced by DDP wrappers when distributed

    @property
    def teacher(self) -> Student:
        """The module whose outputs are the targets: frozen checkpoint, or EMA of the student."""
        return self.frozen_teacher if self.distillation else next(iter(self.emas.values()))

    def train(self, mode: bool = True) -> "SSLMetaArch":  # teachers always stay in eval mode
        super().train(mode)
        self.emas.eval()
        if self.distillation:
            self.frozen_teacher.eval()
        if self.gram_teacher is not None:
            self.gram_teacher.eval()
        return self

    # ------------------------------------------------------------------ teacher side
    @torch.no_grad()
    def teacher_targets(self, global_crops: Tensor, mask_indices_list: Tensor, n_masked: Tensor,
                        teacher_temp: float, n_global: int) -> dict[str, Tensor]:
        """Sinkhorn-Knopp-centred teacher probabilities for CLS tokens and masked patches."""
        out = self.teacher.backbone.forward_features(global_crops)
        cls_after_head = self.teacher.dino_head(out["x_norm_clstoken"])
        patches = out["x_norm_patchtokens"]
        masked_after_head = self.teacher.ibot_head(torch.index_select(patches.flatten(0, 1), 0, mask_indices_list))
        if self.cfg["train"].get("centering", "sinkhorn_knopp") == "sinkhorn_knopp":
            cls_centered = self.dino_loss.sinkhorn_knopp_teacher(cls_after_head, teacher_temp=teacher_temp)
            masked_centered = self.ibot_patch_loss.sinkhorn_knopp_teacher(
                masked_after_head, teacher_temp=teacher_temp, n_masked_patches_tensor=n_masked)
        else:  # "softmax": DINOv1/v2 EMA-centred softmax (centre momentum 0.9)
            cls_centered = self.dino_loss.softmax_center_teacher(cls_after_head, teacher_temp=teacher_temp)
            masked_centered = self.ibot_patch_loss.softmax_center_teacher(
                masked_after_head.unsqueeze(0), teacher_temp=teacher_temp).squeeze(0)
            # update the centres now (the official defers it to the next step: same values), so
            # that a checkpoint never holds a pending update and resuming stays exact
            for loss, out in ((self.dino_loss, cls_after_head), (self.ibot_patch_loss, masked_after_head.unsqueeze(0))):
                loss.update_center(out)
                loss.apply_center_update()
        reshard(self.teacher)  # FSDP2: free the gathered teacher weights (no backward would)
        return {"cls_centered": cls_centered.unflatten(0, (n_global, -1)), "masked_patch_centered": masked_centered,
                "patch_pre_head": patches}

    @torch.no_grad()
    def gram_targets(self, gram_crops: Tensor | None, student_patches: Tensor, teacher: dict[str, Tensor],
                     student_grid: tuple[int, int]) -> Tensor:
        """Gram-teacher patch features at the student's grid (higher-resolution crops are resized)."""
        if self.cfg["gram"].get("ema_teacher"):
            return teacher["patch_pre_head"]
        if not self.gram_teacher_initialized:
            raise RuntimeError("the Gram teacher is not initialised: set gram.ckpt or gram.it_load_ema_teacher")
        crops = gram_crops if gram_crops is not None else None
        if crops is None:
            raise RuntimeError("Gram loss needs crops.gram_teacher_crops_size when the Gram teacher is not the EMA")
        feats = self.gram_teacher.forward_features(crops)["x_norm_patchtokens"]
        if feats.shape[1] != student_patches.shape[1]:
            grid = crops.shape[-1] // self.gram_teacher.patch_size
            maps = feats.transpose(1, 2).unflatten(-1, (grid, grid))
            maps = F.interpolate(maps, size=student_grid, mode=self.cfg["gram"].get("global_teacher_resize_method",
                                                                                      "bicubic"),
                                 align_corners=False,
                                 antialias=self.cfg["gram"].get("global_teacher_resize_antialias", False))
            feats = maps.flatten(2).transpose(1, 2)
        return feats

    # ------------------------------------------------------------------ losses
    def forward_backward(self, data: dict[str, Any], teacher_temp: float, gram_weight: float = 0.0,
                         ) -> tuple[Tensor, dict[str, float]]:
        """One step's forward passes and backward; returns (total loss, per-term metrics)."""
        n_global, n_local = 2, self.cfg["crops"]["local_crops_number"]
        global_crops, local_crops = data["collated_global_crops"], data["collated_local_crops"]
        batch = global_crops.shape[0] // n_global
        masks, idx = data["collated_masks"], data["mask_indices_list"]
        teacher = self.teacher_targets(global_crops, idx, data["n_masked_patches"], teacher_temp, n_global)
        total: Tensor = torch.zeros(())
        metrics: dict[str, float] = {}
        for name, runner in self.runners.items():
            out = runner(global_crops, local_crops, None if self.distillation else masks, idx)
            loss, terms = self._student_loss(out, teacher, data, batch, n_global, n_local, gram_weight)
            total = total + loss
            prefix = "" if len(self.runners) == 1 else f"{name}/"
            metrics.update({prefix + k: v for k, v in terms.items()})
        total.backward()
        metrics["total_loss"] = float(total.detach())
        return total.detach(), metrics

    def _student_loss(self, out: dict[str, Tensor], teacher: dict[str, Tensor], data: dict[str, Any], batch: int,
                      n_global: int, n_local: int, gram_weight: float) -> tuple[Tensor, dict[str, float]]:
        dino, ibot = self.cfg["dino"], self.cfg["ibot"]
        ignore_diag = dino.get("global_ignore_diagonal", True)
        global_terms = n_global * (n_global - 1) if ignore_diag else n_global**2
        local_terms = n_global * n_local
        local_loss = self.dino_loss(out["local_cls_after_head"].unflatten(0, (n_local, batch)), teacher["cls_centered"])
        global_loss = self.dino_loss(out["global_cls_after_head"].unflatten(0, (n_global, batch)),
                                     teacher["cls_centered"], ignore_diagonal=ignore_diag)
        koleo = sum(self.koleo_loss(x) for x in out["global_cls_pre_head"].unflatten(0, (n_global, batch))) / n_global
        ibot_loss = self.ibot_patch_loss.forward_masked(
            out["masked_patch_after_head"], teacher["masked_patch_centered"], student_masks_flat=data["collated_masks"],
            n_masked_patches=data["mask_indices_list"].shape[0], masks_weight=data["masks_weight"])
        loss = dino["loss_weight"] * (local_terms * local_loss + global_terms * global_loss) / (global_terms + local_terms)
        loss = loss + dino["koleo_loss_weight"] * n_global * koleo + ibot["loss_weight"] * ibot_loss
        terms = {"dino_local_crops_loss": local_loss.item(), "dino_global_crops_loss": global_loss.item(),
                 "koleo_loss": koleo.item(), "ibot_loss": ibot_loss.item()}
        if self.gram_use_loss and gram_weight > 0:
            grid_h = data["collated_global_crops"].shape[-2] // self.teacher.backbone.patch_size
            grid_w = data["collated_global_crops"].shape[-1] // self.teacher.backbone.patch_size
            target = self.gram_targets(data.get("collated_gram_teacher_crops"), out["global_patch_pre_head"], teacher,
                                       (grid_h, grid_w))
            gram = self.gram_loss(out["global_patch_pre_head"], target, img_level=self.cfg["gram"].get("img_level", False))
            loss = loss + gram_weight * gram
            terms.update(gram_loss=gram.item(), gram_loss_weight=gram_weight)
        return loss, terms

    # ------------------------------------------------------------------ teacher updates
    @torch.no_grad()
    def update_ema(self, momentum: float) -> None:
        """teacher <- m * teacher + (1 - m) * student, for every student/EMA pair.

        Under FSDP2 each EMA is sharded like its student, so the update runs on the local shards
        (no communication); a sharded student with an unsharded EMA (or vice versa) is refused.
        """
        ema_params, student_params = [], []
        for name, student in self.students.items():
            for (key, ema_p), student_p in zip(self.emas[name].named_parameters(), student.parameters(), strict=True):
                ema_params.append(_local_shard(ema_p, student_p, f"{name}.{key}"))
                student_params.append(_local_shard(student_p, ema_p, f"{name}.{key}"))
        torch._foreach_mul_(ema_params, momentum)
        torch._foreach_add_(ema_params, student_params, alpha=1 - momentum)

    @torch.no_grad()
    def load_gram_from_teacher(self) -> None:
        """(Re)initialise the frozen Gram teacher from the current teacher backbone (gathered when sharded)."""
        if self.gram_teacher is None:
            return
        self.gram_teacher.load_state_dict(full_state_dict(self.teacher.backbone, all_ranks=True))
        self.gram_teacher_initialized = True
        logger.info("Gram teacher refreshed from the EMA teacher")

    def export_backbones(self) -> dict[str, nn.Module]:
        """Backbones to publish: the EMA teacher (ssl) or each student's EMA (distillation)."""
        return {name: ema.backbone for name, ema in self.emas.items()}
