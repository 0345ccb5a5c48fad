#!/usr/bin/env bash
# The benchmark workload as a cfssl script would build it: `cfssl gencert` with a
# ca-config profile for each certificate, its JSON output split into PEM files by
# `cfssljson -bare`, one certificate after the other. It makes the certificates
# alone, no kubeconfigs.
#
# Usage: cfssl-workload.sh N KEY_ALGORITHM OUT_DIR
#   KEY_ALGORITHM  ecdsa-p256 or rsa-2048
set -euo pipefail

if (($# != 3)); then
  echo "usage: $0 N ecdsa-p256|rsa-2048 OUT_DIR" >&2
  exit 2
fi
nodes=$1
algorithm=$2
out=$3

case $algorithm in
  ecdsa-p256)
    key='"key": {"algo": "ecdsa", "size": 256}'
    usages='"signing", "digital signature"'
    ;;
  rsa-2048)
    key='"key": {"algo": "rsa", "size": 2048}'
    usages='"signing", "digital signature", "key encipherment"'
    ;;
  *)
    echo "cfssl-workload: unknown key algorithm: $algorithm" >&2
    exit 2
    ;;
esac

mkdir -p "$out/pki" "$out/nodes"
cat >"$out/ca-config.json" <<JSON
{
  "signing": {
    "default": {"expiry": "8760h"},
    "profiles": {
      "server": {"usages": [$usages, "server auth"], "expiry": "8760h"},
      "client": {"usages": [$usages, "client auth"], "expiry": "8760h"}
    }
  }
}
JSON

# csr_json FILE CN [O]
csr_json() {
  local names=""
  if (($# > 2)); then
    names=", \"names\": [{\"O\": \"$3\"}]"
  fi
  printf '{"CN": "%s", %s%s}\n' "$2" "$key" "$names" >"$1"
}

# new_ca NAME CN
new_ca() {
  csr_json "$out/pki/$1-csr.json" "$2"
  cfssl gencert -initca "$out/pki/$1-csr.json" | cfssljson -bare "$out/pki/$1"
}

# new_leaf PATH_WITHOUT_SUFFIX CA PROFILE HOSTNAMES CN [O]
new_leaf() {
  local path=$1 ca=$2 profile=$3 hostnames=$4
  shift 4
  csr_json "$path-csr.json" "$@"
  cfssl gencert -ca="$out/pki/$ca.pem" -ca-key="$out/pki/$ca-key.pem" \
    -config="$out/ca-config.json" -profile="$profile" -hostname="$hostnames" \
    "$path-csr.json" | cfssljson -bare "$path"
}

new_ca server-ca "Server CA"
new_ca client-ca "Client CA"
new_ca worker-ca "Worker CA"
new_leaf "$out/pki/apiserver" server-ca server \
  kubernetes,kubernetes.default,kubernetes.default.svc,kubernetes.default.svc.cluster.local,10.96.0.1,192.0.2.10 \
  kube-apiserver
new_leaf "$out/pki/admin" client-ca client "" admin system:masters
new_leaf "$out/pki/apiserver-kubelet-client" server-ca client "" \
  kube-apiserver-kubelet-client system:masters
for ((i = 1; i <= nodes; i++)); do
  printf -v node 'node-%05d' "$i"
  mkdir -p "$out/nodes/$node/pki"
  new_leaf "$out/nodes/$node/pki/kubelet-client" worker-ca client "" \
    "system:node:$node" system:nodes
done
