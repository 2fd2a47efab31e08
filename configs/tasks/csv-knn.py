_base_ = ["../_base_/datasets/csv.py", "../_base_/protocols/knn.py"]
task = dict(description="kNN on images listed in CSV manifests; --data-root <dir with train.csv and val.csv>")
