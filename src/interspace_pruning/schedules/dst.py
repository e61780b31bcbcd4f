"""Dynamic sparse training at constant sparsity: SET and RigL.

Every ``interval`` steps until ``stop`` (a fraction of training), each layer drops the
``alpha_t`` fraction of its active entries with the smallest magnitude and regrows as many
inactive ones: at random (SET, Mocanu et al. 2018) or where the dense gradient is largest
(RigL, Evci et al. 2020). ``alpha_t`` follows a cosine decay from ``drop_fraction``. For IP
the gradient is taken with respect to the full coefficient tensor (pruned entries
included). Regrown entries start at zero with cleared optimiser state, and every layer keeps
its number of active entries, so the sparsity never changes.
"""

from __future__ import annotations

import math

import torch

from ..foundations.batchnorm import frozen_batchnorm_stats
from ..masks import dense_gradients, prunable
from ..pruning.allocation import nm_mask, parse_pattern, satisfies_pattern
from ..training import TrainState, distributed, reset_state_entries
from .base import MaskSchedule, settle_after_mask_change, snapshot_masks

GROWTH = ("gradient", "random")


class DynamicSparseTraining(MaskSchedule):
    def __init__(
        self,
        growth: str = "gradient",
        interval: int = 100,
        drop_fraction: float = 0.3,
        stop_fraction: float = 0.75,
        seed: int = 0,
        pattern: str | None = None,
    ) -> None:
        super().__init__(pattern=pattern)
        self.nm = parse_pattern(pattern)
        if growth not in GROWTH:
            raise ValueError(f"unknown growth {growth!r}; choose one of {GROWTH}")
        if interval < 1:
            raise ValueError(f"update interval must be >= 1 step, got {interval}")
        if not 0 < drop_fraction < 1:
            raise ValueError(f"drop fraction must be in (0, 1), got {drop_fraction}")
        if not 0 < stop_fraction <= 1:
            raise ValueError(f"stop fraction must be in (0, 1], got {stop_fraction}")
        self.growth = growth
        self.interval = interval
        self.drop_fraction = drop_fraction
        self.stop_fraction = stop_fraction
        self.generator = torch.Generator().manual_seed(seed)

    def drop_fraction_at(self, step: int, total_steps: int) -> float:
        """Cosine-annealed drop fraction; 0 outside the update phase."""
        stop = self.stop_fraction * total_steps
        if step >= stop:
            return 0.0
        return 0.5 * self.drop_fraction * (1.0 + math.cos(math.pi * step / stop))

    def is_update(self, step: int, total_steps: int) -> bool:
        return step > 0 and step % self.interval == 0 and step < self.stop_fraction * total_steps

    def state_dict(self) -> dict:
        return {**super().state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.generator.set_state(state["generator"])

    def on_after_backward(self, state: TrainState) -> None:
        if self.is_update(state.step, state.total_steps):
            self.update(state)

    @torch.no_grad()
    def _grow_scores(self, state: TrainState, entries) -> list[torch.Tensor]:
        if self.growth == "random":
            return [torch.rand(e.param.shape, generator=self.generator) for e in entries]
        x, y = state.batch
        with frozen_batchnorm_stats(state.model), torch.enable_grad():  # must not count
            grads = dense_gradients(state.model, entries, x, y, state.loss_fn)
        distributed.all_reduce_mean_(grads)  # each rank saw its shard: decide on the mean
        return [g.abs().cpu() for g in grads]

    @torch.no_grad()
    def update(self, state: TrainState) -> None:
        """One drop-and-grow step on every layer."""
        alpha = self.drop_fraction_at(state.step, state.total_steps)
        entries = prunable(state.model)
        before = snapshot_masks(entries)
        scores = self._grow_scores(state, entries)
        for e, score, old in zip(entries, scores, before, strict=True):
            active = old.flatten().cpu()
            n_active = int(active.sum())
            k = math.floor(alpha * n_active)  # after dropping k, >= k entries are inactive
            if k == 0 or n_active == active.numel():
                continue
            magnitude = e.param.detach().abs().flatten().cpu()
            magnitude[~active] = math.inf
            drop = torch.topk(magnitude, k, largest=False).indices
            after_drop = active.clone()
            after_drop[drop] = False
            grow_score = score.flatten().clone().double()
            grow_score[after_drop] = -math.inf
            if self.nm is not None:  # grow only where a group has room under N:M
                if not satisfies_pattern(old, *self.nm):
                    raise ValueError(
                        f"layer {e.name!r} breaks the {self.pattern} pattern before a "
                        f"{self.growth} update; prune with pattern={self.pattern!r} first"
                    )
                taken = after_drop.reshape(old.shape)
                room = nm_mask(grow_score.reshape(old.shape), *self.nm, taken=taken)
                grow_score[~room.flatten()] = -math.inf
            grow = torch.topk(grow_score, k).indices
            new = after_drop.clone()
            new[grow] = True
            e.set_mask(new.reshape(e.param.shape).to(e.mask.device))
            # A regrown entry starts at zero with no optimiser history, even one that was
            # dropped and regrown in this same update (its mask bit did not change).
            grown = torch.zeros_like(new)
            grown[grow] = True
            grown = grown.reshape(e.param.shape).to(e.param.device)
            e.param[grown] = 0.0
            if e.param.grad is not None:
                e.param.grad[grown] = 0.0
            reset_state_entries(state.optimizer, e.param, grown)
        changed = settle_after_mask_change(state, entries, before)
        kept = sum(e.num_kept() for e in entries)
        total = sum(e.numel() for e in entries)
        self.events.append((state.step, 1.0 - kept / total, changed))
