#!/usr/bin/env bash
# The trainer on a GPU, in one short run: its tests on CUDA, the trainer benchmark (tokens/s and
# MFU for a ~110 M parameter model, eager and torch.compile, bf16) and a shortened budget
# experiment. Installs nothing: it runs the project as it is checked out.
#
#   bench/gpu.sh [--cpu] [--out DIR]
#
# --cpu: the same steps, tiny, on the CPU (CI runs it so the script does not rot).
# Figures: DIR/figures.txt (what each step printed) and DIR/*.json; default DIR var/bench-gpu.
# Exit status: that of the first step that failed (every step runs even so).
set -u
cd "$(dirname "$0")/.."
MODE=gpu
OUT=var/bench-gpu
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) MODE=cpu ;;
    --out) OUT="$2"; shift ;;
    *) echo "usage: bench/gpu.sh [--cpu] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
mkdir -p "$OUT"
FIG="$OUT/figures.txt"
: > "$FIG"
STATUS=0

step() {  # step NAME COMMAND...: run it, its output to the figures file too
  local name="$1"; shift
  echo "== $name ($(date -u +%H:%M:%S))" | tee -a "$FIG"
  "$@" 2>&1 | tee -a "$FIG"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc" | tee -a "$FIG"
  [ "$rc" -ne 0 ] && [ "$STATUS" -eq 0 ] && STATUS=$rc
  return 0
}

if [ "$MODE" = gpu ]; then
  if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA device visible to torch; use --cpu" >&2
    exit 3
  fi
  export FOUNDRY_TEST_DEVICE=cuda
  step "device" "$PY" -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0), torch.cuda.device_count(), 'device(s)')"
  step "trainer tests on CUDA" "$PY" -m pytest -q -x tests/trainer --ignore=tests/trainer/test_trainer_kafka.py
  # GPT-2-small shape with the project tokenizer's 32 000 vocabulary: about 110 M parameters
  BIG=(--set model.n_layer=12 --set model.n_head=12 --set model.n_embd=768 --set model.block_size=1024
       --set data.micro_batch_rows=16 --set data.loader_workers=4 --set data.prefetch_rows=256
       --set data.heldout_from=first_shards)  # the held-out set from the first shard: no rebuilds in the window
  step "trainer benchmark, bf16 eager" "$PY" bench/trainer.py --config default "${BIG[@]}" --steps 40 --warmup 8 \
    --shards 12 --json-out "$OUT/trainer_eager.json"
  step "trainer benchmark, bf16 torch.compile" "$PY" bench/trainer.py --config default "${BIG[@]}" \
    --set compile=true --steps 40 --warmup 12 --shards 12 --json-out "$OUT/trainer_compile.json"
  BUDGET=(--steps 600 --eval-every 50 --seeds 0 --device cuda --arms none,value,value-sampled,random,oracle)
else
  export FOUNDRY_TEST_DEVICE=cpu
  step "device" "$PY" -c "import torch; print(torch.__version__, 'cpu,', torch.get_num_threads(), 'threads')"
  step "trainer tests on CPU (a sample)" "$PY" -m pytest -q -x tests/trainer/test_trainer_runs.py
  step "trainer benchmark, tiny" "$PY" bench/trainer.py --config tiny --set torch_threads=1 --steps 12 --warmup 2 \
    --vocab 512 --shards 4 --json-out "$OUT/trainer_tiny.json"
  BUDGET=(--steps 30 --eval-every 10 --seeds 0 --device cpu --sample-every 3
          --sampled-direction-every 10 --arms none,value,value-sampled,random)
fi

if [ -d ../shared/data ]; then
  step "budget experiment (shortened)" "$PY" bench/budget.py "${BUDGET[@]}" --out "$OUT/budget"
else
  echo "== budget experiment: skipped, ../shared/data is not here" | tee -a "$FIG"
fi
echo "figures: $FIG (exit $STATUS)"
exit "$STATUS"
