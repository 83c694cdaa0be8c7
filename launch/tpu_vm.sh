#!/bin/bash
# One seqjax experiment on every host of a Cloud TPU VM slice, with one command.
#
#   launch/tpu_vm.sh my-v4-32 us-central2-b experiments/language_model.py --preset=zaremba_large \
#       --workdir=gs-fuse-or-nfs/runs/ptb_large
#
# Packs the committed tree (git archive HEAD), copies it to every worker, installs seqjax with JAX's
# TPU wheels, and runs the same command on all workers at once. --distributed makes each process call
# jax.distributed.initialize(), which finds the slice's hosts from the TPU VM's metadata. --workdir
# must be on storage all workers share. DRY_RUN=1 prints the gcloud commands instead of running them.
set -euo pipefail

if [[ $# -lt 3 ]]; then
  echo "usage: launch/tpu_vm.sh TPU_NAME ZONE experiments/SCRIPT.py [flags...]" >&2
  exit 2
fi
name=$1
zone=$2
shift 2
command=$(printf '%q ' python "$@" --distributed)
archive=$(mktemp -t seqjax.XXXXXX.tar.gz)
trap 'rm -f "$archive"' EXIT

run() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    printf '%q ' "$@"
    echo
  else
    "$@"
  fi
}

cd "$(dirname "$0")/.."
run git archive --format=tar.gz -o "$archive" HEAD
run gcloud compute tpus tpu-vm scp "$archive" "$name:seqjax.tar.gz" --zone="$zone" --worker=all
run gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all --command="
  set -e; mkdir -p seqjax && tar -xzf seqjax.tar.gz -C seqjax && cd seqjax &&
  pip install -q 'jax[tpu]' -e . && $command"
