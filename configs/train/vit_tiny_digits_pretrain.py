# Toy-scale DINOv3 pretraining on scikit-learn's real 8x8 digits: a few CPU minutes, visibly learns.
# The demo and the "it learns" test use it. Patch 4 on 32 px global crops -> 8x8 token grid.
_base_ = ["../_base_/train/ssl_default.py"]
student = dict(arch="vit_tiny", drop_path_rate=0.0,
               overrides=dict(patch_size=4, embed_dim=96, depth=4, num_heads=3, n_storage_tokens=4,
                              layerscale_init=None, pos_embed_rope_rescale_coords=None))
teacher = dict(momentum_teacher=0.99, warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=5)
dino = dict(head_n_prototypes=1024, head_bottleneck_dim=64, head_hidden_dim=256, koleo_loss_weight=0.1)
ibot = dict(head_n_prototypes=1024, head_bottleneck_dim=64, head_hidden_dim=256)
optim = dict(epochs=30, lr=0.0005, min_lr=1e-6, warmup_epochs=3, weight_decay=0.04, weight_decay_end=0.2,
             scaling_rule="none", layerwise_decay=1.0, patch_embed_lr_mult=1.0, freeze_last_layer_epochs=1)
crops = dict(global_crops_size=32, local_crops_size=16, local_crops_number=4, global_crops_scale=[0.5, 1.0],
             local_crops_scale=[0.2, 0.5])
train = dict(dataset=dict(type="digits", val_fraction=0.2, split_seed=0), batch_size_per_gpu=64, epoch_length=None,
             num_workers=0, device="cpu")
checkpointing = dict(period=50, max_to_keep=2)
