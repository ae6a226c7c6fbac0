"""The allocation rule: value scores in, token budgets out. Pure (no Kafka, no clock).

Inputs are the trainer's per-document :class:`~schemas.ValueScore` records (aggregates,
``doc_id`` starting with ``aggregate:``, are ignored: they repeat the documents) and, for the
poisoning guard, the pipeline's :class:`~schemas.Rejection` records of reason ``duplicate`` /
``near_duplicate``. They are buffered into a *window*; :meth:`BudgetAllocator.close_window`
turns a window into one :class:`~schemas.BudgetUpdate`. Who closes windows (every N scored
tokens, every T seconds) is the caller's business.

The rule, per window ``w``
--------------------------

1. **Normalise.** Value scores shrink as the model learns, so each score is divided by the
   window's token-weighted mean ``|value|``: values are in "mean absolute value" units.
2. **Statistics per key** (a source, and ``source|lang=..`` / ``source|len=..`` buckets):
   exponentially weighted sums (half-life ``half_life_windows`` windows) of value x tokens and
   of tokens give the value per token ``v_k`` and its confidence (effective tokens ``n_k``);
   the supply ``S_k`` (tokens arriving per window) is estimated Horvitz-Thompson style from the
   documents seen for the first time: each counts ``n_tokens / keep``, ``keep`` being the
   probability the pruning stage admitted it with: ``bucket["budget_keep"]`` of the score when
   the trainer passes the stage's ``scores["budget_keep"]`` on, otherwise the mean of the last
   two published rates for the document's source and buckets.
3. **Shrink.** ``v'_s = (n_s v_s + n0 vbar0) / (n_s + n0)``: a source with few scored tokens is
   pulled to the supply-weighted mean ``vbar0`` (``prior_tokens`` = n0). Buckets are shrunk to
   their source in the same way.
4. **Multiplicative weights over excess value** (as in DoReMi and online data mixing). The
   reference ``vref`` is the supply-weighted mean of the best sources that together supply
   ``ref_share`` of the tokens (the plain mean would be junk's own level when junk is most of
   the stream; the maximum would let one small odd source define "good"). Excess value
   ``e_s = v'_s - vref``, with a dead zone: ``r_s = clip(sign(e_s) max(|e_s| - margin, 0), +-r_clip)``;
   ``theta_s <- clip((1 - decay) * theta_s + eta * r_s, theta_min, theta_max)``.
   The mix is the supply mix tilted by ``exp(theta)``: source ``s`` gets
   ``B_s = W * q_s e^theta_s / sum_j q_j e^theta_j`` of the window's ``W`` tokens
   (``q`` = supply shares, ``W`` = estimated supply x ``window_scale``). A source cannot use
   more than it supplies, and what it cannot use is *not* handed to the others (that would
   re-admit low-value tokens): it is the compute saved. So the keep rate is
   ``keep_s = min(1, B_s / S_s) = min(1, e^theta_s / sum_j q_j e^theta_j)``.
5. **Floors.** ``keep_s >= max(min_keep, source_floor / q_s)``: every source keeps at least
   ``source_floor`` of the window (or all it supplies) and at least ``min_keep`` of its
   documents, so no source starves and its value stays measured (and can recover: ``decay``
   pulls ``theta`` back to 0).
6. **Exploration.** A source with fewer than ``explore_tokens`` scored tokens is *new*: its
   value is not known yet, so it is not judged on it. New sources together are guaranteed
   ``explore_share`` of the window: they are admitted in full up to that share; beyond it (a
   flood of new data) at the larger of ``explore_share / their supply share`` and the
   supply-weighted mean keep rate of the established sources (at a cold start, when nothing is
   established yet, that is 1: everything is admitted). A source nobody has seen yet falls
   under key ``*`` (keep ``unknown_keep``).
7. **Buckets** within an established source: the same rule one level down (excess value of the
   bucket over its source, supply shares within the source, floor ``bucket_floor`` of the
   source's budget); ``keep_b = min(1, keep_s * e^theta_b / sum q_b e^theta_b)``.
8. **Poisoning guard** (per source), flags held for ``flag_hold_windows`` windows. It watches the
   source's window mean *relative to the window's typical source* (the median of the source
   means: all values drift together as the model learns, a source moving against the rest is
   the news, and one collapsing source must not make the others look suspiciously good), against
   the history of that relative value. An anomalous window does not update the history:
   * ``value_high``: that relative value is more than ``anomaly_z`` standard deviations
     (history + sampling noise) and ``anomaly_min_shift`` above the source's history (after
     ``anomaly_min_windows`` windows of history). The window's scores are quarantined (not
     merged) and the source's keep rate may not rise; if the shift persists for
     ``quarantine_windows`` windows it is taken as the new level (still flagged until the hold
     runs out).
   * ``value_low``: the same, downwards, in ``low_persist_windows`` consecutive windows (the cap
     is harsh, so one noisy window must not starve a good source): the scores are merged (bad
     news is believed) and the keep rate is capped at ``flagged_keep`` (below the diversity
     floor: a flagged source is not protected).
   * ``near_dup_flood``: duplicates and near-duplicates make more than ``dup_share_max`` of the
     source's documents in the window: capped at ``flagged_keep``.
   Flagged sources are listed in ``BudgetUpdate.flagged``; :meth:`report` says why.

The state (:meth:`table_items`) is one JSON-able dict per key plus ``__meta__``: the agent keeps
it in a Faust table, and :meth:`from_table` resumes from it.
"""
from __future__ import annotations

import math
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, fields
from typing import Any

from schemas import BudgetUpdate, Rejection, ValueScore
from streams.budget.allocator_state import AllocatorConfig, KeyStats, WindowTotals
from streams.budget.features import UNKNOWN, bucket_key, doc_buckets, keep_probability, parse_key, source_key
from streams.budget.mix_rules import floor_keep, reference_value, scale_to, shrink, step_theta
from streams.budget.poisoning_guard import guard_window

METHOD = "mw-excess-value/v1"
AGGREGATE_PREFIX = "aggregate:"
META_KEY = "__meta__"
DUP_REASONS = frozenset({"duplicate", "near_duplicate"})


class BudgetAllocator:
    def __init__(self, config: AllocatorConfig | None = None):
        self.config = config or AllocatorConfig()
        self.stats: dict[str, KeyStats] = {}
        self.version = 0
        self.window = 0
        self.last: BudgetUpdate | None = None
        self.prev_weights: dict[str, float] = {}
        self._buf: list[tuple[str, dict[str, str], float, float, bool, str]] = []
        self._keep: dict[str, float] = {}  # doc id -> admission probability reported with its score
        self._dups: dict[str, int] = defaultdict(int)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._changed: set[str] = set()
        self.last_report: dict[str, Any] = {}

    # ------------------------------------------------------------------ input
    def observe(self, rec: ValueScore) -> bool:
        """Buffer one value score; False when it is ignored (an aggregate, no tokens, not finite)."""
        if rec.doc_id.startswith(AGGREGATE_PREFIX) or rec.n_tokens <= 0 or not math.isfinite(rec.value):
            return False
        first = rec.doc_id not in self._seen
        if first:
            self._seen[rec.doc_id] = None
            while len(self._seen) > self.config.seen_ids:
                self._seen.popitem(last=False)
        buckets = doc_buckets(rec.bucket.get("lang"), rec.n_tokens, self.config.dims, self.config.len_edges,
                              extra=rec.bucket)
        if first:
            try:  # the stage's own admission probability, when the trainer passes it on
                keep = float(rec.bucket["budget_keep"])
            except (KeyError, TypeError, ValueError):
                keep = None
            if keep is not None and 0.0 < keep <= 1.0:
                self._keep[rec.doc_id] = keep
        self._buf.append((rec.source, buckets, float(rec.value), float(rec.n_tokens), first, rec.doc_id))
        return True

    def observe_all(self, records: Iterable[ValueScore]) -> int:
        return sum(self.observe(r) for r in records)

    def observe_rejection(self, rej: Rejection) -> bool:
        """Count a duplicate / near-duplicate rejection against its source (the flood guard)."""
        if rej.reason not in DUP_REASONS or not rej.source:
            return False
        self._dups[source_key(rej.source)] += 1
        return True

    @property
    def pending_tokens(self) -> float:
        return sum(b[3] for b in self._buf)

    @property
    def pending_docs(self) -> int:
        return len(self._buf)

    # ------------------------------------------------------------------ helpers
    def _stat(self, key: str) -> KeyStats:
        st = self.stats.get(key)
        if st is None:
            st = self.stats[key] = KeyStats(first_window=self.window, last_window=self.window)
        return st

    def _admit_prob(self, source: str, buckets: Mapping[str, str]) -> float:
        """The probability the stage admitted a document with, under the recent updates."""
        if self.last is None:
            return 1.0
        now = keep_probability(self.last.weights, source, buckets)[0]
        before = keep_probability(self.prev_weights, source, buckets)[0] if self.prev_weights else now
        return max(self.config.min_keep, 0.5 * (now + before))

    def _flagged(self, st: KeyStats) -> set[str]:
        return {reason for reason, until in st.flags.items() if until >= self.window}

    def _tracked_bucket(self, src_key: str, dim: str, bkey: str, counts: dict[tuple[str, str], int]) -> bool:
        if bkey in self.stats:
            return True
        if counts[(src_key, dim)] >= self.config.max_bucket_values:
            return False
        counts[(src_key, dim)] += 1
        return True

    # ------------------------------------------------------------------ the rule
    def close_window(self) -> BudgetUpdate | None:
        """Turn the buffered observations into the next BudgetUpdate (None if there were none)."""
        cfg = self.config
        buf, dups, keeps = self._buf, dict(self._dups), self._keep
        self._buf, self._dups, self._keep = [], defaultdict(int), {}
        if not buf:
            return None
        tok = sum(b[3] for b in buf)
        scale = sum(abs(b[2]) * b[3] for b in buf) / max(tok, 1e-12)
        if not scale > 0:
            scale = 1.0
        self.window += 1
        w = self.window
        d = 0.5 ** (1.0 / cfg.half_life_windows)

        bucket_counts: dict[tuple[str, str], int] = defaultdict(int)
        for key in self.stats:
            src, dim, _ = parse_key(key)
            if dim is not None:
                bucket_counts[(src, dim)] += 1
        obs: dict[str, WindowTotals] = defaultdict(WindowTotals)
        for source, buckets, value, n_tok, first, doc_id in buf:
            x = value / scale
            skey = source_key(source)
            keys = [skey] + [bucket_key(source, dim, val) for dim, val in buckets.items()]
            ht = n_tok / (keeps.get(doc_id) or self._admit_prob(source, buckets)) if first else 0.0
            for i, key in enumerate(keys):
                if i > 0 and not self._tracked_bucket(skey, parse_key(key)[1], key, bucket_counts):
                    continue
                o = obs[key]
                o.tokens += n_tok
                o.vsum += x * n_tok
                o.v2sum += x * x * n_tok
                o.t2sum += n_tok * n_tok
                o.docs += 1
                if first:
                    o.supply += ht
                    o.supply_docs += ht / n_tok
        for key in obs:
            self._stat(key)

        quarantined, anomalies = guard_window(obs, self.stats, dups, cfg, w, d, self._stat)

        # merge the window into the statistics
        for key, st in self.stats.items():
            st.sv *= d
            st.st *= d
            st.sup *= d
            st.sup_n = st.sup_n * d + 1.0
            o = obs.get(key)
            if o is None:
                continue
            st.last_window = w
            st.sup += o.supply
            if parse_key(key)[0] in quarantined:
                continue
            st.sv += o.vsum
            st.st += o.tokens
            st.n_docs += o.docs
            st.n_tokens += o.tokens

        weights, budgets, report = self._allocate(quarantined)
        self.prev_weights = dict(self.last.weights) if self.last is not None else {}
        for key, st in self.stats.items():
            st.keep_prev, st.keep = st.keep, weights.get(key, st.keep)
        self._changed = set(self.stats)
        self.version += 1
        flagged = sorted(k for k, st in self.stats.items() if parse_key(k)[1] is None and self._flagged(st))
        supply_total = sum(st.supply for k, st in self.stats.items() if parse_key(k)[1] is None)
        self.last = BudgetUpdate(budget_version=self.version, window_tokens=int(round(supply_total)),
                                 budgets=budgets, method=METHOD, weights=weights, flagged=flagged)
        report.update({"window": w, "version": self.version, "scale": scale, "docs": len(buf),
                       "tokens": tok, "anomalies": anomalies, "quarantined": sorted(quarantined),
                       "flags": {k: sorted(self._flagged(self.stats[k])) for k in flagged}})
        self.last_report = report
        return self.last

    def _allocate(self, quarantined: set[str]) -> tuple[dict[str, float], dict[str, int], dict[str, Any]]:
        cfg = self.config
        sources = [k for k in self.stats if parse_key(k)[1] is None]
        supply = {k: self.stats[k].supply for k in sources}
        total = sum(supply.values())
        weights: dict[str, float] = {UNKNOWN: cfg.unknown_keep}
        budgets: dict[str, int] = {UNKNOWN: int(round(cfg.explore_share * total * cfg.window_scale))}
        if total <= 0:
            return weights, budgets, {"sources": {}}
        q = {k: supply[k] / total for k in sources}
        established = [k for k in sources if self.stats[k].n_tokens >= cfg.explore_tokens]
        new = [k for k in sources if k not in established]

        # value per source, shrunk to the supply-weighted mean; the reference is the mean of the
        # best sources that together supply ``ref_share`` of the tokens
        est = established or sources
        scored = [k for k in est if self.stats[k].st > 0]
        qsum = sum(q[k] for k in scored) or 1.0
        vbar0 = sum(q[k] * self.stats[k].value for k in scored) / qsum if scored else 0.0
        shrunk = {k: shrink(self.stats[k], vbar0, cfg.prior_tokens) for k in sources}
        vbar = reference_value({k: shrunk[k] for k in scored}, {k: q[k] for k in scored}, cfg.ref_share)

        keep: dict[str, float] = {}
        info: dict[str, dict[str, Any]] = {}
        for k in established:
            st = self.stats[k]
            excess = shrunk[k] - vbar
            if k not in quarantined:
                theta = step_theta(st.theta, excess, cfg)
                if "value_high" in self._flagged(st):
                    theta = min(theta, st.theta)  # a suspicious rise earns nothing
                st.theta = theta
            info[k] = {"value": shrunk[k], "excess": excess}
        z = sum(q[k] * math.exp(self.stats[k].theta) for k in established)
        z = z / (sum(q[k] for k in established) or 1.0) if established else 1.0
        for k in established:
            st = self.stats[k]
            floor = floor_keep(q[k], cfg.source_floor, cfg.min_keep)
            rate = max(min(1.0, math.exp(st.theta) / z), floor)
            flags = self._flagged(st)
            if flags & {"value_low", "near_dup_flood"}:
                rate = min(rate, cfg.flagged_keep)
            if "value_high" in flags:
                rate = min(rate, max(st.keep, floor))
            keep[k] = rate
        if new:
            share = sum(q[k] for k in new)
            est_q = sum(q[k] for k in established)
            typical = sum(q[k] * keep[k] for k in established) / est_q if est_q > 0 else 1.0
            rate = min(1.0, max(cfg.explore_share / share, typical, cfg.min_keep))
            for k in new:
                keep[k] = rate
                if self._flagged(self.stats[k]) & {"value_low", "near_dup_flood"}:
                    keep[k] = min(rate, cfg.flagged_keep)
        if cfg.window_scale < 1.0:
            scale_to(keep, supply, {k: floor_keep(q[k], cfg.source_floor, cfg.min_keep) for k in sources},
                           cfg.window_scale * total)
        for k in sources:
            weights[k] = round(keep[k], 6)
            budgets[k] = int(round(keep[k] * supply[k]))
            info.setdefault(k, {"value": shrunk[k], "excess": shrunk[k] - vbar})
            info[k].update({"keep": keep[k], "theta": self.stats[k].theta, "supply_share": q[k],
                            "new": k in new, "flags": sorted(self._flagged(self.stats[k]))})

        # buckets, one dimension at a time, inside each source
        by_src_dim: dict[tuple[str, str], list[str]] = defaultdict(list)
        for key in self.stats:
            src, dim, _ = parse_key(key)
            if dim is not None and src in keep:
                by_src_dim[(src, dim)].append(key)
        for (src, dim), keys in by_src_dim.items():
            ks = keep[src]
            src_st = self.stats[src]
            follow = src not in established or bool(self._flagged(src_st))
            bsup = {k: self.stats[k].supply for k in keys}
            btotal = sum(bsup.values())
            if follow or btotal <= 0:
                for k in keys:
                    weights[k] = round(ks, 6)
                    budgets[k] = int(round(ks * bsup[k]))
                continue
            qb = {k: bsup[k] / btotal for k in keys}
            vs = shrunk[src]
            for k in keys:
                if src not in quarantined:
                    st = self.stats[k]
                    st.theta = step_theta(st.theta, shrink(st, vs, cfg.prior_tokens) - vs, cfg)
            zb = sum(qb[k] * math.exp(self.stats[k].theta) for k in keys) or 1.0
            for k in keys:
                factor = math.exp(self.stats[k].theta) / zb
                factor = max(factor, floor_keep(qb[k], cfg.bucket_floor, cfg.min_keep, cap=1.0 / ks))
                rate = min(1.0, max(ks * factor, cfg.min_keep))
                weights[k] = round(rate, 6)
                budgets[k] = int(round(rate * bsup[k]))
        return weights, budgets, {"sources": info, "vbar": vbar}

    # ------------------------------------------------------------------ judgements and reports
    def judged_low_value(self, source: str, lang: str | None = None) -> bool:
        """Whether the allocator now rates the source as low value: established, and its excess value
        below ``-margin`` (or flagged low / flooding)."""
        info = self.last_report.get("sources", {}).get(source_key(source))
        if info is None:
            return False
        st = self.stats[source_key(source)]
        if self._flagged(st) & {"value_low", "near_dup_flood"}:
            return True
        if info.get("new"):
            return False
        return info["excess"] < -self.config.margin

    def report(self) -> dict[str, Any]:
        """The last window's judgement: per source value, excess, theta, keep, supply share, flags."""
        return dict(self.last_report)

    # ------------------------------------------------------------------ state
    def table_items(self, changed_only: bool = False) -> list[tuple[str, dict[str, Any]]]:
        """(key, JSON-able dict) pairs: one per key plus ``__meta__``."""
        keys = sorted(self._changed) if changed_only else sorted(self.stats)
        out = [(k, asdict(self.stats[k])) for k in keys if k in self.stats]
        out.append((META_KEY, {"version": self.version, "window": self.window,
                               "last": self.last.to_dict() if self.last is not None else None,
                               "prev_weights": self.prev_weights, "config": self.config.to_dict()}))
        self._changed = set()
        return out

    def state_dict(self) -> dict[str, Any]:
        return dict(self.table_items())

    @classmethod
    def from_table(cls, items: Mapping[str, Any] | Iterable[tuple[str, Any]],
                   config: AllocatorConfig | None = None) -> "BudgetAllocator":
        """Resume from :meth:`table_items` output (the agent's table). ``config`` wins over the stored one."""
        items = dict(items.items() if isinstance(items, Mapping) else items)
        meta = items.pop(META_KEY, None) or {}
        if config is None and meta.get("config"):
            config = AllocatorConfig.from_dict(meta["config"])
        alloc = cls(config)
        names = {f.name for f in fields(KeyStats)}
        for key, val in items.items():
            if isinstance(val, Mapping):
                alloc.stats[str(key)] = KeyStats(**{k: v for k, v in val.items() if k in names})
        alloc.version = int(meta.get("version", 0))
        alloc.window = int(meta.get("window", 0))
        if meta.get("last"):
            alloc.last = BudgetUpdate.from_dict(meta["last"])
        alloc.prev_weights = dict(meta.get("prev_weights") or {})
        return alloc
