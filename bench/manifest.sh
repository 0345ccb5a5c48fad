#!/usr/bin/env bash
# Prints the pkic manifest of the benchmark workload: a Server, a Client and a
# Worker CA, the apiserver serving certificate, the admin and apiserver-kubelet
# client certificates, and N nodes, each with a kubelet client certificate and a
# kubeconfig.
#
# Usage: manifest.sh N KEY_ALGORITHM [RENAMED_NODE]
#   N              number of [[node]] entries, named node-00001, node-00002, ...
#   KEY_ALGORITHM  a pkic key-algorithm, e.g. ecdsa-p256 or rsa-2048
#   RENAMED_NODE   optional index of one node to name node-NNNNN-renamed, for the
#                  one-node-changed rebuild
set -euo pipefail

if (($# < 2)); then
  echo "usage: $0 N KEY_ALGORITHM [RENAMED_NODE]" >&2
  exit 2
fi
nodes=$1
algorithm=$2
renamed=${3:-0}

cat <<TOML
[cluster]
name = "kubernetes"
servers = ["https://192.0.2.10:6443"]
advertise-address = "192.0.2.10"
service-cidr = "10.96.0.0/12"
dns-domain = "cluster.local"

[defaults]
key-algorithm = "$algorithm"
validity = "365d"
ca-validity = "10y"

[ca.server-ca]
subject = { cn = "Server CA" }

[ca.client-ca]
subject = { cn = "Client CA" }

[ca.worker-ca]
subject = { cn = "Worker CA" }

# The apiserver role adds the SANs kubernetes, kubernetes.default,
# kubernetes.default.svc, kubernetes.default.svc.cluster.local, 10.96.0.1 and the
# advertise address.
[cert.apiserver]
issuer = "server-ca"
role = "apiserver"

[cert.admin]
issuer = "client-ca"
role = "admin"
subject = { cn = "admin", o = "system:masters" }

[cert.apiserver-kubelet-client]
issuer = "server-ca"
role = "apiserver-kubelet-client"
subject = { cn = "kube-apiserver-kubelet-client", o = "system:masters" }

# CN=system:node:<node>, O=system:nodes
[per-node.cert.kubelet-client]
issuer = "worker-ca"
role = "kubelet-client"

[per-node.kubeconfig.kubelet]
user = "kubelet-client"
ca = "server-ca"
file = "kubelet.conf"
TOML

# Node i gets the address 10.x.y.z made of the three low bytes of i.
for ((i = 1; i <= nodes; i++)); do
  printf -v name 'node-%05d' "$i"
  if ((i == renamed)); then
    name="$name-renamed"
  fi
  printf '\n[[node]]\nname = "%s"\nips = ["10.%d.%d.%d"]\n' \
    "$name" $((i >> 16 & 255)) $((i >> 8 & 255)) $((i & 255))
done
