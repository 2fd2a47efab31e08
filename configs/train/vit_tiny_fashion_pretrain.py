# The toy recipe of vit_tiny_digits_pretrain.py on real Fashion-MNIST (Debian package
# dataset-fashion-mnist, or train.data_root / --data-root with the four *-ubyte.gz files): the same
# 220 iterations of batch 64, drawn from all 60k training images (epoch_length caps an "epoch").
_base_ = ["./vit_tiny_digits_pretrain.py"]
train = dict(dataset=dict(_delete_=True, type="fashion_mnist", root=None, train_subset=None, val_subset=None,
                          subset_seed=0), epoch_length=22)
