_base_ = ["../_base_/datasets/folder.py", "../_base_/protocols/knn.py"]
task = dict(description="kNN on any ImageFolder dataset; --data-root <dir with train/ and val/>")
