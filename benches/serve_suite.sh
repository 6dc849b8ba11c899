#!/usr/bin/env bash
# smelt serve under three loads, each measured side by side in one run (the machine is shared and
# noisy, so only ratios from the same run are reported):
#   1. batching: the same greedy load at concurrency 1 and at concurrency 8, alternating, twice;
#      total output tokens/s of 8 streams over 1 stream.
#   2. prefix cache: a shared system prompt in front of every request, served with prefix caching
#      on and off (two servers, alternating); TTFT and the hit rate.
#   3. KV waste under mixed lengths (input and output each ±50 %), from the server's counters.
# Usage: benches/serve_suite.sh [MODEL] (default smollm2-135m); THREADS=2 by default.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-smollm2-135m}
threads=${THREADS:-2}
smelt=${SMELT:-target/release/smelt}
[ -x "$smelt" ] || cargo build --release -q -p smelt-cli
on=8311; off=8312
"$smelt" -q serve "$model" --port $on -t "$threads" --max-num-seqs 8 &
p1=$!
"$smelt" -q serve "$model" --port $off -t "$threads" --max-num-seqs 8 --no-prefix-cache &
p2=$!
trap 'kill $p1 $p2 2>/dev/null || true' EXIT
for port in $on $off; do
  for _ in $(seq 60); do curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 1; done
done
bench() { "$smelt" -q bench serve "$@"; }
pick() { grep "$1" | awk '{print $NF}'; }
for port in $on $off; do
  bench --url "http://127.0.0.1:$port" --concurrency 2 --num-prompts 4 --input-len 32 --output-len 8 --seed 99 >/dev/null
done

echo "## 1. batching: output tokens/s, 1 stream vs 8 concurrent streams (input 64, output 128, greedy)"
echo "| round | 1 stream tok/s | 8 streams tok/s | ratio |"
echo "|---|---|---|---|"
for round in 1 2; do
  one=$(bench --url "http://127.0.0.1:$on" --concurrency 1 --num-prompts 4 --input-len 64 --output-len 128 --seed $((10 + round)) | pick "Output token throughput")
  eight=$(bench --url "http://127.0.0.1:$on" --concurrency 8 --num-prompts 16 --input-len 64 --output-len 128 --seed $((20 + round)) | pick "Output token throughput")
  echo "| $round | $one | $eight | $(python3 -c "print(f'{$eight/$one:.2f}')") |"
done

echo
echo "## 2. prefix cache: 512-token shared system prompt + 32 own tokens, 32 out, concurrency 4"
echo "| round | server | median TTFT ms | P90 TTFT ms | hit rate |"
echo "|---|---|---|---|---|"
for round in 1 2; do
  for port in $on $off; do
    out=$(bench --url "http://127.0.0.1:$port" --concurrency 4 --num-prompts 16 --prefix-len 512 --input-len 32 --output-len 32 --seed $((30 + round)))
    name=cache-on; [ $port = $off ] && name=cache-off
    hit=$(echo "$out" | pick "Prefix cache hit rate" || true)
    echo "| $round | $name | $(echo "$out" | pick "Median TTFT") | $(echo "$out" | pick "P90 TTFT") | ${hit:-0} |"
  done
done

echo
echo "## 3. KV waste, mixed lengths: input 256 ±50 %, output 128 ±50 %, concurrency 8"
bench --url "http://127.0.0.1:$on" --concurrency 8 --num-prompts 32 --input-len 256 --output-len 128 --range-ratio 0.5 --seed 40 \
  | grep -E "Successful|Output token throughput|KV waste|Preemptions"
