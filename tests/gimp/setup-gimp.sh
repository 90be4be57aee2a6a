#!/usr/bin/env bash
# Install the real GIMP 3.0.4 (Debian 13 rootfs, headless, Python plug-ins) the GIMP tests use.
#   tests/gimp/setup-gimp.sh [DIR]     (default: $BODYPIX_GIMP3_DIR, else .cache/gimp3 in the repo)
# Idempotent: a finished setup only reruns the 8 s smoke test. Needs root (debootstrap +
# chroot), as ../shared/gimp3/setup-gimp3.sh does; GIMP3_MODE=host on a Debian 13 machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SHARED="${BODYPIX_SHARED:-$ROOT/../shared}"
DIR="${1:-${BODYPIX_GIMP3_DIR:-$ROOT/.cache/gimp3}}"
SETUP="$SHARED/gimp3/setup-gimp3.sh"
# a virtual X display and tools to drive the plug-in's dialog in the interactive test
export GIMP3_EXTRA_PACKAGES="${GIMP3_EXTRA_PACKAGES-xvfb xdotool x11-apps}"
[ -x "$SETUP" ] || [ -f "$SETUP" ] || { echo "setup-gimp.sh: $SETUP not found (set BODYPIX_SHARED)" >&2; exit 1; }
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then exec sudo -E bash "$SETUP" "$DIR"; fi
    echo "setup-gimp.sh: needs root (debootstrap/chroot); run: sudo $0" >&2; exit 1
fi
exec bash "$SETUP" "$DIR"
