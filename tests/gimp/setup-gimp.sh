#!/usr/bin/env bash
# Install a real GIMP 3 (Debian root file system, headless, Python plug-ins) for the GIMP tests.
#   tests/gimp/setup-gimp.sh [3.0|3.2] [DIR]
#     3.0 (default): GIMP 3.0.4 from Debian 13 (trixie), DIR default $BODYPIX_GIMP3_DIR or .cache/gimp3
#     3.2:           GIMP 3.2.6 from Debian sid, the current stable release,
#                    DIR default $BODYPIX_GIMP32_DIR or .cache/gimp3-sid
#   tests/gimp/setup-gimp.sh DIR       (old form: GIMP 3.0 into DIR)
# Idempotent: a finished setup only reruns the 8 s smoke test. Needs root (debootstrap +
# chroot), as ../shared/gimp3/setup-gimp3.sh does; GIMP3_MODE=host on a Debian 13 machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SHARED="${BODYPIX_SHARED:-$ROOT/../shared}"
VERSION=3.0
case "${1:-}" in 3.0|3.2) VERSION="$1"; shift;; esac
case "$VERSION" in
    3.0) SUITE=trixie; DIR="${1:-${BODYPIX_GIMP3_DIR:-$ROOT/.cache/gimp3}}";;
    3.2) SUITE=sid; DIR="${1:-${BODYPIX_GIMP32_DIR:-$ROOT/.cache/gimp3-sid}}";;
esac
export GIMP3_SUITE="$SUITE"
SETUP="$SHARED/gimp3/setup-gimp3.sh"
# a virtual X display and tools to drive the plug-in's dialog in the interactive test
export GIMP3_EXTRA_PACKAGES="${GIMP3_EXTRA_PACKAGES-xvfb xdotool x11-apps}"
[ -f "$SETUP" ] || { echo "setup-gimp.sh: $SETUP not found (set BODYPIX_SHARED)" >&2; exit 1; }
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then exec sudo -E bash "$SETUP" "$DIR"; fi
    echo "setup-gimp.sh: needs root (debootstrap/chroot); run: sudo $0 $VERSION" >&2; exit 1
fi
exec bash "$SETUP" "$DIR"
