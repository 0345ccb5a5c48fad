#!/usr/bin/env bash
# The benchmark workload as a hand-written openssl script would build it: one
# openssl process per step (genpkey, req, x509) for each certificate, run one after
# the other. It makes the certificates alone, no kubeconfigs.
#
# Usage: openssl-workload.sh N KEY_ALGORITHM OUT_DIR
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
    key_options=(-algorithm EC -pkeyopt ec_paramgen_curve:P-256)
    leaf_usage="critical, digitalSignature"
    ;;
  rsa-2048)
    key_options=(-algorithm RSA -pkeyopt rsa_keygen_bits:2048)
    leaf_usage="critical, digitalSignature, keyEncipherment"
    ;;
  *)
    echo "openssl-workload: unknown key algorithm: $algorithm" >&2
    exit 2
    ;;
esac

mkdir -p "$out/pki" "$out/nodes"
cat >"$out/extensions.cnf" <<CNF
[server]
basicConstraints = critical, CA:FALSE
keyUsage = $leaf_usage
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local, IP:10.96.0.1, IP:192.0.2.10

[client]
basicConstraints = critical, CA:FALSE
keyUsage = $leaf_usage
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF

# new_ca NAME SUBJECT
new_ca() {
  openssl genpkey "${key_options[@]}" -out "$out/pki/$1.key"
  openssl req -x509 -new -sha256 -days 3650 -key "$out/pki/$1.key" -subj "$2" \
    -addext "basicConstraints = critical, CA:TRUE" \
    -addext "keyUsage = critical, digitalSignature, keyCertSign, cRLSign" \
    -out "$out/pki/$1.crt"
}

# new_leaf PATH_WITHOUT_SUFFIX SUBJECT CA EXTENSION_SECTION
new_leaf() {
  openssl genpkey "${key_options[@]}" -out "$1.key"
  openssl req -new -sha256 -key "$1.key" -subj "$2" -out "$1.csr"
  openssl x509 -req -sha256 -days 365 -in "$1.csr" \
    -CA "$out/pki/$3.crt" -CAkey "$out/pki/$3.key" -CAcreateserial \
    -extfile "$out/extensions.cnf" -extensions "$4" -out "$1.crt"
}

new_ca server-ca "/CN=Server CA"
new_ca client-ca "/CN=Client CA"
new_ca worker-ca "/CN=Worker CA"
new_leaf "$out/pki/apiserver" "/CN=kube-apiserver" server-ca server
new_leaf "$out/pki/admin" "/O=system:masters/CN=admin" client-ca client
new_leaf "$out/pki/apiserver-kubelet-client" \
  "/O=system:masters/CN=kube-apiserver-kubelet-client" server-ca client
for ((i = 1; i <= nodes; i++)); do
  printf -v node 'node-%05d' "$i"
  mkdir -p "$out/nodes/$node/pki"
  new_leaf "$out/nodes/$node/pki/kubelet-client" \
    "/O=system:nodes/CN=system:node:$node" worker-ca client
done
