import pytest

import interspace_pruning as ip
from interspace_pruning.schedules import GradualMagnitudePruning
from interspace_pruning.training import TrainConfig, train

from .conftest import MaskRecorder, small_model


def test_cubic_schedule():
    gmp = GradualMagnitudePruning(0.9, start_step=10, end_step=50, interval=10)
    assert (
        gmp.sparsity_at(9) is None and gmp.sparsity_at(15) is None and gmp.sparsity_at(51) is None
    )
    assert gmp.sparsity_at(10) == pytest.approx(0.0)
    assert gmp.sparsity_at(30) == pytest.approx(0.9 - 0.9 * 0.5**3)
    assert gmp.sparsity_at(50) == pytest.approx(0.9)
    odd = GradualMagnitudePruning(0.5, start_step=0, end_step=7, interval=5)
    assert odd.sparsity_at(5) is not None and odd.sparsity_at(7) == pytest.approx(0.5)


@pytest.mark.parametrize("representation", ["sp", "ip"])
def test_gmp_hits_its_sparsity_at_each_pruning_step(representation, digits):
    model = small_model(representation)
    ip.prunable(model)
    gmp = GradualMagnitudePruning(0.8, start_step=4, end_step=20, interval=4, initial_sparsity=0.1)
    rec = MaskRecorder()
    train(model, digits, TrainConfig(epochs=4, batch_size=32), callbacks=[gmp, rec], progress=False)
    assert [s for s, _, _ in gmp.events] == [4, 8, 12, 16, 20]
    total = sum(e.numel() for e in ip.prunable(model))
    for step, target, _ in gmp.events:
        kept = sum(int(m.sum()) for m in rec.masks[step])
        assert kept == round((1 - target) * total)
    # masks only shrink, and only at pruning steps; pruned entries stay stored as zero
    steps = {s for s, _, _ in gmp.events}
    for t in range(1, len(rec.masks)):
        same = all(
            bool((a == b).all()) for a, b in zip(rec.masks[t - 1], rec.masks[t], strict=True)
        )
        assert same or t in steps
        assert all(
            bool((b <= a).all()) for a, b in zip(rec.masks[t - 1], rec.masks[t], strict=True)
        )
    assert all(rec.stored_zero)
    assert ip.sparsity_report(model).sparsity == pytest.approx(0.8, abs=1e-3)


def test_gmp_validation():
    with pytest.raises(ValueError, match="start <= end"):
        GradualMagnitudePruning(0.9, start_step=10, end_step=5, interval=1)
    with pytest.raises(ValueError, match="interval must be >= 1"):
        GradualMagnitudePruning(0.9, start_step=0, end_step=5, interval=0)
    with pytest.raises(ValueError, match="initial <= final"):
        GradualMagnitudePruning(0.5, start_step=0, end_step=5, interval=1, initial_sparsity=0.6)
