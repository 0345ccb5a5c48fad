#!/usr/bin/env bash
# Rebuilds the golden files of both shipped manifests from the current code.
# Review the result with `git diff golden/` before committing it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --quiet
pkic=${CARGO_TARGET_DIR:-target}/debug/pkic

"$pkic" -q build -m pki.toml.example \
    --set MASTER_IP=192.0.2.10 --set WORKER1_IP=192.0.2.21 --set WORKER2_IP=192.0.2.22 \
    --update-golden golden/example
if [ -f examples/kubeadm.pki.toml ]; then
    "$pkic" -q build -m examples/kubeadm.pki.toml --update-golden golden/kubeadm
fi
git status --short golden/
