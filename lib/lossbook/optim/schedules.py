"""Learning-rate schedules as multipliers of the peak LR: cosine, WSD (warmup-stable-decay), constant.

`lr_multiplier(schedule, step, total, warmup=0, ...)` returns η_t/η_max for step t ∈ [0, total).
- warmup: linear from 1/warmup to 1 over the first `warmup` steps (every schedule).
- cosine (Loshchilov & Hutter 2017; Chinchilla's horizon = run length): after warmup,
  m = f + (1 − f)·½(1 + cos(π·p)), p = (t − warmup)/(total − warmup) ∈ [0, 1], f = `final_frac` (default 0.1,
  Chinchilla decays 10×).
- wsd (Hu et al. 2024 MiniCPM; Hägele et al. 2024): constant 1 until the last `decay_frac` of the run, then
  decays to `final_frac` (default 0) along `decay_shape` ∈ {linear, sqrt (1 − sqrt, Hägele's best), cosine}.
- constant: 1 after warmup.
- two_stage (Luo et al. 2025, arXiv 2503.12811, their "wsdcon" fitting runs): 1 until the last `decay_frac` of
  the run, then the constant `final_frac` (default 0.3: their 3e-4 -> 9e-5) for the rest, no transition.
- wsd with decay_shape "exp" (Luo et al.'s `wsd` runs): m = f^p over the decay, p as for the other shapes, a
  geometric interpolation from 1 to f = `final_frac` (needs f > 0).
"""

from __future__ import annotations

import math

SCHEDULES = ("cosine", "wsd", "constant", "two_stage")


def lr_multiplier(
    schedule: str,
    step: int,
    total: int,
    warmup: int = 0,
    final_frac: float | None = None,
    decay_frac: float = 0.2,
    decay_shape: str = "sqrt",
) -> float:
    """η_t/η_max at `step` of `total` steps (see module docstring for each schedule's formula)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if total < 1:
        raise ValueError(f"total steps must be >= 1, got {total}")
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        f = 0.1 if final_frac is None else final_frac
        span = max(total - warmup - 1, 1)
        p = min(max((step - warmup) / span, 0.0), 1.0)
        return f + (1 - f) * 0.5 * (1 + math.cos(math.pi * p))
    if schedule == "two_stage":
        f = 0.3 if final_frac is None else final_frac
        return 1.0 if step < total - max(int(round(decay_frac * total)), 1) else f
    f = 0.0 if final_frac is None else final_frac
    n_decay = max(int(round(decay_frac * total)), 1)
    start = total - n_decay
    if step < start:
        return 1.0
    p = min((step - start + 1) / n_decay, 1.0)
    if decay_shape == "linear":
        g = 1 - p
    elif decay_shape == "sqrt":
        g = 1 - math.sqrt(p)
    elif decay_shape == "cosine":
        g = 0.5 * (1 + math.cos(math.pi * p))
    elif decay_shape == "exp":
        if f <= 0:
            raise ValueError(f"decay_shape 'exp' needs final_frac > 0, got {f}")
        return f**p
    else:
        raise ValueError(f"decay_shape must be linear, sqrt, cosine or exp, got {decay_shape!r}")
    return f + (1 - f) * g


def lr_curve(schedule: str, total: int, warmup: int = 0, **kw: float | str) -> list[float]:
    """The multiplier at every step 0..total−1 (for plots and tests)."""
    return [lr_multiplier(schedule, t, total, warmup, **kw) for t in range(total)]
