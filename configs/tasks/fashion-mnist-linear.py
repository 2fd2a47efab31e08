_base_ = ["../_base_/datasets/fashion_mnist.py", "../_base_/protocols/linear.py"]
# 60,000 train images: batch 128, 10 passes = 4,680 iterations on cached features. No official recipe for this
# dataset: the fast named variant (cached eval-transform features, the 1- and 4-block grid)
protocol = dict(train_augmentation=False, n_last_blocks=[1, 4])
task = dict(description="linear probe on Fashion-MNIST cached features (official lr grid, 10 epochs); "
                        "CPU: --cfg-options dataset.train_subset=10000 dataset.val_subset=2000")
