"""Filter bases: the adaptive representation that interspace pruning trains."""

from .filter_basis import FilterBasis, filter_bases
from .inits import basis_names, dct_basis, init_basis, register_basis

__all__ = [
    "FilterBasis",
    "basis_names",
    "filter_bases",
    "dct_basis",
    "init_basis",
    "register_basis",
]
