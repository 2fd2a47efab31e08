_base_ = ["../_base_/datasets/imagenet.py", "../_base_/protocols/linear.py"]
# official: 10 epochs x 1250 iterations of 128 images on each of 8 GPUs (lr scaled by 1024 / 256):
# one process with batch 1024 and one pass per epoch (1,281,167 // 1024 = 1251 iterations) matches it
# (dinov3/eval/linear.py:89 batch_size=128 per GPU, :97-98 epochs=10, epoch_length=1250). Every other default of
# the protocol is the official one (n_last_blocks (1,), on-the-fly RandomResizedCrop + flip). Faster named variant:
# --cfg-options protocol.train_augmentation=false (cached features); DINOv2's grid: protocol.n_last_blocks=[1,4].
protocol = dict(batch_size=1024, epochs=10, epoch_length=None)
task = dict(description="linear probe on ImageNet-1k (official DINOv3 recipe: on-the-fly augmentation, lr grid, "
            "10 epochs); --data-root <imagenet>",
            official="dinov3/eval/linear.py")
