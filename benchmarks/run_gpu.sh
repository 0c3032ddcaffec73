#!/usr/bin/env bash
# The throughput benchmark on a lent GPU machine (JAX + PyTorch + CUDA, no Keras):
# prepare once with ../shared/device/prep.sh (Keras wheels in .whl/), carry .whl, run this.
# Writes JSON (and profile summaries) under $OUT (default ./benchmarks/results).
set -u
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import jax, torch; print('jax', jax.__version__, jax.devices(), 'torch', torch.__version__)"
B=${BATCH:-512}
KERAS_BACKEND=jax timeout 230 python3 benchmarks/throughput.py --batch-size $B --precision bf16 \
  --presets gcm_cu --steps 30 --profile --output "$OUT/throughput_jax_bf16_gcm_cu.json" 2>&1 | grep -v "^W0000\|^I0000"
KERAS_BACKEND=torch timeout 140 python3 benchmarks/throughput.py --batch-size $B --precision bf16 \
  --presets gcm_cu --steps 8 --output "$OUT/throughput_torch_bf16_gcm_cu.json" 2>&1 | grep -v "^W0000\|^I0000"
KERAS_BACKEND=jax timeout 170 python3 benchmarks/throughput.py --batch-size $B --precision bf16 \
  --presets gcm_vu cu_e --steps 20 --output "$OUT/throughput_jax_bf16_more.json" 2>&1 | grep -v "^W0000\|^I0000"
ls -la "$OUT"
