"""The diagnostics callback: gradient norms at initialisation and after every epoch."""

from __future__ import annotations

import torch

from ..callbacks import Callback, TrainState
from .filters import dense_filter_fraction, filter_nnz_histogram
from .gradients import gradient_norms


class Diagnostics(Callback):
    """Records trainability diagnostics on one fixed training batch (cheap: one extra
    forward/backward per epoch).

    Adds ``grad_norm``, ``spatial_grad_norm``, ``basis_grad_norm`` to each epoch's metrics
    (the first epoch also carries their values at initialisation, ``*_init``) and the
    filter-density histogram to the last epoch's.
    """

    def __init__(self, batch_size: int = 256, seed: int = 12345) -> None:
        self.batch_size = batch_size
        self.seed = seed
        self.init: dict[str, float] = {}

    def _batch(self, state: TrainState):
        g = torch.Generator().manual_seed(self.seed)
        return next(state.dataset.train_batches(self.batch_size, g, augment=False, drop_last=False))

    def _measure(self, state: TrainState) -> dict[str, float]:
        x, y = self._batch(state)
        p = next(state.model.parameters(), None)
        if p is not None and x.device != p.device:  # e.g. an image folder read on the CPU
            x, y = x.to(p.device), y.to(p.device)
        return gradient_norms(state.model, x, y, state.loss_fn)

    def on_train_start(self, state: TrainState) -> None:
        self.init = self._measure(state)

    def on_epoch_end(self, state: TrainState, metrics: dict) -> None:
        now = self._measure(state)
        for k in ("grad_norm", "spatial_grad_norm", "basis_grad_norm"):
            metrics[k] = now[k]
            if state.epoch == 0:
                metrics[f"{k}_init"] = self.init[k]
        if state.epoch == state.config.epochs - 1:
            hist = filter_nnz_histogram(state.model)
            metrics["filter_nnz_hist"] = hist
            metrics["dense_filter_fraction"] = dense_filter_fraction(hist)

    def state_dict(self) -> dict:
        return {"init": self.init}

    def load_state_dict(self, state: dict) -> None:
        self.init = dict(state["init"])
