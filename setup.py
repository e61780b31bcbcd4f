"""Builds the optional native sparse-convolution kernel (src/interspace_pruning/inference/spconv.c).

Everything else lives in pyproject.toml. The kernel carries every path for its architecture
(x86-64: AVX-512, AVX2+FMA and plain C; aarch64: NEON and plain C) and picks the best one the
CPU supports at run time, so the default build is portable (a wheel is as fast as a local
build). ``INTERSPACE_NATIVE=1`` adds ``-march=native`` (``-mcpu=native`` on ARM), which only
changes the plain C path and the glue; ``INTERSPACE_NO_NATIVE=1`` skips the kernel. Without
a compiler the install still succeeds and inference uses the pure-torch path.
"""

import os
import platform

from setuptools import Extension, setup

flags = ["-O3", "-fopenmp", "-std=gnu11", "-ffp-contract=fast", "-Wno-psabi"]
if os.environ.get("INTERSPACE_NATIVE") and not os.environ.get("INTERSPACE_PORTABLE"):
    if platform.machine().lower() in ("x86_64", "amd64"):
        flags += ["-march=native"]
    else:
        flags += ["-mcpu=native"]

extensions = [
    Extension(
        "interspace_pruning.inference._spconv",
        sources=["src/interspace_pruning/inference/spconv.c"],
        depends=["src/interspace_pruning/inference/spconv_path.h"],
        extra_compile_args=flags,
        extra_link_args=["-fopenmp"],
        optional=True,  # a failed build falls back to the torch path
    )
]
setup(ext_modules=[] if os.environ.get("INTERSPACE_NO_NATIVE") else extensions)
