"""What the budget allocator is configured with and what it remembers: its settings, the
statistics it keeps per key (JSON-able, stored in the agent's table) and a window's sums."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from streams.budget.features import DEFAULT_DIMS, DEFAULT_LEN_EDGES


@dataclass
class AllocatorConfig:
    dims: tuple[str, ...] = DEFAULT_DIMS
    len_edges: tuple[int, ...] = DEFAULT_LEN_EDGES
    half_life_windows: float = 4.0  # statistics forget half their weight in this many windows
    prior_tokens: float = 20_000.0  # shrinkage strength (confidence) toward the parent's mean
    ref_share: float = 0.5  # the reference value: mean of the best sources supplying this share
    eta: float = 1.0  # multiplicative-weights learning rate (per window, per unit of excess value)
    decay: float = 0.1  # pull of theta back to 0 per window (forgetting: a source can recover)
    margin: float = 0.2  # dead zone of excess value (normalised units) that changes nothing
    r_clip: float = 2.0
    theta_min: float = -5.0
    theta_max: float = 2.0
    source_floor: float = 0.02  # each source keeps at least this share of the window
    bucket_floor: float = 0.05  # each bucket keeps at least this share of its source's budget
    min_keep: float = 0.05  # no key's keep rate goes below this
    explore_share: float = 0.10  # new sources together are guaranteed this share of the window
    explore_tokens: float = 20_000.0  # scored tokens before a source is established
    unknown_keep: float = 1.0  # keep rate of sources the allocator has not seen ("*")
    window_scale: float = 1.0  # budget of a window = estimated supply x this (< 1 forces a cut)
    max_bucket_values: int = 16  # per source and dimension; further values are not tracked
    # poisoning guard
    anomaly_z: float = 4.0
    anomaly_min_shift: float = 0.75  # normalised units
    anomaly_min_windows: int = 6  # history needed before the value guard fires
    anomaly_min_docs: int = 8
    quarantine_windows: int = 3
    low_persist_windows: int = 2  # anomalously low this many windows in a row before the flag
    flag_hold_windows: int = 5
    flagged_keep: float = 0.1  # keep rate cap of a source flagged value_low or near_dup_flood
    dup_share_max: float = 0.5
    dup_min_docs: int = 20
    seen_ids: int = 200_000  # document ids remembered to count supply once per document

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "AllocatorConfig":
        d = dict(d or {})
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown allocator settings: {sorted(unknown)}")
        for k in ("dims", "len_edges"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["dims"], d["len_edges"] = list(self.dims), list(self.len_edges)
        return d


@dataclass
class KeyStats:
    """Everything the allocator remembers about one key (JSON-able through ``asdict``)."""

    sv: float = 0.0  # EW sum of normalised value x tokens
    st: float = 0.0  # EW sum of tokens (confidence)
    sup: float = 0.0  # EW sum of supply tokens (Horvitz-Thompson)
    sup_n: float = 0.0  # EW count of windows (supply per window = sup / sup_n)
    hist_mu: float = 0.0  # EW mean of the per-window mean value (sources: the anomaly guard)
    hist_var: float = 0.0
    hist_n: int = 0
    theta: float = 0.0
    keep: float = 1.0  # last published keep rate
    keep_prev: float = 1.0  # the one before
    n_docs: int = 0  # scored documents, all time
    n_tokens: float = 0.0  # scored tokens, all time
    first_window: int = 0
    last_window: int = 0
    quarantine: int = 0  # consecutive quarantined windows
    low_run: int = 0  # consecutive windows anomalously low
    flags: dict[str, int] = field(default_factory=dict)  # reason -> last window the flag holds

    @property
    def value(self) -> float:
        return self.sv / self.st if self.st > 0 else 0.0

    @property
    def supply(self) -> float:
        return self.sup / self.sup_n if self.sup_n > 0 else 0.0


@dataclass
class WindowTotals:
    """One key's sums over the window being collected."""

    tokens: float = 0.0
    vsum: float = 0.0
    v2sum: float = 0.0
    t2sum: float = 0.0
    docs: int = 0
    supply: float = 0.0
    supply_docs: float = 0.0
