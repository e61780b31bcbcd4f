import pytest
import torch

import interspace_pruning as ip
from interspace_pruning import data
from interspace_pruning.training import Callback


@pytest.fixture(scope="module")
def digits():
    return data.get("digits", train_subset=256, test_subset=64)


def small_model(representation: str, seed: int = 0):
    torch.manual_seed(seed)
    return ip.prepare(ip.models.get("convnet", 10, 1, width=8), representation)


class MaskRecorder(Callback):
    """Masks and masked-entry values after every optimiser step."""

    def __init__(self):
        self.masks = []
        self.stored_zero = []

    def on_step_end(self, state):
        entries = ip.prunable(state.model)
        self.masks.append([e.mask.bool().clone() for e in entries])
        self.stored_zero.append(all(bool((e.param[e.mask == 0] == 0).all()) for e in entries))
