_base_ = ["../_base_/datasets/digits.py", "../_base_/protocols/logreg.py"]
task = dict(description="logistic regression on scikit-learn's real digits (official C grid; C chosen on 10% of train)")
