#!/usr/bin/env bash
# Trains on a Cloud TPU VM slice: creates the slice unless it exists, copies
# this checkout to every worker, installs it, and runs the same main command on
# all workers at once. JAX finds the other workers itself (midtrain_jax/parallel/multihost.py).
#
#   launch/tpu_pod.sh --name=anneal-7b --zone=us-east5-a --accelerator=v5p-256 -- \
#       --config=configs/anneal.py:size=7b --workdir=gs://bucket/anneal \
#       --config.train.init_from=gs://bucket/base --config.mesh.fsdp=-1 --config.mesh.data=1
#   launch/tpu_pod.sh --dry-run --name=... --zone=... --accelerator=... -- ...
#
# Options before `--`:
#   --name=NAME            TPU VM name (required)
#   --zone=ZONE            zone (required)
#   --accelerator=TYPE     e.g. v5p-256, v5litepod-256, v4-128 (required)
#   --version=IMAGE        TPU VM runtime (default: v2-alpha-tpuv5 for v5p,
#                          v2-alpha-tpuv5-lite for v5e, tpu-ubuntu2204-base otherwise)
#   --project=PROJECT      GCP project (default: gcloud's configured one)
#   --spot                 create a Spot slice
#   --skip_install         the workers already have this checkout installed
#   --dry-run              print the commands, run nothing
# The workdir should be a gs:// path (or shared storage) all workers reach.
set -euo pipefail

name="" zone="" accelerator="" version="" project="" spot="" install=1
dry_run=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name=*) name="${1#*=}" ;;
    --zone=*) zone="${1#*=}" ;;
    --accelerator=*) accelerator="${1#*=}" ;;
    --version=*) version="${1#*=}" ;;
    --project=*) project="${1#*=}" ;;
    --spot) spot=" --spot" ;;
    --skip_install) install=0 ;;
    --dry-run) dry_run=1 ;;
    --) shift; break ;;
    *) echo "tpu_pod.sh: unknown option $1 (main's flags go after --)" >&2; exit 2 ;;
  esac
  shift
done
for required in name zone accelerator; do
  if [[ -z "${!required}" ]]; then
    echo "tpu_pod.sh: --$required is required" >&2
    exit 2
  fi
done

if [[ -z "$version" ]]; then
  case "$accelerator" in
    v5p-*) version=v2-alpha-tpuv5 ;;
    v5litepod-*|v5e-*) version=v2-alpha-tpuv5-lite ;;
    *) version=tpu-ubuntu2204-base ;;
  esac
fi

tpu="gcloud compute tpus tpu-vm"
where="--zone=$zone${project:+ --project=$project}"
args=$(printf ' %q' "$@")
main="cd midtrain_jax && python3 -m midtrain_jax.main${args}"
install_cmd="mkdir -p midtrain_jax && tar -xzf midtrain_jax.tar.gz -C midtrain_jax && pip install -q -e \"./midtrain_jax[tpu]\""
commands=(
  "$tpu describe $name $where > /dev/null 2>&1 || $tpu create $name $where --accelerator-type=$accelerator --version=$version$spot"
)
if [[ $install == 1 ]]; then
  commands+=(
    "git ls-files -z | tar --null -T - -czf midtrain_jax.tar.gz"
    "$tpu scp midtrain_jax.tar.gz $name:~/ $where --worker=all"
    "$tpu ssh $name $where --worker=all --command=${install_cmd@Q}"
  )
fi
commands+=("$tpu ssh $name $where --worker=all --command=${main@Q}")

for command in "${commands[@]}"; do
  if [[ $dry_run == 1 ]]; then
    echo "$command"
  else
    echo "+ $command" >&2
    eval "$command"
  fi
done
