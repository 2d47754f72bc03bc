#!/usr/bin/env bash
# Installs the system packages maskgpu's tests need on Debian 12, idempotently (.ci/run keeps it quiet):
#  - Mesa >= 24 lavapipe (Dawn rejects bookworm's Mesa 22) from bookworm-backports,
#  - Chromium for the Puppeteer browser test,
#  - python3-torchvision (only when MASKGPU_WITH_TORCH=1: tools/ regenerate fixtures with it; tests do not need it).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

mesa_major() {
  dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | sed -E 's/^([0-9]+:)?([0-9]+).*/\2/' || true
}

need_update=1
apt_update() { if [ "$need_update" = 1 ]; then $SUDO apt-get update -qq; need_update=0; fi; }
apt_install() { $SUDO apt-get install -y -qq -o=Dpkg::Use-Pty=0 "$@"; }

if [ ! -f /etc/apt/sources.list.d/bookworm-backports.sources ] && grep -q bookworm /etc/os-release 2>/dev/null; then
  $SUDO tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

m=$(mesa_major)
if [ -z "$m" ] || [ "$m" -lt 24 ]; then
  apt_update
  apt_install -t bookworm-backports mesa-vulkan-drivers
fi
if ! command -v chromium >/dev/null 2>&1; then
  apt_update
  apt_install chromium
fi
if [ "${MASKGPU_WITH_TORCH:-0}" = 1 ] && ! /usr/bin/python3 -c 'import torchvision' 2>/dev/null; then
  apt_update
  apt_install python3-torchvision
fi
