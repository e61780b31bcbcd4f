"""Builds the optional native sparse-convolution kernel (src/interspace_pruning/inference/spconv.c).

Everything else lives in pyproject.toml. The kernel is compiled for this machine
(``-march=native``); set ``INTERSPACE_PORTABLE=1`` to build a portable binary (e.g. a wheel)
or ``INTERSPACE_NO_NATIVE=1`` to skip it. Without a compiler the install still succeeds and
inference uses the pure-torch path.
"""

import os
import platform

from setuptools import Extension, setup

flags = ["-O3", "-fopenmp", "-std=gnu11", "-ffp-contract=fast", "-Wno-psabi"]
if not os.environ.get("INTERSPACE_PORTABLE"):
    if platform.machine().lower() in ("x86_64", "amd64"):
        flags += ["-march=native", "-mprefer-vector-width=512"]
    else:
        flags += ["-mcpu=native"]

extensions = [
    Extension(
        "interspace_pruning.inference._spconv",
        sources=["src/interspace_pruning/inference/spconv.c"],
        extra_compile_args=flags,
        extra_link_args=["-fopenmp"],
        optional=True,  # a failed build falls back to the torch path
    )
]
setup(ext_modules=[] if os.environ.get("INTERSPACE_NO_NATIVE") else extensions)
