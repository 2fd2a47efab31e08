# Distillation: a frozen teacher (the pretrained vit_tiny run) into a smaller student with the same
# losses; the exported teacher_checkpoint.pth is the student's EMA.
_base_ = ["./vit_tiny_digits_pretrain.py"]
distillation = dict(enabled=True, checkpoint_path="outputs/train/vit_tiny_digits_pretrain",
                    teacher=dict(arch="vit_tiny", overrides=dict()),
                    students=[dict(name="small", arch="vit_tiny", drop_path_rate=0.0,
                                   overrides=dict(embed_dim=64, depth=2, num_heads=2))])
teacher = dict(warmup_teacher_temp=0.07, warmup_teacher_temp_epochs=0)
optim = dict(epochs=5)
