"""Learning rate and batch size: warmup and decay, plus a response to loss spikes.

The rule (see the README section for why):

* A **spike** is a step whose loss is more than ``threshold_sigmas`` noise
  standard deviations *and* ``min_rel_rise`` above the running level (EMA) of
  the loss (see :class:`SpikeDetector`).
* On a spike the step's update is **skipped** (the gradient never reaches the
  weights or Adam's moments) and the **learning rate is backed off** by
  ``lr_backoff``; the multiplier climbs back to 1 geometrically over
  ``lr_recover_steps`` healthy steps.
* ``grow_batch_after`` spike *episodes* (runs of consecutive spikes) within
  ``grow_window`` steps **double the batch** (more micro-batches per step: less
  gradient noise), up to ``max_batch_mult``. Spikes that keep coming back are
  a sign of steps too noisy for the learning rate. The batch also doubles when
  the loss stops falling (plateau): "increase the batch instead of decaying".
* ``rollback_after`` spikes in a row ask whether the *weights* went bad: the
  loop measures the held-out probe loss. Worse than at the last good
  checkpoint: **roll back** to it (weights and optimizer; the data position
  goes on, so the bad stretch is not replayed). Not worse: the batches are bad
  (a burst of junk), and skipping them was the right answer.
* ``rebaseline_after`` spikes in a row mean the data's loss level moved (a new
  source, say): the detector takes the new loss as its level, so that the new
  data is learned instead of skipped forever.

With ``enabled: false`` the detector still counts spikes but nothing responds:
that is the fixed schedule ``bench/stability.py`` compares against.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from trainer.config import AdaptiveConfig, OptimConfig


def scheduled_lr(step: int, cfg: OptimConfig) -> float:
    """Linear warmup, then cosine to ``min_lr`` at ``decay_steps`` (or 1/sqrt, or constant)."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.decay == "constant":
        return cfg.lr
    if cfg.decay == "inv_sqrt":
        return max(cfg.min_lr, cfg.lr * math.sqrt(max(cfg.warmup_steps, 1) / max(step, 1)))
    span = max(cfg.decay_steps - cfg.warmup_steps, 1)
    progress = min(max((step - cfg.warmup_steps) / span, 0.0), 1.0)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


class SpikeDetector:
    """Flags losses far above the recent level of the loss.

    The level is a short EMA of the loss (``mean_beta``). The noise is estimated
    from step-to-step differences, ``var = EMA((l_t - l_{t-1})^2) / 2``, which a
    steadily falling loss barely inflates (a plain variance around a lagging
    mean would count the trend as noise and hide spikes early in training).
    """

    def __init__(self, cfg: AdaptiveConfig):
        self.cfg = cfg
        self.mean = 0.0
        self.var = 0.0
        self.prev = 0.0
        self.count = 0

    def threshold(self) -> float:
        std = math.sqrt(max(self.var, 0.0))
        return max(self.mean + self.cfg.threshold_sigmas * std, self.mean * (1.0 + self.cfg.min_rel_rise))

    def check(self, loss: float) -> tuple[bool, float]:
        """(is it a spike, how many noise standard deviations above the level)."""
        if not math.isfinite(loss):
            return True, float("inf")
        std = math.sqrt(max(self.var, 1e-12))
        z = (loss - self.mean) / std if self.count else 0.0
        if self.count < self.cfg.min_history:
            return False, z
        return loss > self.threshold(), z

    def update(self, loss: float, spike: bool) -> None:
        """Take a step's loss in; a spike's loss is clipped to the threshold first."""
        if not math.isfinite(loss):
            return
        x = min(loss, self.threshold()) if spike else loss
        if self.count == 0:
            self.mean = self.prev = x
        else:
            warm = self.count / (self.count + 1)  # plain averages over the first steps
            b_mean, b_var = min(self.cfg.mean_beta, warm), min(self.cfg.ema_beta, warm)
            d = x - self.prev
            self.var = b_var * self.var + (1 - b_var) * d * d / 2.0
            self.mean = b_mean * self.mean + (1 - b_mean) * x
            self.prev = x
        self.count += 1

    def rebaseline(self, loss: float) -> None:
        """Accept ``loss`` as the new level (the data changed, not the weights)."""
        if math.isfinite(loss):
            self.mean = self.prev = loss

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "var": self.var, "prev": self.prev, "count": self.count}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.mean, self.var, self.prev, self.count = d["mean"], d["var"], d["prev"], d["count"]


@dataclass
class Decision:
    skip: bool = False  # do not apply this step's update
    check_weights: bool = False  # measure the held-out probe; roll back if it got worse
    events: list[dict[str, Any]] = field(default_factory=list)


class AdaptiveSchedule:
    """Learning rate and batch size for each step, from the schedule and the live loss."""

    def __init__(self, optim: OptimConfig, cfg: AdaptiveConfig):
        self.optim = optim
        self.cfg = cfg
        self.detector = SpikeDetector(cfg)
        self.lr_mult = 1.0
        self.batch_mult = 1
        self.consecutive = 0
        self.episodes: deque[int] = deque()  # first steps of recent spike episodes
        self.n_spikes = 0
        self.last_spike_step = -(10**9)
        self.plateau_ref: float | None = None
        self.plateau_from = 0

    def lr(self, step: int) -> float:
        return scheduled_lr(step, self.optim) * self.lr_mult

    def healthy(self, step: int) -> bool:
        """No spike in the last ``healthy_window`` steps (a checkpoint now is a good one)."""
        return step - self.last_spike_step > self.cfg.healthy_window

    def observe(self, step: int, loss: float) -> Decision:
        cfg = self.cfg
        spike, z = self.detector.check(loss)
        self.detector.update(loss, spike)
        d = Decision()
        if spike:
            self.n_spikes += 1
            new_episode = step - self.last_spike_step > 1
            self.last_spike_step = step
            d.events.append({"event": "spike", "step": step, "loss": loss, "z": z,
                             "mean": self.detector.mean, "responded": cfg.enabled})
        if not cfg.enabled:
            return d
        if not spike:
            self.consecutive = 0
            if self.lr_mult < 1.0:
                self.lr_mult = min(1.0, self.lr_mult * (1.0 / cfg.lr_backoff) ** (1.0 / max(cfg.lr_recover_steps, 1)))
            self._check_plateau(step, d)
            return d
        d.skip = True
        self.consecutive += 1
        self.lr_mult = max(cfg.min_lr_mult, self.lr_mult * cfg.lr_backoff)
        d.events.append({"event": "skip_batch", "step": step})
        d.events.append({"event": "lr_backoff", "step": step, "lr_mult": self.lr_mult})
        if new_episode:
            self.episodes.append(step)
            while self.episodes and self.episodes[0] <= step - cfg.grow_window:
                self.episodes.popleft()
            if len(self.episodes) >= cfg.grow_batch_after:
                self._grow_batch(step, "recurring spikes", d)
                self.episodes.clear()
        if self.consecutive == cfg.rollback_after:
            d.check_weights = True
        if self.consecutive >= cfg.rebaseline_after:
            self.consecutive = 0
            self.detector.rebaseline(loss)
            d.events.append({"event": "rebaseline", "step": step, "loss": loss})
        return d

    def _grow_batch(self, step: int, why: str, d: Decision) -> None:
        if self.batch_mult * 2 <= self.cfg.max_batch_mult:
            self.batch_mult *= 2
            d.events.append({"event": "batch_grow", "step": step, "why": why, "batch_mult": self.batch_mult})

    def _check_plateau(self, step: int, d: Decision) -> None:
        cfg = self.cfg
        if cfg.plateau_window <= 0 or step < self.optim.warmup_steps:
            return
        if self.plateau_ref is None:
            self.plateau_ref, self.plateau_from = self.detector.mean, step
            return
        if step - self.plateau_from >= cfg.plateau_window:
            rel = (self.plateau_ref - self.detector.mean) / max(abs(self.plateau_ref), 1e-9)
            if rel < cfg.plateau_rel:
                self._grow_batch(step, "plateau", d)
            self.plateau_ref, self.plateau_from = self.detector.mean, step

    def state_dict(self) -> dict[str, Any]:
        return {"detector": self.detector.state_dict(), "lr_mult": self.lr_mult, "batch_mult": self.batch_mult,
                "consecutive": self.consecutive, "episodes": list(self.episodes), "n_spikes": self.n_spikes,
                "last_spike_step": self.last_spike_step, "plateau_ref": self.plateau_ref,
                "plateau_from": self.plateau_from}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.detector.load_state_dict(d["detector"])
        self.lr_mult, self.batch_mult, self.consecutive = d["lr_mult"], d["batch_mult"], d["consecutive"]
        self.episodes = deque(d["episodes"])
        self.n_spikes, self.last_spike_step = d["n_spikes"], d["last_spike_step"]
        self.plateau_ref, self.plateau_from = d["plateau_ref"], d["plateau_from"]
