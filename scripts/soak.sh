#!/usr/bin/env bash
# Soak (not CI): 30 minutes of open-loop load at 70 % of measured saturation with a new head
# version pushed every second; checks RSS, open fds, p99 drift and failures (scripts/soak.py).
# Arguments go to soak.py, e.g. scripts/soak.sh --minutes 10 --window 2.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
swift build -c release --product scenescore
for plugin in ApparelPlugin ElectronicsPlugin BeautyPlugin; do swift build -c release --product "$plugin"; done
bash scripts/install-plugins.sh .build/release var/plugins >/dev/null
[ -f var/models/default/backbone.safetensors ] || .build/release/scenescore model init
exec python3 scripts/soak.py "$@"
