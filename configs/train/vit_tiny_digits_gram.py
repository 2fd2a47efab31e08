# Gram anchoring (DINOv3 phase 2) on top of vit_tiny_digits_pretrain: training continues from the
# pretrained teacher with an extra Gram loss towards a frozen Gram teacher (the pretrained
# teacher, optionally refreshed from the EMA teacher every `gram.update_frequency` iterations)
# that sees the same global crops at twice the resolution, its features resized to the student grid.
_base_ = ["./vit_tiny_digits_pretrain.py"]
init = dict(from_teacher_checkpoint="outputs/train/vit_tiny_digits_pretrain")
gram = dict(use_loss=True, ckpt="outputs/train/vit_tiny_digits_pretrain", loss_weight=2.0, rep_update=True,
            update_frequency=100, it_first_update=0, img_level=False, normalized=True)
crops = dict(gram_teacher_crops_size=64)  # the Gram teacher at 2x the global crops, as DINOv3
teacher = dict(warmup_teacher_temp=0.07, warmup_teacher_temp_epochs=0)
optim = dict(epochs=3, lr=0.0002, warmup_epochs=0, freeze_last_layer_epochs=0)
