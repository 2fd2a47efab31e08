_base_ = ["../_base_/datasets/fashion_mnist.py", "../_base_/protocols/linear.py"]
# 60,000 train images: batch 128, 10 passes = 4,680 iterations on cached features
task = dict(description="linear probe on Fashion-MNIST cached features (official lr grid, 10 epochs); "
                        "CPU: --cfg-options dataset.train_subset=10000 dataset.val_subset=2000")
