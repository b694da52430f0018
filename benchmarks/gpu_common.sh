# Sourced, never run, by the benchmarks/gpu_*.sh scripts that drive `growlm experiment` on one GPU:
# the setup they share. Sourcing it moves to the repository root, runs growlm from src/ and exports
# GROWLM_SHARED (when unset: SHARED_DEFAULT, relative to the repository root, default ../shared).
# A script that wants other defaults sets OMP_NUM_THREADS or SHARED_DEFAULT before sourcing it.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export GROWLM_SHARED=${GROWLM_SHARED:-$PWD/${SHARED_DEFAULT:-../shared}}

# gpu_name: the GPU's name, memory and driver, one CSV line per GPU
gpu_name() {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
}

# sample_gpu FILE SECONDS FORMAT [NVIDIA-SMI OPTIONS...]: appends the GPU utilisation and memory used,
# as nvidia-smi's --format FORMAT, to FILE every SECONDS in the background until stop_sampling
sample_gpu() {
  local file=$1 every=$2 format=$3
  shift 3
  (while true; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format="$format" "$@" >> "$file"
                  sleep "$every"; done) &
  GPU_SAMPLER=$!
}

stop_sampling() {
  kill "$GPU_SAMPLER" 2>/dev/null
}

# experiment_on_gpu NAME KILL_S OUT_DIR LOG [OPTIONS...]: `growlm experiment NAME` on CUDA into OUT_DIR,
# its output in LOG, stopped with SIGINT (it checkpoints and can be resumed) after LIMIT seconds and
# killed KILL_S seconds later; returns its exit status
experiment_on_gpu() {
  local name=$1 kill_s=$2 dir=$3 log=$4
  shift 4
  timeout -s INT -k "$kill_s" "$LIMIT" python -m growlm.cli.main experiment "$name" --device cuda --out "$dir" "$@" \
      > "$log" 2>&1
}

# finished_line RC START DIR [TOTAL]: the experiment's exit status, the seconds since START (epoch
# seconds) and how many of its units (in DIR/units) have finished
finished_line() {
  echo "rc=$1 seconds=$(( $(date +%s) - $2 )) units finished: $(find "$3/units" -name final.json | wc -l)${4:-}"
}
