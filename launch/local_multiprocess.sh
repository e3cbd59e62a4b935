#!/usr/bin/env bash
# Runs N training processes on this host, joined through a local coordinator.
#
# On CPU each process gets its own fake devices (a multi-host rehearsal: the
# same code path as a TPU pod or GPU cluster, collectives over gloo). On a GPU
# host each process gets one GPU.
#
#   launch/local_multiprocess.sh --num_processes=2 --devices_per_process=4 -- \
#       --config=configs/anneal.py:size=tiny --workdir=runs/two_procs
#   launch/local_multiprocess.sh --dry-run --num_processes=2 -- --config=...
#
# Options (before `--`; everything after it goes to midtrain_jax.main):
#   --num_processes=N        processes to start (default 2)
#   --devices_per_process=D  fake CPU devices per process (default 4; cpu only)
#   --platform=cpu|gpu       cpu: fake devices; gpu: CUDA_VISIBLE_DEVICES=<i> (default cpu)
#   --port=P                 coordinator port on localhost (default 12355)
#   --log_dir=DIR            where processes 1..N-1 write their output (default local_logs)
#   --python=BIN             interpreter (default python3)
#   --dry-run                print the commands, run nothing
# Process 0 prints to this terminal. The exit status is non-zero if any process failed.
set -euo pipefail

num_processes=2
devices_per_process=4
platform=cpu
port=12355
log_dir=local_logs
python_bin=python3
dry_run=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --num_processes=*) num_processes="${1#*=}" ;;
    --devices_per_process=*) devices_per_process="${1#*=}" ;;
    --platform=*) platform="${1#*=}" ;;
    --port=*) port="${1#*=}" ;;
    --log_dir=*) log_dir="${1#*=}" ;;
    --python=*) python_bin="${1#*=}" ;;
    --dry-run) dry_run=1 ;;
    --) shift; break ;;
    *) echo "local_multiprocess.sh: unknown option $1 (main's flags go after --)" >&2; exit 2 ;;
  esac
  shift
done
if ! [[ "$num_processes" =~ ^[1-9][0-9]*$ ]]; then
  echo "local_multiprocess.sh: --num_processes=$num_processes must be a positive integer" >&2
  exit 2
fi
if [[ "$platform" != cpu && "$platform" != gpu ]]; then
  echo "local_multiprocess.sh: --platform=$platform must be cpu or gpu" >&2
  exit 2
fi

# The environment and command line of process $1, as one printable line.
command_for() {
  local i=$1 env
  shift
  if [[ "$platform" == cpu ]]; then
    env="JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count=$devices_per_process"
  else
    env="CUDA_VISIBLE_DEVICES=$i"
  fi
  local args
  args=$(printf ' %q' "$@")
  echo "env $env $python_bin -m midtrain_jax.main --coordinator=localhost:$port" \
       "--num_processes=$num_processes --process_id=$i${args}"
}

if [[ $dry_run == 1 ]]; then
  for ((i = 0; i < num_processes; i++)); do
    command_for "$i" "$@"
  done
  exit 0
fi

mkdir -p "$log_dir"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' INT TERM
for ((i = num_processes - 1; i >= 0; i--)); do
  line=$(command_for "$i" "$@")
  if [[ $i == 0 ]]; then
    eval "$line" &
  else
    eval "$line" > "$log_dir/process_$i.log" 2>&1 &
  fi
  pids[$i]=$!
done
status=0
for ((i = 0; i < num_processes; i++)); do
  if ! wait "${pids[$i]}"; then
    echo "local_multiprocess.sh: process $i failed (output: ${log_dir}/process_$i.log)" >&2
    status=1
  fi
done
exit $status
