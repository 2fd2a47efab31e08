_base_ = ["../_base_/datasets/folder.py", "../_base_/protocols/attentive.py"]
task = dict(description="attentive probe on any ImageFolder dataset; --data-root <dir with train/ and val/>")
