_base_ = ["../_base_/datasets/csv.py", "../_base_/protocols/logreg.py"]
task = dict(description="logistic regression on images listed in CSV manifests; "
                        "--data-root <dir with train.csv and val.csv>")
