_base_ = ["../_base_/datasets/digits.py", "../_base_/protocols/knn.py"]
task = dict(description="kNN on scikit-learn's real digits (no download)")
