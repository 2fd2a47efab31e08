"""Mask2Former semantic segmentation on a frozen backbone, as released with DINOv3 - and trainable.

- :func:`build_m2f_segmentor` - ViT-Adapter + Mask2Former with the official state-dict keys;
- :func:`ms_deform_attn` - multi-scale deformable attention in pure PyTorch (autograd, chunked);
- :class:`M2FCriterion` / :class:`HungarianMatcher` - the Mask2Former training losses.
"""

from dinobench.heads.mask2former.criterion import HungarianMatcher, M2FCriterion, semantic_targets
from dinobench.heads.mask2former.deform_attn import MSDeformAttn, ms_deform_attn
from dinobench.heads.mask2former.segmentor import (BACKBONE_PREFIX, M2FSegmentor, Mask2FormerHead,
                                                   build_m2f_segmentor, semantic_inference)

__all__ = ["BACKBONE_PREFIX", "HungarianMatcher", "M2FCriterion", "M2FSegmentor", "MSDeformAttn", "Mask2FormerHead",
           "build_m2f_segmentor", "ms_deform_attn", "semantic_inference", "semantic_targets"]
