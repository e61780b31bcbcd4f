"""A restricted unpickler for dataset files: a pickle is code, so admit only data.

Only the builtin containers and numpy arrays can be rebuilt; any other global (``os.system``,
``builtins.eval``, ...) is refused before it is looked up.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    # protocol-2 pickles written by Python 3 store raw bytes through codecs.encode
    ("_codecs", "encode"),
}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references something other than plain data."""


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise UnsafePickleError(
                f"refusing to load {module}.{name}: dataset pickles may only hold containers "
                "and numpy arrays"
            )
        return super().find_class(module, name)


def safe_load(data: bytes, encoding: str = "bytes") -> Any:
    """Unpickle ``data`` admitting only builtin containers and numpy arrays."""
    return RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
