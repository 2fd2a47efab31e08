_base_ = ["../_base_/datasets/fashion_mnist.py", "../_base_/protocols/knn.py"]
task = dict(description="kNN on Fashion-MNIST (Debian package dataset-fashion-mnist or --data-root); "
                        "CPU: --cfg-options dataset.train_subset=10000 dataset.val_subset=2000")
