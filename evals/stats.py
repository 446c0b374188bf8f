"""Means with percentile-bootstrap 95% confidence intervals, and paired differences against a baseline run.

Example::

    >>> m = mean_ci([1.0, 0.0, 1.0, 1.0])
    >>> m["mean"], m["n"]
    (0.75, 4)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

N_BOOTSTRAP = 2000
SEED = 0


def mean_ci(values: Sequence[float | None], *, level: float = 0.95, n_boot: int = N_BOOTSTRAP) -> dict:
    """``{"mean", "ci_low", "ci_high", "n"}`` over the non-None values (None means "not applicable")."""
    x = np.array([v for v in values if v is not None], dtype=float)
    if x.size == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    rng = np.random.default_rng(SEED)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    alpha = (1 - level) / 2
    return {
        "mean": float(x.mean()),
        "ci_low": float(np.quantile(means, alpha)),
        "ci_high": float(np.quantile(means, 1 - alpha)),
        "n": int(x.size),
    }


def paired_diff(current: Sequence[float | None], baseline: Sequence[float | None], *, level: float = 0.95) -> dict:
    """Mean of (current - baseline) over pairs where both are present, with its bootstrap CI (resampling pairs)."""
    diffs = [c - b for c, b in zip(current, baseline, strict=True) if c is not None and b is not None]
    out = mean_ci(diffs, level=level)
    out["significant"] = out["n"] > 0 and (out["ci_low"] > 0 or out["ci_high"] < 0)
    return out
