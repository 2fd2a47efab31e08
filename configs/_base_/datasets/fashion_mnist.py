# Fashion-MNIST (28x28 grey, 10 classes): train = 60k training set, val = official 10k test set.
# Files: the Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist) or --data-root DIR
# with the four *-ubyte.gz idx files. Defaults are the full splits; on a CPU take seeded stratified
# subsets: --cfg-options dataset.train_subset=10000 dataset.val_subset=2000
dataset = dict(type="fashion_mnist", root=None, train_subset=None, val_subset=None, subset_seed=0)
# 28x28 -> 64x64 (bilinear): a multiple of both 8 and 16, so patch-8 and patch-16 backbones see
# 8x8 / 4x4 token grids without cropping away image borders (as digits-* does).
transform = dict(resize=64, crop=64, interpolation="bilinear")
