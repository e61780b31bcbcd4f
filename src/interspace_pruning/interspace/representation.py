"""Which representation a model is pruned in, as a value: dense, spatial (SP) or interspace (IP).

``prepare(model, representation)`` installs the matching parametrisations; everything
afterwards (queries, pruning, pruners, export) reads the representation off the model's
parametrisation classes instead of a string passed around.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from ..bases import basis_names
from ..foundations.hparams import hp
from ..masks.prunable import attach_masks, has_masks
from ..models import check_materialized
from .convert import SHARE_MODES, is_interspace, to_interspace

KINDS = ("dense", "sp", "ip")
Kind = Literal["dense", "sp", "ip"]


def _flag(help: str, choices: Any = None, **options: Any) -> Mapping[str, Any]:
    """The metadata :func:`~interspace_pruning.foundations.hparams.hp` gives a field (help,
    choices, config key), without its default: each field below states its default as a
    plain ``field(default=...)``, which is what the API reference shows."""
    return hp(None, help, choices, **options).metadata


@dataclass(frozen=True)
class Representation:
    """A representation: ``kind`` plus, for IP, the filter-basis options.

    Build one with :meth:`dense`, :meth:`spatial`, :meth:`interspace`, or :meth:`parse` a
    name (``"dense"``, ``"sp"``, ``"ip"`` give the defaults). ``Representation()`` is IP
    with the DCT basis, one filter basis per layer, trained and normalised.

    Attributes:
        kind: ``"ip"`` (filter-basis coefficients; the default), ``"sp"`` (spatial
            weights) or ``"dense"`` (no masks).
        basis: IP: filter-basis initialisation, ``"dct"`` (default), ``"standard"``,
            ``"random"``, ``"pca"``, or one of :func:`~interspace_pruning.basis_names`.
        share: IP: ``"layer"`` (default: one filter basis per layer) or ``"network"``
            (one per kernel shape, shared by the layers with that shape).
        trainable_basis: IP: train the filter bases jointly with the coefficients
            (default ``True``).
        normalize: IP: unit-norm basis filters in the forward pass (default ``True``).
    """

    # The metadata (help, choices, keys) makes these fields a run's --representation,
    # --basis, --share, --trainable-basis and --normalize-basis flags, and its config keys.
    kind: Kind = field(
        default="ip",
        metadata=_flag(
            "ip (filter-basis coefficients), sp (spatial), dense", KINDS, key="representation"
        ),
    )
    basis: str = field(default="dct", metadata=_flag("IP filter-basis initialisation", basis_names))
    share: str = field(
        default="layer",
        metadata=_flag("IP: one filter basis per layer or per network", SHARE_MODES),
    )
    trainable_basis: bool = field(default=True, metadata=_flag("IP: train the filter bases"))
    normalize: bool = field(
        default=True,
        metadata=_flag("IP: unit-norm basis filters in the forward pass", key="normalize_basis"),
    )

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown representation {self.kind!r}; choose one of {KINDS}")
        if self.basis not in basis_names():
            raise ValueError(f"unknown basis {self.basis!r}; choose one of {basis_names()}")
        if self.share not in SHARE_MODES:
            raise ValueError(f"unknown share mode {self.share!r}; choose one of {SHARE_MODES}")

    @classmethod
    def dense(cls) -> Representation:
        """No masks: the model trains as it is (the dense reference)."""
        return cls("dense")

    @classmethod
    def spatial(cls) -> Representation:
        """SP: a mask on each spatial weight (standard unstructured pruning)."""
        return cls("sp")

    @classmethod
    def interspace(
        cls,
        basis: str = "dct",
        share: str = "layer",
        trainable_basis: bool = True,
        normalize: bool = True,
    ) -> Representation:
        """IP: masks on the coefficients of each layer's filters in a filter basis (the
        options as the fields above)."""
        return cls("ip", basis, share, trainable_basis, normalize)

    @classmethod
    def parse(cls, value: str | Representation) -> Representation:
        """A :class:`Representation`, or the default one of a name."""
        if isinstance(value, Representation):
            return value
        if not isinstance(value, str) or value not in KINDS:
            raise ValueError(
                f"unknown representation {value!r}; pass one of {KINDS} or a Representation"
            )
        return cls(value)

    @property
    def is_dense(self) -> bool:
        return self.kind == "dense"

    @property
    def is_spatial(self) -> bool:
        return self.kind == "sp"

    @property
    def is_interspace(self) -> bool:
        return self.kind == "ip"

    def apply(self, model: nn.Module) -> nn.Module:
        """Install this representation's parametrisations on ``model`` (in place)."""
        check_materialized(model)  # lazy layers: no weights to mask yet, one line
        if self.kind == "dense":
            if has_masks(model):
                raise ValueError(
                    "the model is already prepared for pruning; use ip.fold(model) to get a "
                    "dense copy"
                )
            return model
        if self.kind == "sp":
            if any(is_interspace(m) for m in model.modules()):
                raise ValueError(
                    "the model is in the interspace representation (IP); prepare a fresh "
                    "model for SP"
                )
            return attach_masks(model)
        return to_interspace(model, self.basis, self.share, self.trainable_basis, self.normalize)

    def __str__(self) -> str:
        if self.kind != "ip":
            return self.kind
        return (
            f"ip(basis={self.basis}, share={self.share}, trainable={self.trainable_basis}, "
            f"normalize={self.normalize})"
        )


def prepare(model: nn.Module, representation: str | Representation = "ip") -> nn.Module:
    """Put ``model`` into ``representation`` for pruning; returns the same model.

    ``"sp"`` gives every ``nn.Conv2d``/``nn.Linear`` an all-ones mask over its spatial
    weight; ``"ip"`` (or a :class:`Representation` with basis options) converts every conv
    larger than 1x1 to filter-basis coefficients (see
    :func:`~interspace_pruning.to_interspace`) and masks the rest in SP; ``"dense"`` leaves
    the model as it is. The model computes the same function afterwards and keeps its module
    types. IP adds new parameters (the filter bases): build the optimiser after ``prepare``.
    """
    return Representation.parse(representation).apply(model)
