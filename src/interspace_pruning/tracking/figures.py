"""Pictures of a model's filter bases (matplotlib figures), for the trackers and the report."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display needed; set before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from ..bases import filter_bases  # noqa: E402


def show_filters(ax_row, filters: torch.Tensor, title: str) -> None:
    """One row of axes, one filter each, on a symmetric red-blue scale per filter."""
    for j, ax in enumerate(ax_row):
        ax.axis("off")
        if j < len(filters):
            f = filters[j].detach().float().cpu()
            lim = float(f.abs().max()) or 1.0
            ax.imshow(f.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax_row[0].set_title(title, fontsize=8, loc="left")


def basis_rows(rows: Sequence[tuple[str, torch.Tensor]]):
    """A figure with one row of filters per ``(title, filters)``."""
    n = max(len(f) for _, f in rows)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n, 1.3 * len(rows)), squeeze=False)
    for ax_row, (title, filters) in zip(axes, rows, strict=True):
        show_filters(ax_row, filters, title)
    fig.tight_layout()
    return fig


def learned_bases_figure(model: nn.Module, most: int = 8):
    """Every filter basis of ``model`` (at most ``most``, evenly spaced through the network),
    one row each; ``None`` for a model without filter bases (SP, dense)."""
    bases = filter_bases(model)
    if not bases:
        return None
    picked = sorted({round(i * (len(bases) - 1) / max(most - 1, 1)) for i in range(most)})
    picked = [i for i in picked if i < len(bases)]
    return basis_rows([(f"basis {i} of {len(bases)}", bases[i].filters()) for i in picked])
