"""DINOv3 self-supervised learning parts: multi-crop augmentation, masking, collation, DINO/iBOT heads,
losses and the meta-architecture. The training loop that drives them is :mod:`dinobench.training.ssl`."""
