# High-resolution adaptation (DINOv3 phase 3): resume from the pretrained (or Gram-anchored) teacher
# and train briefly on larger crops, with Gram anchoring at the new resolution.
_base_ = ["./vit_tiny_digits_gram.py"]
init = dict(from_teacher_checkpoint="outputs/train/vit_tiny_digits_gram")
gram = dict(ckpt="outputs/train/vit_tiny_digits_gram")
crops = dict(global_crops_size=96, local_crops_size=48, gram_teacher_crops_size=192)
train = dict(batch_size_per_gpu=32)
optim = dict(epochs=1, lr=0.0001)
