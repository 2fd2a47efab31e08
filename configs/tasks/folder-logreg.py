_base_ = ["../_base_/datasets/folder.py", "../_base_/protocols/logreg.py"]
task = dict(description="logistic regression on any ImageFolder dataset; --data-root <dir with train/ and val/>")
