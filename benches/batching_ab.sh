#!/usr/bin/env bash
# Batching with two kernel settings side by side in one run: two servers, A with the defaults and
# B with one environment setting (default SMELT_NO_INTERLEAVE=1: the row-at-a-time kernels instead
# of the 16-row interleaved ones; SMELT_NO_PAIRED_TILES=1 also turns off the paired 8-token tiles),
# each loaded alternately with 1 stream and 8 concurrent streams (input 64, output 128, greedy).
# Usage: benches/batching_ab.sh [MODEL] [B's VAR=VALUE] (default smollm2-135m).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-smollm2-135m}
b_env=${2:-SMELT_NO_INTERLEAVE=1}
smelt=${SMELT:-target/release/smelt}
[ -x "$smelt" ] || cargo build --release -q -p smelt-cli
"$smelt" -q serve "$model" --port 8411 -t 2 --max-num-seqs 8 & p1=$!
env "$b_env" "$smelt" -q serve "$model" --port 8412 -t 2 --max-num-seqs 8 & p2=$!
trap 'kill $p1 $p2 2>/dev/null || true' EXIT
for port in 8411 8412; do for _ in $(seq 60); do curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 1; done; done
bench() { "$smelt" -q bench serve "$@"; }
pick() { grep "$1" | awk '{print $NF}'; }
for port in 8411 8412; do bench --url "http://127.0.0.1:$port" --concurrency 2 --num-prompts 4 --input-len 32 --output-len 8 --seed 99 >/dev/null; done
for round in 1 2 3; do
  for port in 8411 8412; do
    one=$(bench --url "http://127.0.0.1:$port" --concurrency 1 --num-prompts 4 --input-len 64 --output-len 128 --seed $((10 + round)) | pick "Output token throughput")
    eight=$(bench --url "http://127.0.0.1:$port" --concurrency 8 --num-prompts 16 --input-len 64 --output-len 128 --seed $((20 + round)) | pick "Output token throughput")
    name="A (defaults)"; [ $port = 8412 ] && name="B ($b_env)"
    echo "round $round $name: 1 stream $one, 8 streams $eight, ratio $(python3 -c "print(f'{$eight/$one:.2f}')")"
  done
done
