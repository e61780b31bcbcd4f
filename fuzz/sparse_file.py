"""Coverage-guided fuzz target (atheris) for the sparse-file reader, ``load_sparse``.

Run from the repository root (``pip install -e ".[fuzz]"`` first)::

    python fuzz/sparse_file.py -max_total_time=900        # corpus: fuzz/corpus/sparse_file/
    python fuzz/sparse_file.py -atheris_runs=2000 -seed=1 DIR
    python fuzz/sparse_file.py --materialize crash-... out.isp   # the file an input stands for

An input is one of two things. Bytes starting with ``PK`` are a sparse file (a torch zip):
the seeds are real exported files (SP and IP models, layer- and network-shared bases, a
version-1 file) without their checksum trailer, and the target appends a fresh one
(``with_checksum``) whenever the bytes still end like a torch zip without a comment, so that
mutations get past the checksum to the header and tensor validation and the model rebuild.
Any other input is a header: byte 0 picks the tensors of one seed file and the rest is the
JSON header written with them. Besides libFuzzer's byte mutations, a structure-aware mutator
edits the JSON header (values, keys, list items) and the tensors (values such as NaN or
2**31, dtype, shape, views with stride 0 or an offset, sparse layout, keys added or removed).

Each file is loaded twice: by the model its header names (``model=None``; only registered
names: an import path must be refused and nothing may be imported) and into a fresh model
given as ``model=``. Accepted outcomes: a ``ValueError`` whose message is one line, or a model
that runs: its tensors finite, its outputs finite on a finite input (or, for huge but finite
weights, those of its float64 twin: float32 overflowing is arithmetic, not the reader), and
its sparse inference agreeing with it.
Anything else is a finding: another exception, a message of several lines, non-finite
outputs, a module imported, peak memory growing by ``INTERSPACE_FUZZ_RSS_MB`` (1024) MB on one
input (the address space is capped at ``INTERSPACE_FUZZ_AS_MB``, 8192), a crash or a hang
(``-timeout``, 30 s). libFuzzer writes the input to ``fuzz/artifacts/`` (``-artifact_prefix``).
``INTERSPACE_FUZZ_STATS=N`` prints the commonest outcomes every N inputs.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import functools
import io
import json
import os
import random
import resource
import sys
import tempfile
import warnings
from pathlib import Path

import atheris
import torch

with atheris.instrument_imports(include=["interspace_pruning"]):
    import interspace_pruning as ip
    from interspace_pruning import models
    from interspace_pruning.foundations.checkpoint import with_checksum
    from interspace_pruning.inference.sparse_format import load_sparse, sparse_payload
    from interspace_pruning.models.convnet import ConvNet

from common import limit_memory, prepare_argv

TINY = "fuzz_tiny"  # a registered model: a header may name it
RSS_GROWTH_MB = int(os.environ.get("INTERSPACE_FUZZ_RSS_MB", "1024"))
SHOW_STATS = int(os.environ.get("INTERSPACE_FUZZ_STATS", "0"))
_EOCD = b"PK\x05\x06"
_LAZY = ("torch.", "encodings.")  # modules torch may import lazily while loading


def tiny(num_classes: int = 10, in_channels: int = 1) -> torch.nn.Module:
    return ConvNet(num_classes=num_classes, in_channels=in_channels, width=4)


def _pruned(build, rep: str, share: str = "layer", trainable=True, normalize=True):
    torch.manual_seed(0)
    m = build()
    if rep == "ip":
        ip.to_interspace(m, "dct", share, trainable, normalize)
    ip.prune(m, "random", 0.8)
    return m.eval()


@functools.lru_cache(maxsize=1)
def payloads() -> tuple[dict, ...]:
    """The seed files' contents: SP and IP, shared and per-layer bases, named or not."""
    named = {"name": TINY, "num_classes": 10, "in_channels": 1}
    return (
        sparse_payload(_pruned(tiny, "sp"), named),
        sparse_payload(_pruned(tiny, "ip"), None),
        sparse_payload(_pruned(tiny, "ip", "network", False, False), named),
        sparse_payload(
            _pruned(lambda: models.get("convnet", 10, 1), "ip"),
            {"name": "convnet", "num_classes": 10, "in_channels": 1},
        ),
    )


def _zip(payload) -> bytes:
    """``torch.save`` output: a zip whose comment is empty (no checksum yet)."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


@functools.lru_cache(maxsize=1)
def seeds() -> dict[str, bytes]:
    out = {}
    for i, p in enumerate(payloads()):
        out[f"seed-file-{i}"] = _zip(p)
        if i < 3:
            out[f"seed-header-{i}"] = bytes([i]) + p["meta"].encode()
    meta = json.loads(payloads()[1]["meta"])  # version 1: no init, no representation
    meta["version"] = 1
    meta.pop("representation")
    for b in meta["bases"]:
        b.pop("init")
    v1 = _zip({"meta": json.dumps(meta), "tensors": payloads()[1]["tensors"]})
    out["seed-file-v1"] = v1[:-2] + b"\x02\0v1"  # a zip comment, not a checksum: unchecked
    return out


def materialize(data: bytes) -> bytes:
    """The file an input stands for (see the module docstring)."""
    if data[:2] == b"PK":
        if len(data) >= 22 and data[-22:-18] == _EOCD and data[-2:] == b"\0\0":
            return with_checksum(data)
        return data
    tensors = payloads()[data[0] % len(payloads())]["tensors"] if data else {}
    return with_checksum(_zip({"meta": data[1:].decode("utf-8", "replace"), "tensors": tensors}))


# ---- the structure-aware mutator ----------------------------------------------------------

_NUMBERS = [0, 1, -1, 2, 3, 9, 10, 31, 32, 33, 2**15, 2**31 - 1, 2**31, 2**63, -(2**63), 1.5]
_VALUES = [*_NUMBERS, None, True, False, "", "ip", "sp", "layer", "network", "dct", [], {}]
_VALUES += ["convnet", TINY, "resnet50", "os:system", "json:loads", "interspace-sparse"]
_VALUES += [[3, 3], [1, 1], [32, 3, 3], [2**31 - 1, 1], [0]]
_KEYS = ["format", "version", "model", "representation", "layers", "bases", "share", "name"]
_KEYS += ["kind", "shape", "basis", "kernel", "init", "normalize", "trainable", "num_classes"]
_KEYS += ["in_channels"]
_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8]
_DTYPES += [torch.uint8, torch.int16, torch.int32, torch.int64, torch.bool, torch.complex64]
_SPECIAL = [float("nan"), float("inf"), -float("inf"), 3e38, -1.0, 0.0, 1e-45, 2**31 - 1, -(2**31)]


def _nodes(obj, out: list) -> list:
    """``(container, key)`` of every value inside ``obj``."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    for k, v in list(items):
        out.append((obj, k))
        if isinstance(v, dict | list):
            _nodes(v, out)
    return out


def _mutate_json(obj, rng: random.Random):
    root = [obj]
    nodes = _nodes(root, [])
    strings = [v[k] for v, k in nodes if isinstance(v[k], str)]
    for _ in range(rng.randint(1, 3)):
        parent, key = rng.choice(nodes)
        value = parent[key]
        op = rng.randrange(7)
        if op == 0:
            parent[key] = rng.choice(_VALUES)
        elif op == 1 and isinstance(value, int) and not isinstance(value, bool):
            parent[key] = rng.choice([value + 1, value - 1, 2 * value, -value, value // 2])
        elif op == 2 and strings:
            parent[key] = rng.choice(strings)
        elif op == 3 and parent is not root:
            del parent[key]
            return root[0]  # the node list is stale now
        elif op == 4 and isinstance(value, list) and value:
            value.insert(rng.randrange(len(value) + 1), json.loads(json.dumps(rng.choice(value))))
        elif op == 5 and isinstance(value, dict):
            value[rng.choice(_KEYS)] = rng.choice(_VALUES)
        elif op == 6 and isinstance(value, list) and len(value) > 1:
            i, j = rng.randrange(len(value)), rng.randrange(len(value))
            value[i], value[j] = value[j], value[i]
        else:  # a copy of another node
            other, where = rng.choice(nodes)
            parent[key] = json.loads(json.dumps(other[where]))
    return root[0]


def _mutate_header(text: str, rng: random.Random) -> str:
    try:
        return json.dumps(_mutate_json(json.loads(text), rng))
    except (ValueError, KeyError, IndexError, TypeError, RecursionError):
        return text[: rng.randrange(len(text) + 1)]


def _mutate_tensor(t: torch.Tensor, rng: random.Random):
    op = rng.choices(range(11), weights=[4, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2])[0]
    flat = t.reshape(-1)
    if op == 0 and flat.numel():
        t = t.clone()
        for _ in range(rng.randint(1, 3)):
            with contextlib.suppress(RuntimeError, OverflowError):
                t.reshape(-1)[rng.randrange(flat.numel())] = rng.choice(_SPECIAL)
        return t
    if op == 1:
        return t.to(rng.choice(_DTYPES))
    if op == 2:
        return rng.choice([flat, t.unsqueeze(0), flat.reshape(1, -1), flat.reshape(-1, 1)])
    if op == 3:
        return rng.choice([flat[:-1], flat[1:], flat[:0], torch.cat([flat, flat[-1:]])])
    if op == 4 and flat.numel():
        return flat[:1].expand(rng.choice([2, 2**10, 2**20, 2**31 - 1]))
    if op == 5:
        return rng.choice([flat[::2], t.t() if t.dim() == 2 else flat.flip(0)])
    if op == 6:
        return t.to_sparse()
    if op == 7:
        return torch.zeros(0, rng.choice([1, 2**20, 2**31 - 1]), dtype=t.dtype)
    if op == 8:
        return rng.choice([1, "x", [1, 2], None, 1.5])
    if op == 9 and t.is_floating_point():  # large but finite weights
        return t * rng.choice([-1.0, 1e4, 1e10, 1e20, 1e30])
    return t + rng.choice([1, -1, 1000]) if t.dtype != torch.bool else ~t


def _mutate_tensors(payload: dict, rng: random.Random) -> None:
    tensors = payload.get("tensors")
    if not isinstance(tensors, dict) or not tensors or rng.random() < 0.02:
        payload["tensors"] = rng.choice([{}, [], "x", payloads()[0]["tensors"]])
        return
    keys = list(tensors)
    key = rng.choice(keys)
    op = rng.randrange(8)
    if op == 0:
        del tensors[key]
    elif op == 1:  # a copy under another (plausible) name
        module = key.split("/")[-1].rpartition(".")[0] or "stage1.0.1"
        leaf = rng.choice(["weight", "bias", "running_mean", "running_var", "num_batches_tracked"])
        name = rng.choice([f"state/{module}.{leaf}", f"basis/{rng.randrange(4)}", key + "x"])
        tensors[name] = tensors[rng.choice(keys)]
    elif op == 2:
        other = rng.choice(keys)
        tensors[key], tensors[other] = tensors[other], tensors[key]
    elif op == 3 and rng.random() < 0.2:
        payload["meta"] = rng.choice([1, None, b"{}", ["x"]])
    elif isinstance(tensors[key], torch.Tensor):
        with contextlib.suppress(RuntimeError, ValueError, TypeError, IndexError):
            tensors[key] = _mutate_tensor(tensors[key], rng)


def _payload(data: bytes):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:  # a damaged zip
        return None


def mutate(data: bytes, max_size: int, seed: int) -> bytes:
    """libFuzzer's mutations (20%), or a structure-aware one. An input whose structure is
    lost (a header that is not JSON, a zip torch cannot read) mostly restarts from a seed:
    the search stays on files that reach the deeper checks."""
    rng = random.Random(seed)
    if not data or rng.random() < 0.2:
        return atheris.Mutate(data, max_size)
    if data[:2] != b"PK":
        text = data[1:].decode("utf-8", "replace")
        with contextlib.suppress(ValueError, RecursionError):
            json.loads(text)
            return (data[:1] + _mutate_header(text, rng).encode())[:max_size]
        if rng.random() < 0.5:
            return atheris.Mutate(data, max_size)
        data = seeds()[f"seed-header-{rng.randrange(3)}"]
        return (data[:1] + _mutate_header(data[1:].decode(), rng).encode())[:max_size]
    payload = _payload(data)
    if not isinstance(payload, dict):
        if rng.random() < 0.5:
            return atheris.Mutate(data, max_size)
        payload = _payload(seeds()[f"seed-file-{rng.randrange(len(payloads()))}"])
    if isinstance(payload.get("meta"), str) and rng.random() < 0.5:
        payload["meta"] = _mutate_header(payload["meta"], rng)
    else:
        _mutate_tensors(payload, rng)
    out = _zip(payload)
    return out if len(out) <= max_size else atheris.Mutate(data, max_size)


# ---- the target ---------------------------------------------------------------------------


def _finding(message: str) -> AssertionError:
    return AssertionError(message)


def _input_channels(model: torch.nn.Module) -> int:
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    return conv.in_channels


def _check_model(model: torch.nn.Module, how: str, engine: bool) -> None:
    """A model that loaded: every tensor finite, outputs finite on a finite input (unless
    only float32's range is exceeded: its float64 twin computes finite outputs), and, with
    ``engine``, its sparse inference agrees with it."""
    model.eval()
    for name, t in model.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise _finding(f"{how}: the loaded model's {name} is not finite")
    x = torch.randn(2, _input_channels(model), 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x)
        if not bool(torch.isfinite(y).all()):
            twin = copy.deepcopy(model).double()(x.double())
            if not bool(torch.isfinite(twin).all()):
                raise _finding(f"{how}: the loaded model gives non-finite outputs")
            return  # huge (finite) values: float32 overflows, not the reader's doing
        if not engine or float(y.abs().max()) > 1e20:  # summation order matters there
            return
        z = ip.sparse_inference(model, mode="sparse")(x)
    if z.shape != y.shape or not bool(torch.isfinite(z).all()):
        raise _finding(f"{how}: sparse inference gives {list(z.shape)} / non-finite outputs")
    tol = 1e-3 * max(1.0, float(y.abs().max()))
    if not torch.allclose(z, y, rtol=1e-3, atol=tol):
        diff = float((z - y).abs().max())
        raise _finding(f"{how}: sparse inference differs from the model by {diff:.3g}")


STATS: collections.Counter = collections.Counter()


def _load(path: Path, model, how: str) -> None:
    try:
        loaded = load_sparse(path, model)
    except ValueError as e:
        text = str(e).strip()
        if not text or "\n" in text:
            raise _finding(f"{how}: a ValueError without a one-line message: {text!r:.500}") from e
        STATS[text.replace(str(path), "FILE")[:60]] += 1
        return
    STATS["loaded"] += 1
    _check_model(loaded, how, engine=model is not None)  # the engine once per input


def _no_import(*args, **kwargs):
    raise _finding(f"a model was imported from a file: {args!r:.200}")


class Target:
    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="ipfuzz-")) / "input.isp"
        self.modules: set[str] | None = None
        self.rss_kb = 0
        self.watch = False
        self.count = 0

    def __call__(self, data: bytes) -> None:
        if self.watch and self.modules is None:  # the first input under the fuzzer
            self.modules = set(sys.modules)
            self.rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.path.write_bytes(materialize(data))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _load(self.path, None, "model named by the header")
            _load(self.path, tiny(), "model=ConvNet(width=4)")
        self.count += 1
        if SHOW_STATS and self.count % SHOW_STATS == 0:
            print(f"outcomes after {self.count} inputs:", file=sys.stderr)
            print(f"  {STATS['loaded']:8d}  loaded", file=sys.stderr)
            for outcome, n in STATS.most_common(12):
                print(f"  {n:8d}  {outcome}", file=sys.stderr)
        if self.modules is not None:
            # torch's own lazy imports (its unpickler, a codec) are not named by the file
            new = {m for m in set(sys.modules) - self.modules if not m.startswith(_LAZY)}
            if new:
                raise _finding(f"loading imported modules: {sorted(new)[:5]}")
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            if rss - self.rss_kb > RSS_GROWTH_MB * 1024:
                grown, self.rss_kb = (rss - self.rss_kb) // 1024, rss
                raise _finding(f"peak memory grew by {grown} MB on one input")

    def warm_up(self) -> None:
        """Run the seeds once (torch imports some modules lazily), then watch imports/memory."""
        for data in seeds().values():
            self(data)
        self.watch = True


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    models.register(TINY, tiny)
    models.build_from_path = _no_import  # a file must never make load_sparse import
    if len(argv) == 4 and argv[1] == "--materialize":
        Path(argv[3]).write_bytes(materialize(Path(argv[2]).read_bytes()))
        return
    limit_memory()
    target = Target()
    target.warm_up()
    atheris.Setup(prepare_argv(argv, "sparse_file", seeds()), target, custom_mutator=mutate)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
