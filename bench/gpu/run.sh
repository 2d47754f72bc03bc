#!/usr/bin/env bash
# Run ON THE GPU MACHINE, from a copy of the repo with bench/gpu/.carry (made by prepare.sh):
# unpacks Node and the runtime packages if the machine lacks them, checks that Dawn got a real
# (not software) Vulkan adapter and prints it, then runs, with short repeats (~3-5 min in all):
#   1. npm run bench:kernels              conv2d on the ResNet-50 shapes vs the best matmul, and every
#                                         3x3 stride-1 layer as Winograd F(2,3) and F(4,3) beside it
#   2. npm run bench -- --only bundled    the bundled model, dense and pruned 40 %, with the built-in
#                                         (direct) tiles; then npm run tune on the two Winograd classes
#                                         and the same bench with what it chose (direct or Winograd)
#   3. npm run bench -- --only fullsize   the full-size architecture at 800x1216 (needs python3
#      with torch + torchvision there: tools/compare_fullsize.py makes the weights and the
#      torchvision reference first; if that fails the step is reported and skipped)
# Everything lands in $OUT (default bench/gpu/out): run.log (all output), adapter.json,
# kernels.json, e2e-bundled.json, e2e-fullsize.json, status.txt (one line per step).
# MASKGPU_ALLOW_SOFTWARE=1 lets it go on with a software adapter: only to dry-run this script.
set -u -o pipefail
cd "$(dirname "$0")/../.."
C=bench/gpu/.carry
OUT=${OUT:-$PWD/bench/gpu/out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/run.log") 2>&1
status() { echo "$1" | tee -a "$OUT/status.txt"; }
step() { # step NAME TIMEOUT_S command...: runs it, records its exit status, never stops the script
  local name=$1 limit=$2; shift 2
  echo; echo "=== $name: $* (limit ${limit}s)"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@"
  local rc=$?
  status "$name: exit $rc in $((SECONDS - t0)) s$([ $rc = 124 ] && echo ' (timed out)')"
  return $rc
}
echo "maskgpu GPU bench, $(date -u +%FT%TZ), $(nproc) cores, uptime: $(uptime)"

# --- Node -------------------------------------------------------------------------------------
node_ok() { command -v node >/dev/null && node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>20||(a===20&&b>=6)?0:1)'; }
if ! node_ok; then
  [ -f "$C/node.xz" ] || { status "setup: no node >= 20.6 here and no $C/node.xz: run bench/gpu/prepare.sh and carry $C"; exit 2; }
  mkdir -p /tmp/maskgpu-node/bin
  xz -dc "$C/node.xz" > /tmp/maskgpu-node/bin/node && chmod +x /tmp/maskgpu-node/bin/node
  export PATH=/tmp/maskgpu-node/bin:$PATH
fi
node_ok || { status "setup: the carried node does not run here: $(node --version 2>&1)"; exit 2; }
if [ ! -f node_modules/webgpu/dist/linux-x64/dawn.node ]; then
  [ -f "$C/node_modules.tar.xz" ] || { status "setup: node_modules missing and no $C/node_modules.tar.xz"; exit 2; }
  tar -xJf "$C/node_modules.tar.xz"
fi
echo "node $(node --version) at $(command -v node)"

# --- Vulkan: loader and the NVIDIA driver -------------------------------------------------------
if ! { ldconfig -p 2>/dev/null || /sbin/ldconfig -p; } | grep -q 'libvulkan\.so\.1'; then
  export LD_LIBRARY_PATH=$PWD/$C/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  echo "using the carried Vulkan loader ($C/lib/libvulkan.so.1)"
fi
nv_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$nv_icd" ]; then
  export VK_DRIVER_FILES=$nv_icd VK_ICD_FILENAMES=$nv_icd
  echo "VK_DRIVER_FILES=$nv_icd"
fi
nvidia-smi -L 2>/dev/null || echo "(no nvidia-smi)"
ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d 2>/dev/null

# --- the adapter must be the GPU, not a software rasteriser -------------------------------------
if ! node bin/maskgpu.mjs info --json > "$OUT/adapter.json"; then
  status "setup: no WebGPU adapter (see above); check the Vulkan loader and VK_DRIVER_FILES"
  exit 3
fi
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  console.log(`adapter: ${[r.vendor, r.architecture, r.device, r.description].filter(Boolean).join(" / ")} [${r.features.join(", ")}]`);
  if (r.isSoftware && !process.env.MASKGPU_ALLOW_SOFTWARE) { console.error("this adapter is a software rasteriser (lavapipe/SwiftShader): Dawn did not find the GPU driver; timings would be meaningless"); process.exit(1); }
' "$OUT/adapter.json" || { status "setup: software adapter, stopped"; exit 3; }
status "setup: ok"

# torchvision's detections for the bundled model, made on the development machine.
mkdir -p bench/.cache/bundled && cp "$C"/cache/bundled/*.json bench/.cache/bundled/ 2>/dev/null
printf '*\n' > bench/.cache/.gitignore

# --- the benchmarks: the commands of `npm run bench:kernels` / `npm run bench` (npm may be absent) --
tsnode=(node --import ./tools/register.mjs)
step kernels 150 "${tsnode[@]}" bench/kernels.ts --repeats 5 --json "$OUT/kernels.json"
export MASKGPU_CACHE_DIR=$OUT/cache-builtin # empty: the built-in tiles
step e2e-bundled 90 "${tsnode[@]}" bench/e2e.ts --only bundled --repeats 20 --warmup 3 --json "$OUT/e2e-bundled.json"
for cls in winograd-large winograd-small; do
  MASKGPU_CACHE_DIR=$OUT/cache-tuned step "tune-$cls" 120 "${tsnode[@]}" bench/tune.ts --class "$cls" --rounds 2 --json "$OUT/tune-$cls.json"
done
MASKGPU_CACHE_DIR=$OUT/cache-tuned step e2e-bundled-tuned 90 "${tsnode[@]}" bench/e2e.ts --only bundled --repeats 20 --warmup 3 --json "$OUT/e2e-bundled-tuned.json"
python=$(command -v python3 || true)
if [ -n "$python" ] && "$python" -c 'import torch, torchvision' 2>/dev/null; then
  step e2e-fullsize 300 "${tsnode[@]}" bench/e2e.ts --only fullsize --repeats 10 --warmup 2 --python "$python" --json "$OUT/e2e-fullsize.json"
else
  status "e2e-fullsize: skipped (no python3 with torch and torchvision to make the weights and the reference)"
fi
echo; cat "$OUT/status.txt"
