"""The budget allocator's poisoning guard: a source whose value jumps far above its own history
is quarantined (its scores are not merged for a few windows) and flagged ``value_high``; one that
stays far below it is flagged ``value_low``; one whose documents are mostly (near-)duplicate
rejections is flagged ``near_dup_flood``."""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from streams.budget.allocator_state import AllocatorConfig, KeyStats, WindowTotals
from streams.budget.features import parse_key


def guard_window(obs: Mapping[str, WindowTotals], stats: Mapping[str, KeyStats], dups: Mapping[str, int],
                 cfg: AllocatorConfig, window: int, decay: float,
                 stat: Callable[[str], KeyStats]) -> tuple[set[str], dict[str, dict[str, float]]]:
    """Check one window's sums per source against each source's history (updating it and the
    flags); returns the quarantined sources and the anomalies found. ``stat`` makes a key's
    statistics on first use."""
    # poisoning guard, per source, on the value relative to the window's typical source (the
    # median of the source means: values of all sources drift together as the model learns,
    # and one source collapsing must not make the others look suspiciously good)
    quarantined: set[str] = set()
    anomalies: dict[str, dict[str, float]] = {}
    src_means = sorted(o.vsum / o.tokens for key, o in obs.items()
                       if parse_key(key)[1] is None and o.tokens > 0 and o.docs >= cfg.anomaly_min_docs)
    m_typ = float(np.median(src_means)) if src_means else 0.0
    for key, o in obs.items():
        src, dim, _ = parse_key(key)
        if dim is not None or o.tokens <= 0:
            continue
        st = stats[key]
        mean = o.vsum / o.tokens
        m = mean - m_typ
        spread = max(o.v2sum / o.tokens - mean * mean, 0.0)
        n_eff = o.tokens * o.tokens / max(o.t2sum, 1e-12)
        noise = spread / max(n_eff, 1.0)
        shift = m - st.hist_mu
        z = shift / math.sqrt(st.hist_var + noise + 1e-12)
        armed = st.hist_n >= cfg.anomaly_min_windows and o.docs >= cfg.anomaly_min_docs
        high = armed and z > cfg.anomaly_z and shift > cfg.anomaly_min_shift
        low = armed and z < -cfg.anomaly_z and shift < -cfg.anomaly_min_shift
        st.quarantine = st.quarantine + 1 if high else 0
        st.low_run = st.low_run + 1 if low else 0
        if high or low:
            anomalies[key] = {"mean": m, "history": st.hist_mu, "z": z}
            if high:
                st.flags["value_high"] = window + cfg.flag_hold_windows
                if st.quarantine < cfg.quarantine_windows:
                    quarantined.add(key)  # its scores are not merged this window
            if low and st.low_run >= cfg.low_persist_windows:  # one bad window is a blip, two a trend
                st.flags["value_low"] = window + cfg.flag_hold_windows
            if max(st.quarantine, st.low_run) < cfg.quarantine_windows:
                continue  # the history does not learn from an anomalous window ...
            st.quarantine = st.low_run = 0  # ... unless the shift persisted: it is the new level
            st.hist_mu = m
            continue
        a = 1.0 - decay
        if st.hist_n == 0:
            st.hist_mu, st.hist_var = m, 0.0
        else:
            delta = m - st.hist_mu
            st.hist_mu += a * delta
            st.hist_var = (1.0 - a) * (st.hist_var + a * delta * delta)
        st.hist_n += 1
    for skey, n_dup in dups.items():
        seen = obs[skey].supply_docs if skey in obs else 0.0
        total = n_dup + seen
        if total >= cfg.dup_min_docs and n_dup / total > cfg.dup_share_max:
            stat(skey).flags["near_dup_flood"] = window + cfg.flag_hold_windows
            anomalies.setdefault(skey, {})["dup_share"] = n_dup / total
    return quarantined, anomalies
