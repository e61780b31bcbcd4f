"""What the fuzz targets share: default libFuzzer flags, the seed corpus, a memory cap."""

from __future__ import annotations

import os
import resource
from pathlib import Path

HERE = Path(__file__).resolve().parent
ADDRESS_SPACE_MB = int(os.environ.get("INTERSPACE_FUZZ_AS_MB", "8192"))


def prepare_argv(argv: list[str], name: str, seed_files: dict[str, bytes]) -> list[str]:
    """Default flags and corpus directory (``fuzz/corpus/<name>/``); the seeds are written
    into the first corpus directory."""
    flags = [a for a in argv[1:] if a.startswith("-")]
    dirs = [a for a in argv[1:] if not a.startswith("-")] or [str(HERE / "corpus" / name)]
    corpus = Path(dirs[0])
    corpus.mkdir(parents=True, exist_ok=True)
    for seed_name, data in seed_files.items():
        (corpus / seed_name).write_bytes(data)
    defaults = {"-artifact_prefix": str(HERE / "artifacts") + os.sep, "-timeout": "30"}
    defaults["-rss_limit_mb"] = "4096"
    for flag, value in defaults.items():
        if not any(f.startswith(flag + "=") for f in flags):
            flags.append(f"{flag}={value}")
    for f in flags:
        if f.startswith("-artifact_prefix=") and f.endswith(os.sep):
            Path(f.partition("=")[2]).mkdir(parents=True, exist_ok=True)
    return [argv[0], *flags, *dirs]


def limit_memory() -> None:
    """Cap the address space (``INTERSPACE_FUZZ_AS_MB``, 8192): a huge allocation fails fast
    (a finding) instead of swamping the machine."""
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    limit = ADDRESS_SPACE_MB * 2**20
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
