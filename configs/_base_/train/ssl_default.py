# DINOv3 SSL defaults (official ssl_default_config, adapted to dinobench's config layout).
# Epochs are in units of `train.epoch_length` iterations (the official OFFICIAL_EPOCH_LENGTH);
# `epoch_length=None` means one pass over the dataset.
# `overrides`: create_backbone constructor arguments on top of the named variant (official names)
student = dict(arch="vitl16", drop_path_rate=0.3, overrides=dict())
teacher = dict(momentum_teacher=0.992, final_momentum_teacher=1.0, warmup_teacher_temp=0.04, teacher_temp=0.07,
               warmup_teacher_temp_epochs=30)
dino = dict(loss_weight=1.0, global_ignore_diagonal=True, head_n_prototypes=65536, head_bottleneck_dim=256,
            head_nlayers=3, head_hidden_dim=2048, head_norm_last_layer=False, koleo_loss_weight=0.1,
            koleo_loss_distributed=False)
ibot = dict(loss_weight=1.0, mask_sample_probability=0.5, mask_ratio_min_max=[0.1, 0.5], head_n_prototypes=65536,
            head_bottleneck_dim=256, head_nlayers=3, head_hidden_dim=2048, head_norm_last_layer=False)
gram = dict(use_loss=False, loss_weight=1.0, it_start=0, ema_teacher=False, ckpt=None, it_load_ema_teacher=-1,
            rep_update=True, update_frequency=50000, it_first_update=0, max_updates=None, normalized=True,
            img_level=False, remove_neg=False, remove_only_teacher_neg=False,
            global_teacher_resize_method="bicubic", global_teacher_resize_antialias=False)
distillation = dict(enabled=False, checkpoint_path=None, teacher=dict(arch=None, overrides=dict()), students=[])
init = dict(from_teacher_checkpoint=None)
optim = dict(epochs=100, weight_decay=0.04, weight_decay_end=0.4, lr=0.001, warmup_epochs=10, min_lr=1.0e-06,
             clip_grad=3.0, freeze_last_layer_epochs=1, scaling_rule="sqrt_wrt_1024", patch_embed_lr_mult=0.2,
             dino_head_wd_multiplier=1.0, layerwise_decay=0.9, adamw_beta1=0.9, adamw_beta2=0.999)
crops = dict(global_crops_scale=[0.32, 1.0], local_crops_number=8, local_crops_scale=[0.05, 0.32],
             global_crops_size=224, local_crops_size=96, gram_teacher_crops_size=None,
             rgb_mean=[0.485, 0.456, 0.406], rgb_std=[0.229, 0.224, 0.225])
train = dict(dataset=dict(type="imagenet"), data_root=None, batch_size_per_gpu=64, epoch_length=1250, seed=0,
             num_workers=10, device="auto", parallel="ddp", centering="sinkhorn_knopp")
compute_precision = dict(autocast_dtype="bf16")
checkpointing = dict(period=3750, max_to_keep=3)
