_base_ = ["../_base_/datasets/folder.py", "../_base_/protocols/linear.py"]
task = dict(description="linear probe on any ImageFolder dataset; --data-root <dir with train/ and val/>")
