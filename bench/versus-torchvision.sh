#!/usr/bin/env bash
# Process to process, one after the other, as the issue measured: torchvision 0.14 on the CPU
# (Debian's /usr/bin/python3, 2 threads) against `maskgpu segment` on the same full-size
# weights and image, with the conv tiles of each MASKGPU_CACHE_DIR given (e.g. an empty one:
# built-in direct tiles; one `npm run tune` wrote: Winograd where it won). Each maskgpu
# configuration runs once untimed first (Mesa's shader cache and the kernel record warm), then
# ROUNDS alternating rounds; prints wall seconds per run and the medians.
#
#   bench/versus-torchvision.sh WEIGHTS IMAGE SCORE_THRESH ROUNDS CACHE_DIR...
set -euo pipefail
weights=$1 image=$2 score=$3 rounds=$4
shift 4
out=$(mktemp -d)
wall() { local t0 t1; t0=$(date +%s.%N); "$@" > "$out/last.log" 2>&1 || { cat "$out/last.log"; exit 1; }; t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'; }
maskgpu() { MASKGPU_CACHE_DIR=$1 node bin/maskgpu.mjs segment "$image" --weights "$weights" --score-thresh "$score" --out "$out/m" --force --kernels tuned --no-background-compile; }
for dir in "$@"; do maskgpu "$dir" > /dev/null; done
declare -A times
for r in $(seq "$rounds"); do
  t=$(wall /usr/bin/python3 tools/bench_torchvision.py once --weights "$weights" --image "$image" --threads 2 --score-thresh "$score" --out "$out/tv.json")
  times[torchvision]+="$t "
  echo "round $r torchvision: $t s ($(tail -1 "$out/last.log"))"
  for dir in "$@"; do
    t=$(wall maskgpu "$dir")
    times[$dir]+="$t "
    echo "round $r maskgpu ($dir): $t s ($(grep -o '[0-9]* detections in [0-9]* ms' "$out/last.log" | head -1))"
  done
done
median() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}'; }
tv=$(median "${times[torchvision]}")
echo "median torchvision: $tv s"
for dir in "$@"; do m=$(median "${times[$dir]}"); echo "median maskgpu ($dir): $m s = $(awk -v a="$m" -v b="$tv" 'BEGIN { printf "%.2f", a / b }')x torchvision"; done
rm -rf "$out"
