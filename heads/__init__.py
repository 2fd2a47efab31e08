"""Task heads (pure PyTorch, CPU-runnable): linear segmentation, depth, DPT, Mask2Former, Plain-DETR."""
