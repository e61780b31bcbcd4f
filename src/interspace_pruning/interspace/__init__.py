"""The interspace representation: conversion of conv layers to FB coefficients and back."""

from .convert import basis_parameters, filter_bases, fold, is_interspace, to_interspace
from .parametrization import InterspaceWeight
from .representation import Representation, prepare

__all__ = [
    "InterspaceWeight",
    "Representation",
    "basis_parameters",
    "filter_bases",
    "fold",
    "is_interspace",
    "prepare",
    "to_interspace",
]
