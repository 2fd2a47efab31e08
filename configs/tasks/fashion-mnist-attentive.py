_base_ = ["../_base_/datasets/fashion_mnist.py", "../_base_/protocols/attentive.py"]
task = dict(description="attentive probe on Fashion-MNIST patch tokens (60k train / 10k test); lr selected on val")
train = dict(max_iters=4700, batch_size=256, scheduler=dict(warmup_iters=230))  # 20 passes over 60k images
