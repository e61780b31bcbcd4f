"""The interspace representation: conversion of conv layers to FB coefficients and back."""

from .convert import basis_parameters, filter_bases, fold, is_interspace, to_interspace
from .parametrization import InterspaceWeight

__all__ = [
    "InterspaceWeight",
    "basis_parameters",
    "filter_bases",
    "fold",
    "is_interspace",
    "to_interspace",
]
