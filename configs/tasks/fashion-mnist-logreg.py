_base_ = ["../_base_/datasets/fashion_mnist.py", "../_base_/protocols/logreg.py"]
task = dict(description="logistic regression on Fashion-MNIST (official C grid; C chosen on 10% of train); "
                        "CPU: --cfg-options dataset.train_subset=10000 dataset.val_subset=2000")
