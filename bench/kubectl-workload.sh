#!/usr/bin/env bash
# Writes one kubelet kubeconfig per node with `kubectl config set-*`, the way a
# hand-written script does: set-cluster, set-credentials, set-context and
# use-context, four kubectl processes per kubeconfig. The kubeconfigs refer to the
# certificate files by path, as pkic's do, so no certificate needs to exist.
#
# Usage: kubectl-workload.sh N OUT_DIR
set -euo pipefail

if (($# != 2)); then
  echo "usage: $0 N OUT_DIR" >&2
  exit 2
fi
nodes=$1
out=$2

for ((i = 1; i <= nodes; i++)); do
  printf -v node 'node-%05d' "$i"
  mkdir -p "$out/nodes/$node"
  config="$out/nodes/$node/kubelet.conf"
  user="system:node:$node"
  kubectl config set-cluster kubernetes --kubeconfig="$config" \
    --server=https://192.0.2.10:6443 \
    --certificate-authority=/etc/kubernetes/pki/server-ca.crt >/dev/null
  kubectl config set-credentials "$user" --kubeconfig="$config" \
    --client-certificate=/etc/kubernetes/pki/kubelet-client.crt \
    --client-key=/etc/kubernetes/pki/kubelet-client.key >/dev/null
  kubectl config set-context "$user@kubernetes" --kubeconfig="$config" \
    --cluster=kubernetes --user="$user" >/dev/null
  kubectl config use-context "$user@kubernetes" --kubeconfig="$config" >/dev/null
done
