"""The allocation rule's arithmetic, as pure functions: the reference value, shrinkage toward a
prior, the multiplicative-weights step, floors, and scaling keep rates to a budget."""
from __future__ import annotations

import math
from collections.abc import Mapping

from streams.budget.allocator_state import AllocatorConfig, KeyStats


def reference_value(values: Mapping[str, float], shares: Mapping[str, float], top: float) -> float:
    """Share-weighted mean value of the best keys that together make up ``top`` of the shares."""
    total = sum(shares.values())
    if total <= 0:
        return 0.0
    need, acc, wsum = top * total, 0.0, 0.0
    for k in sorted(values, key=lambda k: -values[k]):
        take = min(shares[k], need - wsum)
        if take <= 0:
            break
        acc += take * values[k]
        wsum += take
    return acc / wsum if wsum > 0 else 0.0


def shrink(st: KeyStats, prior: float, prior_tokens: float) -> float:
    """The key's value pulled toward ``prior`` with the strength of ``prior_tokens`` scored tokens."""
    n0 = prior_tokens
    return (st.sv + n0 * prior) / (st.st + n0) if (st.st + n0) > 0 else prior


def step_theta(theta: float, excess: float, cfg: AllocatorConfig) -> float:
    """One multiplicative-weights step: dead zone, clip, decay toward 0, bounds."""
    r = math.copysign(max(abs(excess) - cfg.margin, 0.0), excess)
    r = max(-cfg.r_clip, min(cfg.r_clip, r))
    return max(cfg.theta_min, min(cfg.theta_max, (1.0 - cfg.decay) * theta + cfg.eta * r))


def floor_keep(share: float, floor_share: float, min_keep: float, cap: float = 1.0) -> float:
    """The keep rate that gives a key with ``share`` of the supply ``floor_share`` of the budget."""
    if share <= 0:
        return min(cap, 1.0)
    return min(cap, max(min_keep, min(1.0, floor_share / share)))


def scale_to(keep: dict[str, float], supply: dict[str, float], floor: dict[str, float], target: float) -> None:
    """Scale keep rates down (not below their floors) until the admitted supply fits ``target``."""
    def admitted(c: float) -> float:
        return sum(max(floor[k], keep[k] * c) * supply[k] for k in keep)

    if admitted(1.0) <= target:
        return
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if admitted(mid) <= target else (lo, mid)
    for k in keep:
        keep[k] = max(floor[k], keep[k] * lo)
