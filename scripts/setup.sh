#!/usr/bin/env bash
# Installs what SceneScore needs on a fresh Debian 12 machine, skipping what is already there:
# the C libraries it links (libnghttp2, OpenSSL), the real HTTP/2 peers the tests and
# benchmarks drive (curl, nghttp, h2load, nghttpd), and the Python packages of the reference
# client and reference tests. Swift itself is expected at /opt/swift or on PATH.
set -euo pipefail

need_apt=()
pkg-config --exists libnghttp2 2>/dev/null || need_apt+=(libnghttp2-dev)
pkg-config --exists openssl 2>/dev/null || need_apt+=(libssl-dev)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
command -v curl >/dev/null || need_apt+=(curl)
command -v nghttp >/dev/null || need_apt+=(nghttp2-client)
command -v h2load >/dev/null || need_apt+=(nghttp2-client)
command -v nghttpd >/dev/null || need_apt+=(nghttp2-server)
command -v openssl >/dev/null || need_apt+=(openssl)
# The shared registry (several replicas): libpq to link, and for the replica tests a PostgreSQL
# server (started privately by Tests/replicas, never the system's cluster) and HAProxy.
pkg-config --exists libpq 2>/dev/null || need_apt+=(libpq-dev)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v haproxy >/dev/null || need_apt+=(haproxy)
command -v python3 >/dev/null || need_apt+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

need_pip=()
for mod in numpy:numpy safetensors:safetensors httpx:httpx[http2] h2:h2 hyperframe:hyperframe \
           hpack:hpack threadpoolctl:threadpoolctl pytest:pytest kubernetes_validate:kubernetes-validate onnx:onnx onnxruntime:onnxruntime; do
  python3 -c "import ${mod%%:*}" 2>/dev/null || need_pip+=("${mod#*:}")
done
if [ ${#need_pip[@]} -gt 0 ]; then
  echo "setup: pip installing ${need_pip[*]}"
  python3 -m pip install -q "${need_pip[@]}" 2>/dev/null \
    || python3 -m pip install -q --break-system-packages "${need_pip[@]}"
fi

if ! command -v swift >/dev/null; then
  if [ -x /opt/swift/usr/bin/swift ]; then export PATH=/opt/swift/usr/bin:$PATH
  else echo "setup: Swift 6 toolchain not found (expected on PATH or at /opt/swift)" >&2; exit 1; fi
fi
