_base_ = ["../_base_/datasets/imagenet.py", "../_base_/protocols/linear.py"]
# official: 10 epochs x 1250 iterations of 128 images on each of 8 GPUs (lr scaled by 1024 / 256):
# one process with batch 1024 and one pass per epoch (1,281,167 // 1024 = 1251 iterations) matches it
protocol = dict(batch_size=1024, epochs=10, epoch_length=None)
task = dict(description="linear probe on ImageNet-1k cached features (official lr grid, 10 epochs); "
            "--data-root <imagenet>")
