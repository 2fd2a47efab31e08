_base_ = ["../_base_/datasets/digits.py", "../_base_/protocols/linear.py"]
# 1,437 train images: batch 128 -> 11 iterations per pass; 30 passes run in seconds on a CPU. No official recipe
# for this dataset: the fast named variant (cached eval-transform features, the 1- and 4-block grid)
protocol = dict(epochs=30, train_augmentation=False, n_last_blocks=[1, 4])
task = dict(description="linear probe (lr x n_blocks heads) on scikit-learn's real digits; selected on val")
