#!/usr/bin/env bash
# Installs the bundled scene plugins into a plugin directory:
#   scripts/install-plugins.sh BUILD_BIN_DIR DEST_DIR
# BUILD_BIN_DIR is where SwiftPM put the libraries (`swift build -c release --show-bin-path`, e.g.
# .build/release); DEST_DIR is the server's plugin directory, created if missing. Each
# lib<X>Plugin.so is copied (never linked: the server refuses links that leave its directory)
# as <scene>.so, the name the server loads it by. A plugin library written in Swift stays mapped
# once loaded, so to roll out a new build of one while the server runs, install it under a new
# name (e.g. electronics2.so) and register that.
set -euo pipefail

if [ "$#" -ne 2 ]; then
    echo "usage: $0 BUILD_BIN_DIR DEST_DIR" >&2
    exit 2
fi
bin="$1"
dest="$2"

# library → plugin name (file stem)
plugins=("ApparelPlugin:apparel" "ElectronicsPlugin:electronics" "BeautyPlugin:beauty")

for entry in "${plugins[@]}"; do
    library="$bin/lib${entry%%:*}.so"
    if [ ! -f "$library" ]; then
        echo "install-plugins: $library is missing; build it first: swift build -c release --product ${entry%%:*}" >&2
        exit 1
    fi
done

mkdir -p "$dest"
for entry in "${plugins[@]}"; do
    library="$bin/lib${entry%%:*}.so"
    target="$dest/${entry##*:}.so"
    # Copy to a temporary name, then rename over the old file: a server that has the old
    # library mapped keeps its (unlinked) inode, and no reader ever sees a half-written file.
    tmp="$(mktemp "$dest/.${entry##*:}.so.XXXXXX")"
    cp "$library" "$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$target"
    echo "installed $target"
done
