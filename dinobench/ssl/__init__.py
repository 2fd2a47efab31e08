"""In-repo DINOv3 self-supervised pretraining: data, heads, losses, meta-architecture, training."""
