"""An example learning-rate schedule, added to dinobench's engine through ``dinobench_register_schedules``."""


def step_down(cfg, base_lr, iteration, total):
    """``base_lr`` until ``at`` of the run, then ``base_lr * factor`` (a pure function of the step: exact resume)."""
    return {"lr": base_lr * (cfg["factor"] if iteration >= cfg["at"] * total else 1.0)}
