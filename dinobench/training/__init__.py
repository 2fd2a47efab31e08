"""The one training engine (head training and SSL pretraining): loop, checkpoints, schedules, distributed."""
