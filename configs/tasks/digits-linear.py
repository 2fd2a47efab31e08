_base_ = ["../_base_/datasets/digits.py", "../_base_/protocols/linear.py"]
# 1,437 train images: batch 128 -> 11 iterations per pass; 30 passes run in seconds on a CPU
protocol = dict(epochs=30)
task = dict(description="linear probe (lr x n_blocks heads) on scikit-learn's real digits; selected on val")
