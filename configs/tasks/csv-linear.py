_base_ = ["../_base_/datasets/csv.py", "../_base_/protocols/linear.py"]
task = dict(description="linear probe on images listed in CSV manifests; --data-root <dir with train.csv and val.csv>")
