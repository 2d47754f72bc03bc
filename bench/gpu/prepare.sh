#!/usr/bin/env bash
# Run HERE (the development machine, with node_modules installed), once before a device run:
# packs into bench/gpu/.carry/ (self-ignored, ~35 MB) what bench/gpu/run.sh needs on a GPU machine
# that has no Node and no internet: the node binary, the runtime packages (webgpu = Dawn for
# linux-x64, esbuild for the TypeScript loader, pngjs, jpeg-js), the Vulkan loader, and
# torchvision's cached detections for the bundled model (made and checked by a short local bench).
#
#   bash bench/gpu/prepare.sh
#   then, with the device tool: run(command="bash bench/gpu/run.sh", carry=["bench/gpu/.carry"], timeout_s=600)
set -euo pipefail
cd "$(dirname "$0")/../.."
C=bench/gpu/.carry

[ "$(uname -m)" = x86_64 ] || { echo "prepare.sh: this machine is $(uname -m); the GPU machine is x86_64, so the binaries packed here would not run there" >&2; exit 1; }
[ -f node_modules/webgpu/dist/linux-x64/dawn.node ] || { echo "prepare.sh: node_modules/webgpu is missing; run npm ci first" >&2; exit 1; }

rm -rf "$C/lib" "$C/cache" "$C/node_modules.tar.xz"
mkdir -p "$C/lib" "$C/cache"
printf '*\n' > "$C/.gitignore"

node_bin=$(command -v node)
if [ -f "$C/node.xz" ] && [ "$(cat "$C/node.version" 2>/dev/null)" = "$(node --version)" ]; then
  echo "keeping $C/node.xz ($(node --version))"
else
  echo "packing $node_bin ($(node --version)) ..."
  xz -T0 -6 -c "$node_bin" > "$C/node.xz.tmp" && mv "$C/node.xz.tmp" "$C/node.xz"
  node --version > "$C/node.version"
fi

echo "packing node_modules (linux-x64 only) ..."
tar -cJf "$C/node_modules.tar.xz" \
  node_modules/webgpu/package.json node_modules/webgpu/index.js node_modules/webgpu/dist/linux-x64 \
  node_modules/esbuild node_modules/@esbuild/linux-x64 node_modules/pngjs node_modules/jpeg-js

# Dawn dlopens libvulkan.so.1; the GPU machine's image may not have the loader.
loader=$(ldconfig -p | awk '/libvulkan\.so\.1 .*x86-64/ && !found {print $NF; found = 1}')
[ -n "$loader" ] || { echo "prepare.sh: no libvulkan.so.1 here to carry (apt-get install libvulkan1)" >&2; exit 1; }
cp -L "$loader" "$C/lib/libvulkan.so.1"

echo "making (or reusing) torchvision's reference for the bundled model with a short local bench ..."
node --import ./tools/register.mjs bench/e2e.ts --only bundled --repeats 1 --warmup 0 > "$C/prepare-bench.log" 2>&1 \
  || { tail -20 "$C/prepare-bench.log"; echo "prepare.sh: the local bundled bench failed (log above)" >&2; exit 1; }
mkdir -p "$C/cache/bundled"
cp bench/.cache/bundled/*.json "$C/cache/bundled/"

tracked=$(git ls-files -co --exclude-standard -z 2>/dev/null | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1 || true)
tracked=${tracked:-0}
carried=$(du -sb "$C" | cut -f1)
echo "bench/gpu/.carry: $((carried / 1048576)) MiB; with the working tree $(((tracked + carried) / 1048576)) MiB (the device tool takes 64 MiB at most)"
ls -la "$C"
