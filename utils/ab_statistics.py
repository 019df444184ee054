"""A/B analysis: a two-proportion z-test of a treatment arm's conversion rate against control's."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any


@dataclass(frozen=True)
class ABResult:
    """Two-proportion comparison of a treatment arm against control."""

    control: str
    treatment: str
    n_control: int
    n_treatment: int
    rate_control: float
    rate_treatment: float
    difference: float
    z: float
    p_value: float
    ci_low: float
    ci_high: float
    alpha: float

    @property
    def significant(self) -> bool:
        """True when the difference is significant at ``alpha``."""
        return self.p_value < self.alpha

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (for a table or an MLflow log)."""
        return {**self.__dict__, "significant": self.significant}


def two_proportion_test(conv_control: int, n_control: int, conv_treatment: int, n_treatment: int,
                        alpha: float = 0.05, control: str = "control", treatment: str = "treatment") -> ABResult:
    """Two-sided two-proportion z-test (pooled) and the Wald interval of the difference treatment - control."""
    if n_control <= 0 or n_treatment <= 0:
        raise ValueError(f"both arms need at least one observation, got n_control={n_control}, n_treatment={n_treatment}")
    for conv, n, arm in ((conv_control, n_control, control), (conv_treatment, n_treatment, treatment)):
        if not 0 <= conv <= n:
            raise ValueError(f"arm {arm!r}: conversions {conv} must be between 0 and its {n} observations")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    p1, p2 = conv_control / n_control, conv_treatment / n_treatment
    pooled = (conv_control + conv_treatment) / (n_control + n_treatment)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_control + 1 / n_treatment))
    diff = p2 - p1
    z = diff / se_pooled if se_pooled > 0 else 0.0
    p_value = 2 * (1 - NormalDist().cdf(abs(z)))
    se = math.sqrt(p1 * (1 - p1) / n_control + p2 * (1 - p2) / n_treatment)
    half = NormalDist().inv_cdf(1 - alpha / 2) * se
    return ABResult(control, treatment, n_control, n_treatment, p1, p2, diff, z, p_value, diff - half, diff + half, alpha)
