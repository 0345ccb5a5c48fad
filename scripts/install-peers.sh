#!/usr/bin/env bash
# Installs the programs that the peer tests run against pkic's output: openssl,
# etcd, etcdctl and kubectl, from Debian 12 packages.
#
# Installs only what is missing, and runs `apt-get update` only when it installs
# something, so a second run changes nothing. A kubectl already on PATH is kept,
# whatever its origin. Needs root when something is missing. Exits non-zero if
# any program is still missing afterwards.
set -euo pipefail

# Each program the tests run, and the Debian package that provides it.
programs=(openssl etcd etcdctl kubectl)
declare -A package_of=(
  [openssl]=openssl
  [etcd]=etcd-server
  [etcdctl]=etcd-client
  [kubectl]=kubernetes-client
)

missing_programs=()
missing_packages=()
for program in "${programs[@]}"; do
  if ! command -v "$program" >/dev/null 2>&1; then
    missing_programs+=("$program")
    missing_packages+=("${package_of[$program]}")
  fi
done

if ((${#missing_packages[@]} > 0)); then
  echo "install-peers: not on PATH: ${missing_programs[*]}" >&2
  if ((EUID != 0)); then
    echo "install-peers: error: installing packages needs root; run: sudo bash $0" >&2
    exit 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-peers: error: apt-get not found; install the packages" \
      "${missing_packages[*]} (Debian 12 names) with this system's package manager" >&2
    exit 1
  fi
  echo "install-peers: installing ${missing_packages[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing_packages[@]}"
fi

still_missing=()
for program in "${programs[@]}"; do
  if ! command -v "$program" >/dev/null 2>&1; then
    still_missing+=("$program")
  fi
done
if ((${#still_missing[@]} > 0)); then
  echo "install-peers: error: still not on PATH after installing: ${still_missing[*]}" >&2
  exit 1
fi

# One version line per peer, so that a test log shows what the tests ran against.
# A failure here is only reported: etcd 3.4 exits at start on arm64 and other
# architectures it does not list as stable unless ETCD_UNSUPPORTED_ARCH is set,
# which the tests set themselves.
print_version() {
  local version
  version=$("$@" 2>&1 | head -n 1) || true
  echo "install-peers: $1: ${version:-(no version output)}" >&2
}
print_version openssl version
print_version etcd --version
print_version etcdctl version
print_version kubectl version --client
