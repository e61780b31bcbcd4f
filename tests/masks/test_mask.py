import pytest
import torch

from interspace_pruning import Mask


def test_mask_validates_values():
    m = Mask(torch.tensor([0.0, 1.0, 1.0]))
    assert m.tensor.dtype == torch.bool and m.num_kept() == 2
    assert m.density == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="other than 0 and 1"):
        Mask(torch.tensor([0.0, 0.5]))
    with pytest.raises(ValueError, match="NaN or inf"):
        Mask(torch.tensor([float("nan"), 1.0]))
    with pytest.raises(TypeError):
        Mask([0, 1])
    with pytest.raises(ValueError, match=r"mask shape \(3,\) does not match"):
        m.check_shape((4,))
    assert (m & Mask(torch.tensor([1, 0, 1]))).num_kept() == 1
