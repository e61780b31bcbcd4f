"""Dynamic sparse training at constant sparsity: SET and RigL.

Every ``interval`` steps until ``stop`` (a fraction of training), each layer drops the
``alpha_t`` fraction of its active entries with the smallest magnitude and regrows as many
inactive ones: at random (SET, Mocanu et al. 2018) or where the dense gradient is largest
(RigL, Evci et al. 2020). ``alpha_t`` follows a cosine decay from ``drop_fraction``. Regrown
entries start at zero with cleared optimiser state, and every layer keeps its number of
active entries, so the sparsity never changes.

Where the gradient comes from: RigL needs ``dL/d(theta * M)`` for *all* entries, pruned ones
included (for IP the gradient with respect to the full coefficient tensor). A plain loop
needs no extra call for it: the pruner hooks each masked layer's weight computation and, on
the backward pass of an update step, records ``dL/dW`` and turns it into that gradient
(:meth:`~interspace_pruning.masks.MaskedParametrization.full_gradient`). Backward passes
between two ``step()`` calls are summed (gradient accumulation works); wrap extra backward
passes of your own in :func:`~interspace_pruning.no_gradient_capture`. Drop
decisions use the magnitudes from just before ``optimizer.step()`` (an optimiser pre-hook
records them), so the update equals one made between ``backward()`` and ``optimizer.step()``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..foundations import distributed
from ..foundations.optim_state import reset_state_entries
from ..masks import capture_enabled
from ..pruning import prune
from ..pruning.allocation import nm_mask, parse_pattern, satisfies_pattern
from .base import STATE_FIX, Pruner, PrunerStateError

GROWTH = ("gradient", "random")


class DynamicSparseTraining(Pruner):
    """SET and RigL: constant sparsity, masks rewired every ``interval`` steps.

    Build it with ``ip.pruner("rigl" | "set", model, optimizer, sparsity=..., total_steps=T,
    **options)`` (options: :class:`~interspace_pruning.schedules.DstOptions`) rather than
    directly. When bound, the model is pruned at random to ``sparsity`` (unless it already
    is that sparse); then each update step before ``stop_fraction * T`` drops the smallest
    active entries of every layer and regrows as many inactive ones.

    Args:
        growth: ``"gradient"`` (RigL: where the dense gradient is largest) or ``"random"``
            (SET).
        interval: steps between two updates; ``None``: about ten updates over the update
            phase, re-resolved whenever the pruner is bound.
        drop_fraction: the fraction of active entries dropped at the first update (0 to 1),
            cosine-annealed to 0 at ``stop_fraction``.
        stop_fraction: the fraction of ``total_steps`` after which masks stay fixed.
        seed: seed of the generator of random growth (SET).
        sparsity: the sparsity of the random starting mask; ``None``: keep the model's mask.
        **allocation_kwargs: ``allocation``, ``keep_first_dense``, ``keep_last_dense``,
            ``min_density``, ``pattern`` (see :class:`~interspace_pruning.schedules.Pruner`).
    """

    def __init__(
        self,
        growth: str = "gradient",
        interval: int | None = None,
        drop_fraction: float = 0.3,
        stop_fraction: float = 0.75,
        seed: int = 0,
        sparsity: float | None = None,
        **allocation_kwargs: Any,
    ) -> None:
        super().__init__(**allocation_kwargs)
        self.nm = parse_pattern(self.pattern)
        if growth not in GROWTH:
            raise ValueError(f"unknown growth {growth!r}; choose one of {GROWTH}")
        if interval is not None and interval < 1:
            raise ValueError(f"update interval must be >= 1 step, got {interval}")
        if not 0 < drop_fraction < 1:
            raise ValueError(f"drop fraction must be in (0, 1), got {drop_fraction}")
        if not 0 < stop_fraction <= 1:
            raise ValueError(f"stop fraction must be in (0, 1], got {stop_fraction}")
        self.growth = growth
        self.interval = interval
        #: re-resolved from ``total_steps`` whenever it is bound (``interval=None``)
        self._auto_interval = interval is None
        self.drop_fraction = drop_fraction
        self.stop_fraction = stop_fraction
        self.sparsity_target = sparsity
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self._hooks: list = []
        self._grads: list[torch.Tensor | None] = []
        self._magnitudes: list[torch.Tensor] | None = None

    # -- schedule ------------------------------------------------------------------------
    def drop_fraction_at(self, step: int, total_steps: int) -> float:
        """Cosine-annealed drop fraction; 0 outside the update phase."""
        stop = self.stop_fraction * total_steps
        if step >= stop:
            return 0.0
        return 0.5 * self.drop_fraction * (1.0 + math.cos(math.pi * step / stop))

    def is_update(self, step: int, total_steps: int) -> bool:
        interval = self.interval or 1
        return step > 0 and step % interval == 0 and step < self.stop_fraction * total_steps

    def planned_updates(self) -> tuple[int, int]:
        end = math.ceil(self.stop_fraction * self.total_steps)  # updates at steps < end
        return len(range(self.interval or 1, end, self.interval or 1)), len(range(1, end))

    # -- binding -------------------------------------------------------------------------
    def on_bind(self) -> None:
        if self._auto_interval:  # about ten updates over the update phase
            self.interval = max(1, int(self.stop_fraction * self.total_steps) // 10)
        device = self.entries[0].param.device
        if self.generator.device != device:
            self.generator = torch.Generator(device=device).manual_seed(self.seed)
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self._grads = [None] * len(self.entries)
        self._parametrizations = [e.parametrization for e in self.entries]
        if self.growth == "gradient":
            for i, e in enumerate(self.entries):
                self._hooks.append(e.parametrization.register_forward_hook(self._on_weight(i)))
        if self.optimizer is not None:
            self._hooks.append(self.optimizer.register_step_pre_hook(self._before_step))

    def initialize(self) -> None:
        """Random mask at the target sparsity, unless the model already is that sparse."""
        if self.sparsity_target is None:
            return
        total = sum(e.numel() for e in self.entries)
        kept = sum(e.num_kept() for e in self.entries)
        if kept != round((1.0 - self.sparsity_target) * total):
            prune(self.model, "random", self.sparsity_target, **self.prune_kwargs())

    def _pending(self) -> bool:
        return self.is_update(self.step_count, self.total_steps)

    def _on_weight(self, i: int):
        def hook(parametrization, inputs, weight: torch.Tensor) -> None:
            if parametrization is not self._parametrizations[i]:
                return  # a deep copy of the model (e.g. a scoring copy) carries the hook too
            if weight.requires_grad and capture_enabled() and self._pending():
                weight.register_hook(lambda g: self._record(i, g))

        return hook

    @torch.no_grad()
    def _record(self, i: int, weight_grad: torch.Tensor) -> None:
        g = self._parametrizations[i].full_gradient(weight_grad.detach())
        self._grads[i] = g.clone() if self._grads[i] is None else self._grads[i] + g

    @torch.no_grad()
    def _before_step(self, optimizer, args, kwargs) -> None:
        if self._pending():
            self._magnitudes = [e.param.detach().abs().clone() for e in self.entries]

    # -- the update ----------------------------------------------------------------------
    def _grow_scores(self) -> list[torch.Tensor]:
        if self.growth == "random":
            g = self.generator
            return [torch.rand(e.param.shape, generator=g, device=g.device) for e in self.entries]
        if all(g is None for g in self._grads):
            raise ValueError(
                f"RigL update at step {self.step_count} saw no gradient: call pruner.step() "
                "after loss.backward() and optimizer.step() of the same training step"
            )
        # a layer the forward pass did not use has zero gradient
        grads = [
            torch.zeros_like(e.param) if g is None else g
            for e, g in zip(self.entries, self._grads, strict=True)
        ]
        distributed.all_reduce_mean_(grads)  # each rank saw its shard: decide on the mean
        return [g.abs() for g in grads]

    def update(self, t: int) -> None:
        if self.is_update(t, self.total_steps):
            self.drop_and_grow(t)
        self._grads = [None] * len(self.entries)
        self._magnitudes = None

    @torch.no_grad()
    def drop_and_grow(self, t: int) -> None:
        """One drop-and-grow step on every layer."""
        alpha = self.drop_fraction_at(t, self.total_steps)
        scores = self._grow_scores()
        magnitudes = self._magnitudes or [e.param.detach().abs() for e in self.entries]
        self.change_masks(t, 0.0, lambda: self._drop_and_grow(alpha, scores, magnitudes))
        self.events[-1] = (t, self.sparsity(), self.events[-1][2])

    def _drop_and_grow(self, alpha, scores, magnitudes) -> None:
        for e, score, mag in zip(self.entries, scores, magnitudes, strict=True):
            active = e.mask.detach().bool().flatten()
            n_active = int(active.sum())
            k = math.floor(alpha * n_active)  # after dropping k, >= k entries are inactive
            if k == 0 or n_active == active.numel():
                continue
            magnitude = mag.flatten().clone()
            magnitude[~active] = math.inf
            drop = torch.topk(magnitude, k, largest=False).indices
            after_drop = active.clone()
            after_drop[drop] = False
            exact = torch.float64 if score.device.type in ("cpu", "cuda") else score.dtype
            grow_score = score.flatten().to(exact)
            grow_score[after_drop] = -math.inf
            if self.nm is not None:  # grow only where a group has room under N:M
                if not satisfies_pattern(e.mask.detach().bool(), *self.nm):
                    raise ValueError(
                        f"layer {e.name!r} breaks the {self.pattern} pattern before a "
                        f"{self.growth} update; prune with pattern={self.pattern!r} first"
                    )
                taken = after_drop.reshape(e.param.shape)
                room = nm_mask(grow_score.reshape(e.param.shape), *self.nm, taken=taken)
                grow_score[~room.flatten()] = -math.inf
            grow = torch.topk(grow_score, k).indices
            new = after_drop.clone()
            new[grow] = True
            e.set_mask(new.reshape(e.param.shape))
            # A regrown entry starts at zero with no optimiser history, even one that was
            # dropped and regrown in this same update (its mask bit did not change).
            grown = torch.zeros_like(new)
            grown[grow] = True
            grown = grown.reshape(e.param.shape)
            e.param[grown] = 0.0
            if e.param.grad is not None:
                e.param.grad[grown] = 0.0
            if self.optimizer is not None:
                reset_state_entries(self.optimizer, e.param, grown)

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {**super().state_dict(), "generator": self.generator.get_state()}

    def validate_state(self, state, max_step: int | None = None) -> dict:
        """The base fields, and ``generator``: the state of SET's random generator, which
        must fit this pruner's generator (a CPU state does not fit a CUDA generator)."""
        checked = super().validate_state(state, max_step)
        where, saved = self._state_where(), state.get("generator")
        if saved is None:
            raise PrunerStateError(f"{where} has no 'generator'; {STATE_FIX}")
        problem = None
        if not isinstance(saved, torch.Tensor) or saved.dtype != torch.uint8 or saved.dim() != 1:
            problem = "must be the byte tensor of Generator.get_state()"
        else:
            try:  # on a spare generator of this device, so that nothing changes here
                torch.Generator(device=self.generator.device).set_state(saved)
            except (RuntimeError, TypeError, ValueError):
                problem = f"does not fit a {self.generator.device.type} random generator"
        if problem is not None:
            raise PrunerStateError(f"{where}: 'generator' {problem}; {STATE_FIX}")
        return checked

    def _load_checked(self, state: dict, checked: dict) -> None:
        super()._load_checked(state, checked)
        self.generator.set_state(state["generator"])
