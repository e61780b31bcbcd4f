"""Forward wall time: dense (torch and ONNX Runtime) vs SP-sparse vs IP-sparse inference.

    python benchmarks/inference_speed.py [--models resnet20 vgg16] [--batches 1 32] [--memory]

For each model, sparsity (random global pruning) and batch size: the dense model
(``sparse_inference(mode="dense")``: folded, BatchNorm fused into the convolutions), the same
folded model exported to ONNX and run by ONNX Runtime (CPU, all graph optimisations, the same
thread count), and ``sparse_inference(mode="sparse")`` of the SP- and IP-pruned models (every
pruned layer on its sparse path, BatchNorm and the following ReLU / residual add fused;
--mode auto: what users get by default, chosen by measurement on each batch size, so never
slower than the dense form as measured). The four take turns in blocks of 5 forward passes,
each block after a 50 ms pause and one untimed pass, so that drifts in machine speed hit all
alike and no engine's spinning worker threads slow the next (``inference.timing``); each
time is the median of --repeats passes, on --threads threads. Speed-ups are over ONNX
Runtime (the deployment bar) and over torch dense; beside each, its FLOP bound, dense FLOPs
/ sparse FLOPs (``costs``). The targets at 95% and batch 32 are marked met or missed.

--memory adds peak resident memory per engine, each in its own process: the whole process
after its forward passes (``VmHWM``) and the growth during them, with the engine's tensors.

--per-layer adds, per model, a breakdown at the first sparsity and the largest batch: each
pruned layer timed alone on the input it gets, and the rest of the network (pooling,
activations, additions), which no sparsity speeds up.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from _models import pruned_model

import interspace_pruning as ip
from interspace_pruning.inference import native
from interspace_pruning.inference.engine import layer_inputs
from interspace_pruning.inference.timing import interleaved_medians
from interspace_pruning.training.device import cpu_model

TARGETS = {"vgg16": 3.0, "resnet20": 1.5}  # IP speed-up over ONNX Runtime, 95%, batch 32
IP_OVER_SP = 1.3


class OrtEngine:
    """ONNX Runtime (CPU) on the folded dense model, called like a module."""

    def __init__(self, model: torch.nn.Module, threads: int, path: Path) -> None:
        import onnxruntime as ort

        ip.export_onnx(model, path, (3, 32, 32))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor):
        return self.session.run(None, {self.name: x.numpy()})[0]


def auto_choice(engine: torch.nn.Module) -> str:
    """Which plan ``sparse_inference(mode="auto")`` kept, and the timings it compared."""
    timings = engine.auto_timings
    kept = sum(v == "sparse" for v in engine.plan.values())
    won = min(timings, key=timings.get) if timings else "FLOP rule"
    shown = ", ".join(f"{k} {v:.1f}" for k, v in timings.items())
    return f"{won} plan, {kept}/{len(engine.plan)} layers sparse ({shown})"


def per_layer(engines: dict, x: torch.Tensor, repeats: int) -> None:
    """Per pruned layer: median ms of each engine's module on the input it gets."""
    inputs = {k: layer_inputs(m, x, set(m.plan)) for k, m in engines.items()}
    totals = interleaved_medians(engines, x, repeats)
    print(f"\n| layer | input | {' | '.join(f'{k} ms' for k in engines)} |")
    print("|---|---|" + "---|" * len(engines))
    sums = dict.fromkeys(engines, 0.0)
    for name in engines["dense"].plan:
        layers = {k: m.get_submodule(name) for k, m in engines.items()}
        t = {k: interleaved_medians({k: layers[k]}, inputs[k][name], repeats)[k] for k in layers}
        for k in sums:
            sums[k] += t[k]
        shape = "x".join(map(str, inputs["dense"][name].shape))
        print(f"| {name} | {shape} | " + " | ".join(f"{t[k] * 1e3:.2f}" for k in engines) + " |")
    print("| all pruned layers | | " + " | ".join(f"{sums[k] * 1e3:.1f}" for k in engines) + " |")
    rest = {k: totals[k] - sums[k] for k in engines}
    print("| rest of the network | | " + " | ".join(f"{rest[k] * 1e3:.1f}" for k in engines) + " |")


def _tensor_bytes(module) -> int:
    """Bytes of the distinct tensors an engine holds (parameters, buffers, kernel arrays)."""
    seen, total = set(), 0
    for m in module.modules():
        for v in (
            list(m.__dict__.values()) + list(m._parameters.values()) + list(m._buffers.values())
        ):
            tensors = [v] if isinstance(v, torch.Tensor) else []
            if tensors and v.layout == torch.sparse_csr:
                tensors = [v.crow_indices(), v.col_indices(), v.values()]
            for t in tensors:
                key = (t.untyped_storage().data_ptr(), t.dtype)
                if key not in seen:
                    seen.add(key)
                    total += t.untyped_storage().nbytes()
    return total


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def memory_child(name: str, engine_kind: str, sparsity: float, batch: int, threads: int) -> None:
    """One torch engine in this process: peak RSS over 3 forward passes after building it."""
    torch.set_num_threads(threads)
    model = pruned_model(name, "sp" if engine_kind == "dense" else engine_kind, sparsity).eval()
    engine = ip.sparse_inference(model, mode="dense" if engine_kind == "dense" else "sparse")
    held = _tensor_bytes(engine)
    del model  # what a deployment keeps is the engine only
    gc.collect()
    ctypes.CDLL(None).malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # restart the peak (VmHWM) from here
    before = _status("VmRSS")
    x = torch.randn(batch, 3, 32, 32)
    with torch.no_grad():
        for _ in range(3):
            engine(x)
    peak = _status("VmHWM")
    print(json.dumps({"peak": peak, "growth": peak - before, "tensors": held}))


# ONNX Runtime alone, as a deployment runs it: no torch in the process
_ORT_CHILD = """
import json, sys
from pathlib import Path
import numpy as np
import onnxruntime as ort
path, batch, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
o = ort.SessionOptions()
o.intra_op_num_threads, o.inter_op_num_threads = threads, 1
s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
Path("/proc/self/clear_refs").write_text("5")
before = status("VmRSS")
x = np.random.default_rng(0).standard_normal((batch, 3, 32, 32), dtype=np.float32)
for _ in range(3):
    s.run(None, {s.get_inputs()[0].name: x})
peak = status("VmHWM")
size = sum(f.stat().st_size for f in Path(path).parent.glob(Path(path).name + "*"))  # + .data
print(json.dumps({"peak": peak, "growth": peak - before, "tensors": size}))
"""


def memory_table(args) -> None:
    kinds = ["dense", "onnxruntime", "sp", "ip"]
    print(
        "\nPeak resident memory, MB: each engine alone in a fresh process (ONNX Runtime "
        "without torch); whole process after 3 forward passes / growth during them / "
        "engine tensors (ONNX Runtime: the .onnx file and its external data)"
    )
    print("\n| model | sparsity | batch | " + " | ".join(kinds) + " |")
    print("|---|---|---|" + "---|" * len(kinds))
    tmp = tempfile.TemporaryDirectory()
    for name in args.models:
        for s in args.sparsities:
            onnx_path = Path(tmp.name) / f"{name}-{s}.onnx"
            ip.export_onnx(pruned_model(name, "sp", s).eval(), onnx_path, (3, 32, 32))
            for b in args.batches:
                cells = []
                for kind in kinds:
                    if kind == "onnxruntime":
                        cmd = [sys.executable, "-c", _ORT_CHILD, str(onnx_path), str(b)]
                        cmd += [str(args.threads)]
                    else:
                        cmd = [sys.executable, __file__, "--memory-child", name, kind, str(s)]
                        cmd += [str(b), "--threads", str(args.threads)]
                    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                    r = json.loads(out.strip().splitlines()[-1])
                    mb = [r[k] / 2**20 for k in ("peak", "growth", "tensors")]
                    cells.append(f"{mb[0]:.0f} / {mb[1]:.0f} / {mb[2]:.1f}")
                print(f"| {name} | {s:.0%} | {b} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet20", "vgg16"])
    p.add_argument("--sparsities", nargs="+", type=float, default=[0.9, 0.95, 0.98, 0.99])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mode", default="sparse", choices=["sparse", "auto"])
    p.add_argument("--per-layer", action="store_true", help="add a per-layer breakdown")
    p.add_argument("--no-onnxruntime", action="store_true", help="skip ONNX Runtime")
    p.add_argument("--memory", action="store_true", help="add peak memory per engine")
    p.add_argument("--memory-child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_child:
        name, kind, s, b = args.memory_child
        memory_child(name, kind, float(s), int(b), args.threads)
        return
    torch.set_num_threads(args.threads)
    use_ort = not args.no_onnxruntime
    print(
        f"{cpu_model()}, kernel path {native.kernel_path()}, torch {torch.__version__}, "
        f"{args.threads} threads, median of {args.repeats}"
    )
    print(
        "| model | sparsity | batch | ORT ms | dense ms | SP ms | IP ms | SP / ORT (FLOP bound) "
        "| IP / ORT | IP / torch dense | IP / SP time |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    results, choices = {}, []
    tmp = tempfile.TemporaryDirectory()
    for name in args.models:
        for s in args.sparsities:
            engines, bounds, models = {}, {}, {}
            for rep in ("sp", "ip"):
                models[rep] = model = pruned_model(name, rep, s).eval()
                c = ip.costs(model, (3, 32, 32))
                bounds[rep] = c.dense_flops / c.sparse_flops
                engines[rep] = ip.sparse_inference(model, mode="sparse")
            engines["dense"] = ip.sparse_inference(model, mode="dense")  # one dense baseline
            if use_ort:
                engines["ort"] = OrtEngine(model, args.threads, Path(tmp.name) / f"{name}.onnx")
            for b in args.batches:
                x = torch.randn(b, 3, 32, 32)
                if args.mode == "auto":  # chosen by measurement on this batch size
                    for rep in ("sp", "ip"):
                        engines[rep] = ip.sparse_inference(models[rep], example=x)
                    choices.append(
                        f"{name} {s:.0%} batch {b}: "
                        + "; ".join(f"{r.upper()} {auto_choice(engines[r])}" for r in ("sp", "ip"))
                    )
                t = interleaved_medians(engines, x, args.repeats)
                base = t["ort"] if use_ort else t["dense"]
                results[name, s, b] = t
                ort_ms = f"{t['ort'] * 1e3:.1f}" if use_ort else "-"
                print(
                    f"| {name} | {s:.0%} | {b} | {ort_ms} | {t['dense'] * 1e3:.1f} | "
                    f"{t['sp'] * 1e3:.1f} | {t['ip'] * 1e3:.1f} | "
                    f"{base / t['sp']:.2f}x ({bounds['sp']:.1f}x) | "
                    f"{base / t['ip']:.2f}x ({bounds['ip']:.1f}x) | "
                    f"{t['dense'] / t['ip']:.2f}x | {t['ip'] / t['sp']:.2f} |",
                    flush=True,
                )
            if args.per_layer and s == args.sparsities[0]:
                x = torch.randn(max(args.batches), 3, 32, 32)
                print(f"\n{name}, {s:.0%} sparsity, batch {x.shape[0]}:")
                per_layer({k: engines[k] for k in ("dense", "sp", "ip")}, x, args.repeats)
                print()
    if choices:
        print("\nauto mode's choice (whole-model check, median ms of each plan it timed):")
        for line in choices:
            print(f"- {line}")
    if use_ort:
        print("\nTargets at 95% sparsity, batch 32:")
        for name, (key, target) in ((n, ((n, 0.95, 32), TARGETS[n])) for n in TARGETS):
            if key in results:
                t = results[key]
                got = t["ort"] / t["ip"]
                verdict = "met" if got >= target else "missed"
                print(
                    f"- {name}: IP-sparse >= {target}x ONNX Runtime dense: {verdict} ({got:.2f}x)"
                )
                ratio = t["ip"] / t["sp"]
                verdict = "met" if ratio <= IP_OVER_SP else "missed"
                print(f"- {name}: IP / SP time <= {IP_OVER_SP}: {verdict} ({ratio:.2f})")
    if args.memory:
        memory_table(args)


if __name__ == "__main__":
    main()
