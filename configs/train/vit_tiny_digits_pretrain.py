# Toy-scale DINOv3 pretraining on scikit-learn's real 8x8 digits (upscaled): a few CPU minutes,
# visibly learns. The demo and the "it learns" test use it. vit_tiny's defaults (patch 8,
# dim 128, depth 4) on 32 px global / 16 px local crops -> 4x4 / 2x2 token grids (the 8x8 digits hold no more
# detail, and 64/32 px cost 2.5x the compute: benchmarks/train_step.py), one
# augmentation worker (the loop gives it its own core); the exported teacher loads with
# `--backbone vit_tiny --weights <run>/teacher_checkpoint.pth` and evaluates at the tasks' 64 px.
_base_ = ["../_base_/train/ssl_default.py"]
student = dict(arch="vit_tiny", drop_path_rate=0.0, overrides=dict())
teacher = dict(momentum_teacher=0.99, warmup_teacher_temp=0.04, teacher_temp=0.04, warmup_teacher_temp_epochs=3)
# Toy-scale choices (measured with benchmarks/ssl_digits.py): cosine prototypes behind a 1-layer
# head, EMA-centred softmax teacher (Sinkhorn-Knopp targets stay near-uniform at this scale), a
# stronger KoLeo term; DINOv3's defaults are in configs/_base_/train/ssl_default.py.
dino = dict(head_n_prototypes=1024, head_bottleneck_dim=64, head_hidden_dim=256, head_nlayers=1,
            koleo_loss_weight=0.3, head_norm_last_layer=True)
ibot = dict(head_n_prototypes=1024, head_bottleneck_dim=64, head_hidden_dim=256, head_nlayers=1,
            head_norm_last_layer=True)
optim = dict(epochs=10, lr=0.002, min_lr=1e-5, warmup_epochs=1, weight_decay=0.04, weight_decay_end=0.2,
             scaling_rule="none", layerwise_decay=1.0, patch_embed_lr_mult=1.0, freeze_last_layer_epochs=1)
crops = dict(global_crops_size=32, local_crops_size=16, local_crops_number=4, global_crops_scale=[0.4, 1.0],
             local_crops_scale=[0.1, 0.4])
train = dict(dataset=dict(type="digits", val_fraction=0.2, split_seed=0), batch_size_per_gpu=64, epoch_length=None,
             num_workers=1, device="cpu", centering="softmax")
checkpointing = dict(period=50, max_to_keep=2)
