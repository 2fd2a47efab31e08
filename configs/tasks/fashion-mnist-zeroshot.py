_base_ = ["../_base_/datasets/fashion_mnist.py", "../_base_/protocols/zeroshot.py"]
task = dict(description="dino.txt zero-shot classification on Fashion-MNIST (Debian package dataset-fashion-mnist "
                        "or --data-root); CPU: --cfg-options dataset.val_subset=2000")
