"""Learning-rate schedules as a small registry: each is a pure function of the iteration.

``schedule_at(cfg, base_lr, iteration, total)`` looks ``cfg["type"]`` up and returns the lr (and
AdamW's beta1 when the schedule drives it) of ``iteration`` out of ``total``. Built in:
``warmup_one_cycle`` (DINOv3's ``WarmupOneCycleLR`` for dense heads), ``poly``, ``cosine``, ``step`` and
``constant``, all but the first with a linear warm-up over ``warmup_iters`` from ``base * warmup_ratio``.
A plugin adds one with :func:`register_schedule`; every schedule declares its keys and their defaults,
so that :func:`scheduler_config` can fill them in and refuse a typo with the closest valid key.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from dinobench.errors import ConfigError
from dinobench.registry import install_entries, resolve_object

ScheduleFn = Callable[[dict[str, Any], float, int, int], dict[str, float]]
#: keys every schedule understands (linear warm-up)
COMMON_DEFAULTS: dict[str, Any] = {"warmup_iters": 0, "warmup_ratio": 0.0}


@dataclass(frozen=True)
class ScheduleSpec:
    """A registered schedule: its function and the defaults of its own keys."""

    fn: ScheduleFn
    defaults: dict[str, Any]


SCHEDULES: dict[str, ScheduleSpec] = {}


def register_schedule(name: str, **defaults: Any) -> Callable[[ScheduleFn], ScheduleFn]:
    """Decorator: register ``fn(cfg, base_lr, iteration, total) -> {"lr": ..., ...}`` as schedule ``name``
    with the defaults of its keys (besides ``type``, ``warmup_iters`` and ``warmup_ratio``)."""
    def add(fn: ScheduleFn) -> ScheduleFn:
        SCHEDULES[name] = ScheduleSpec(fn, dict(defaults))
        return fn
    return add


#: name -> the registry entry it was installed from (a plugin's schedule, see :func:`use_registered`)
_INSTALLED: dict[str, Any] = {}


def use_registered(entries: Iterable[Any]) -> None:
    """Make the schedules plugins registered (``dinobench_register_schedules``: entries with ``name``, ``fn`` as a
    callable or ``"module:attr"``, ``defaults``, ``source``) available to ``train.scheduler.type``; the function is
    imported on first use. The engine never asks the plugin manager: the runner hands the entries over."""
    install_entries(SCHEDULES, _INSTALLED, entries, "schedule",
                    lambda entry: ScheduleSpec(_lazy(entry.fn), dict(entry.defaults)))


def _lazy(target: Any) -> ScheduleFn:
    def call(cfg: dict[str, Any], base_lr: float, iteration: int, total: int) -> dict[str, float]:
        return resolve_object(target)(cfg, base_lr, iteration, total)
    return call


def _known_keys() -> list[str]:
    keys = {"type", *COMMON_DEFAULTS}
    for spec in SCHEDULES.values():
        keys.update(spec.defaults)
    return sorted(keys)


def _spec(kind: Any) -> ScheduleSpec:
    if kind not in SCHEDULES:
        raise ConfigError(f"train.scheduler.type: unknown schedule {kind!r}; expected one of {', '.join(SCHEDULES)}")
    return SCHEDULES[kind]


def scheduler_config(section: dict[str, Any] | None, default_type: str = "constant") -> dict[str, Any]:
    """``train.scheduler`` with the defaults of its type filled in. A key no registered schedule knows is
    a one-line ConfigError naming the closest valid key (keys of another schedule are tolerated, so that
    switching ``type`` from the command line keeps working)."""
    section = dict(section or {})
    kind = section.get("type", default_type)
    spec = _spec(kind)
    known = _known_keys()
    for key in section:
        if key not in known:
            match = difflib.get_close_matches(key, known, n=1, cutoff=0.4)
            hint = f"did you mean {match[0]}?" if match else f"known: {', '.join(known)}"
            raise ConfigError(f"train.scheduler.{key}: unknown key ({hint})")
    return {"type": kind, **COMMON_DEFAULTS, **spec.defaults, **section}


def schedule_at(cfg: dict[str, Any], base_lr: float, iteration: int, total: int) -> dict[str, float]:
    """lr (and ``beta1`` when the schedule drives it) at ``iteration`` of ``total``; a pure function.

    Missing keys take their registered defaults; an unknown ``type`` is a ConfigError.
    """
    spec = _spec(cfg.get("type", "warmup_one_cycle"))
    full = {**COMMON_DEFAULTS, **spec.defaults, **cfg}
    return spec.fn(full, float(base_lr), int(iteration), max(int(total), 1))


def _anneal(start: float, end: float, pct: float, strategy: str) -> float:
    if strategy == "cos":
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
    return start + (end - start) * pct


def _linear_warmup(cfg: dict[str, Any], base_lr: float, t: int) -> dict[str, float] | None:
    """The warm-up value at ``t`` (None once warm-up is over)."""
    warmup, ratio = int(cfg["warmup_iters"]), float(cfg["warmup_ratio"] or 0.0)
    if t < warmup:
        return {"lr": base_lr * (ratio + (1 - ratio) * t / warmup)}
    return None


def _progress(cfg: dict[str, Any], t: int, total: int) -> float:
    warmup = int(cfg["warmup_iters"])
    return (t - warmup) / max(total - warmup, 1)


@register_schedule("warmup_one_cycle", div_factor=25.0, final_div_factor=None, anneal_strategy="cos",
                   use_beta1=False, base_momentum=0.85, max_momentum=0.95)
def warmup_one_cycle(cfg: dict[str, Any], base_lr: float, t: int, total: int) -> dict[str, float]:
    """The official DINOv3 ``WarmupOneCycleLR`` for dense heads (step ``t`` = iteration ``t``).

    During ``warmup_iters`` W with ``warmup_ratio`` r: ``lr = base * (1 - (1 - t/W)(1 - r)) * (1 - t/T)``;
    without r: ``lr = base/fdf + base (1 + cos(pi t/T))/2 * t/W``; then ``anneal_strategy`` (``cos``)
    from ``base`` to ``base / div_factor / fdf`` at ``(t+1)/T`` (``final_div_factor`` None: to 0).
    ``use_beta1``: AdamW's beta1 is 0 during warm-up, then annealed from ``base_momentum`` to
    ``max_momentum`` (as the official code does).
    """
    warmup, ratio = int(cfg["warmup_iters"]), float(cfg["warmup_ratio"] or 0.0)
    fdf = math.inf if cfg["final_div_factor"] is None else float(cfg["final_div_factor"])
    min_lr = base_lr / float(cfg["div_factor"]) / fdf
    strategy = cfg["anneal_strategy"]
    if t < warmup:
        if ratio:
            k = (1 - t / warmup) * (1 - ratio)
            lr = base_lr * (1 - k) * (1 - t / total)
        else:
            lr = base_lr / fdf + base_lr * (1 + math.cos(math.pi * t / total)) / 2 * t / warmup
        momentum = 0.0
    else:
        momentum = _anneal(float(cfg["base_momentum"]), float(cfg["max_momentum"]),
                           (t - warmup) / max(total - warmup, 1), strategy)
        lr = _anneal(base_lr, min_lr, (t + (1 if strategy == "cos" else 0)) / total, strategy)
    out: dict[str, float] = {}
    if cfg["use_beta1"]:
        out["beta1"] = momentum
    out["lr"] = lr
    return out


@register_schedule("poly", power=1.0, min_lr=0.0)
def poly(cfg: dict[str, Any], base_lr: float, t: int, total: int) -> dict[str, float]:
    """Linear warm-up, then ``(base - min_lr)(1 - p)^power + min_lr`` (``p``: progress after warm-up)."""
    warm = _linear_warmup(cfg, base_lr, t)
    if warm is not None:
        return warm
    min_lr = float(cfg["min_lr"])
    return {"lr": (base_lr - min_lr) * (1 - _progress(cfg, t, total)) ** float(cfg["power"]) + min_lr}


@register_schedule("cosine", min_lr=0.0)
def cosine(cfg: dict[str, Any], base_lr: float, t: int, total: int) -> dict[str, float]:
    """Linear warm-up, then cosine from ``base`` to ``min_lr``."""
    warm = _linear_warmup(cfg, base_lr, t)
    return warm if warm is not None else {"lr": _anneal(base_lr, float(cfg["min_lr"]), _progress(cfg, t, total), "cos")}


@register_schedule("step", milestones=[], gamma=0.1)
def step(cfg: dict[str, Any], base_lr: float, t: int, total: int) -> dict[str, float]:
    """Linear warm-up, then ``base * gamma ** (number of milestones (iterations) <= t)``."""
    warm = _linear_warmup(cfg, base_lr, t)
    if warm is not None:
        return warm
    milestones = cfg["milestones"]
    if not isinstance(milestones, (list, tuple)) or not all(isinstance(m, int) and m >= 0 for m in milestones):
        raise ConfigError(f"train.scheduler.milestones must be a list of iterations (integers >= 0), got {milestones!r}")
    return {"lr": base_lr * float(cfg["gamma"]) ** sum(t >= m for m in milestones)}


@register_schedule("constant")
def constant(cfg: dict[str, Any], base_lr: float, t: int, total: int) -> dict[str, float]:
    """Linear warm-up, then ``base``."""
    warm = _linear_warmup(cfg, base_lr, t)
    return warm if warm is not None else {"lr": base_lr}
