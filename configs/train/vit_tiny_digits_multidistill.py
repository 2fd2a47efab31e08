# Multi-student distillation: two students of different sizes share one teacher forward pass.
# Exports teacher_checkpoint.pth (first student) and teacher_checkpoint_<name>.pth (the others).
_base_ = ["./vit_tiny_digits_distill.py"]
distillation = dict(students=[
    dict(name="small", arch="vit_tiny", drop_path_rate=0.0, overrides=dict(embed_dim=64, depth=2, num_heads=2)),
    dict(name="micro", arch="vit_tiny", drop_path_rate=0.0, overrides=dict(embed_dim=32, depth=2, num_heads=2)),
])
