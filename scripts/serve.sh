#!/usr/bin/env bash
# The main job: install what is missing, build the release binary (vector ISA selected in
# Package.swift) and the bundled scene plugins, and serve https://localhost:8443 with the default
# model. The admin API (scene registration, head pushes) listens on https://localhost:8444 with
# the bearer token in var/admin.token (made on first run; SCENESCORE_ADMIN_TOKEN overrides it).
# Extra arguments go to `scenescore serve` (see `.build/release/scenescore serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
swift build -c release --product scenescore
for plugin in ApparelPlugin ElectronicsPlugin BeautyPlugin; do swift build -c release --product "$plugin"; done
scripts/install-plugins.sh .build/release var/plugins
if [ -z "${SCENESCORE_ADMIN_TOKEN:-}" ] && [ -z "${SCENESCORE_ADMIN_TOKEN_FILE:-}" ]; then
  if [ ! -s var/admin.token ]; then
    (umask 077; openssl rand -hex 24 > var/admin.token)
    echo "serve: admin token written to var/admin.token"
  fi
  export SCENESCORE_ADMIN_TOKEN_FILE=var/admin.token
fi
exec .build/release/scenescore serve "$@"
