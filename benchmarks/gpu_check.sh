#!/usr/bin/env bash
# One lent GPU session's checks and measurements, in order of value, each stage time-boxed:
#   1. the CUDA tests (`@pytest.mark.cuda`) and the device tests, on the GPU;
#   2. the paper recipe's epoch time (recipes/cifar10_resnet20.yaml: ResNet-20, CIFAR-10,
#      batch 128, SNIP at 98%), SP and IP, fp32 (TF32 off) and bf16: 2 epochs each, the
#      second epoch's time counts (the first autotunes cuDNN);
#   3. with RUNS set (e.g. RUNS=103-174), those runs of the CIFAR-10 table
#      (recipes/cifar10_resnet20_cpu.py --runs), WORKERS processes sharing the GPU, until
#      DEADLINE seconds after the start; finished runs' small files go to $OUT/runs.tar.
#   4. the campaign (recipes/campaign_cpu.yaml, device auto: the GPU) with WORKERS processes
#      until DEADLINE seconds after the start, nothing committed there; the campaign folders'
#      run files (small files, and the checkpoints of runs the deadline stopped) go to
#      $OUT/campaign.tar: untar it at the repository root and commit.
#
#   OUT=out DATA=dir-holding-cifar-10-batches-py RUNS=103-174 bash benchmarks/gpu_check.sh
#   OUT=out DATA=... STAGES=4 DEADLINE=540 bash benchmarks/gpu_check.sh
#
# Run it from the repository root. Python packages: torch with CUDA, numpy, pyyaml, tqdm,
# matplotlib, scikit-learn, pytest; the package itself is taken from src/.
set -u
OUT=${OUT:?set OUT to a folder for the results}
DATA=${DATA:?set DATA to the folder that holds cifar-10-batches-py}
RUNS=${RUNS:-}
STAGES=${STAGES:-123}  # e.g. STAGES=3: only the table runs
WORKERS=${WORKERS:-12}
DEADLINE=${DEADLINE:-520}
PY=${PY:-python3}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
START=$SECONDS
mkdir -p "$OUT"
log() { echo "[$((SECONDS - START)) s] $*" | tee -a "$OUT/gpu_check.log"; }

log "host: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)"
log "torch: $($PY -c 'import torch; print(torch.__version__, torch.version.cuda)')"
log "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1)"

# the runs read data/ (their configurations, hence run names, say root: data)
[ -e data ] || ln -s "$DATA" data

if [[ $STAGES == *1* ]]; then
    log "stage 1: CUDA tests"
    timeout 150 $PY -m pytest -q -p no:cacheprovider tests/training/test_device.py 2>&1 |
        tail -n 15 | tee -a "$OUT/gpu_check.log"
fi

if [[ $STAGES == *2* ]]; then
    log "stage 2: paper recipe epoch time (SNIP 98%, batch 128, 2 epochs)"
    for precision in fp32 bf16; do
        for rep in sp ip; do
            dir=/tmp/epoch_time/$rep-$precision
            timeout 120 $PY -m interspace_pruning train --dataset cifar10 --root data \
                --model resnet20 --representation $rep --method snip --sparsity 0.98 \
                --epochs 2 --batch-size 128 --lr 0.1 --momentum 0.9 --weight-decay 1e-4 \
                --schedule step --step-milestones 0.5,0.75 --device cuda --precision $precision \
                --out "$dir" --overwrite --quiet >/dev/null 2>"$OUT/train_$rep-$precision.err"
            $PY - "$dir" "$rep" "$precision" <<'EOF' | tee -a "$OUT/gpu_check.log"
import json, sys
from pathlib import Path
d, rep, precision = sys.argv[1:]
lines = (Path(d) / "metrics.jsonl").read_text().splitlines() if Path(d).exists() else []
rows = [json.loads(line) for line in lines]
if len(rows) < 2:
    print(f"  {rep} {precision}: did not finish 2 epochs")
else:
    t = rows[1]["epoch_time"]
    print(f"  {rep} {precision}: epoch 2 {t:.1f} s (160 epochs ~ {160 * t / 60:.0f} min), "
          f"epoch 1 {rows[0]['epoch_time']:.1f} s, test_acc {rows[1]['test_acc']:.4f}")
EOF
        done
    done
fi

if [[ $STAGES == *3* && -n $RUNS ]]; then
    log "stage 3: CIFAR-10 table runs $RUNS, $WORKERS workers, until ${DEADLINE} s"
    runs=docs/results/cifar10_resnet20_cpu/runs
    finished() { (cd $runs && ls -d */summary.json 2>/dev/null | sed 's#/summary.json##' | sort); }
    finished >/tmp/finished_before
    pack() {  # runs finished here: config, summary, metrics (IMP rounds too); no checkpoints
        finished | comm -13 /tmp/finished_before - >/tmp/finished_here
        (cd $runs && while read -r d; do find "$d" -name '*.json*'; done </tmp/finished_here |
            tar -cf "$OUT/runs.tar.tmp" -T - && mv "$OUT/runs.tar.tmp" "$OUT/runs.tar")
    }
    $PY recipes/cifar10_resnet20_cpu.py --runs "$RUNS" --workers "$WORKERS" --threads 1 \
        >"$OUT/sweep.log" 2>&1 &
    sweep=$!
    while kill -0 $sweep 2>/dev/null && [ $((SECONDS - START)) -lt "$DEADLINE" ]; do
        sleep 20
        pack
    done
    pack
    kill -TERM $sweep 2>/dev/null  # workers checkpoint, then exit; give them 20 s
    for _ in $(seq 20); do kill -0 $sweep 2>/dev/null || break; sleep 1; done
    pack
    log "stage 3: $(wc -l </tmp/finished_here) runs finished here"
fi
if [[ $STAGES == *4* ]]; then
    left=$((DEADLINE - (SECONDS - START)))
    log "stage 4: the campaign, $WORKERS workers, ${left} s"
    $PY -m interspace_pruning campaign recipes/campaign_cpu.yaml --deadline "${left}s" \
        --margin 30 --workers "$WORKERS" --threads 1 --no-commit >"$OUT/campaign.log" 2>&1
    find docs/results/cifar10_bf16_check docs/results/cifar10_resnet20_converged \
        \( -name '*.json' -o -name '*.jsonl' -o -name checkpoint.pt \) 2>/dev/null |
        tar -cf "$OUT/campaign.tar" -T -
    log "stage 4: $(grep -c ' done ' "$OUT/campaign.log") runs finished here"
fi
log "done"
