#!/usr/bin/env bash
# Batched decoding without a server, smelt next to llama.cpp in one run: `smelt bench MODEL
# --batch B` (B sequences stepping together through the paged KV pool, one sequence alongside)
# and `llama-batched-bench` (its S_TG column: B sequences decoding together from their own
# prompts), same GGUF, same threads, interleaved round by round so load from other work on this
# shared machine hits both alike. Prints decode tokens/s at 1 and B sequences, the batching
# ratio B ÷ 1 of each tool, and smelt ÷ llama.cpp at each size.
#
# llama-batched-bench is built outside the repository by benches/llamacpp_native.sh.
#
# Usage: benches/batched_vs_llamacpp.sh [MODEL.gguf|asset] [BATCH] [ROUNDS] [PROMPT] [STEPS]
#   e.g. benches/batched_vs_llamacpp.sh smollm2-135m 8 3 64 64
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-smollm2-135m}
batch=${2:-8}
rounds=${3:-3}
prompt=${4:-64}
steps=${5:-64}
threads=${THREADS:-2}
smelt=${SMELT:-target/release/smelt}
[ -x "$smelt" ] || cargo build --release -q -p smelt-cli
bin=$(benches/llamacpp_native.sh llama-batched-bench)
gguf=$model
if [ ! -f "$gguf" ]; then
  gguf=$("$smelt" -q gguf inspect "$model" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["path"])')
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
results="$work/results.txt"
ctx=$(( batch * (prompt + steps) + 64 ))
for round in $(seq "$rounds"); do
  echo "round $round/$rounds" >&2
  # smelt prints "| B | mean ± sd | per sequence | ratio |" rows.
  "$smelt" -q --runs-dir "$work/runs" bench "$gguf" -b "$batch" --batch-prompt "$prompt" -n "$steps" -r 1 -t "$threads" |
    awk -F'|' '/^\| [0-9]+ \|/ { gsub(/ /, "", $2); split($3, a, "±"); gsub(/ /, "", a[1]); print "smelt", $2, a[1] }' >> "$results"
  # llama-batched-bench prints "| PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s | T s | S t/s |".
  LD_LIBRARY_PATH="$bin" "$bin/llama-batched-bench" -m "$gguf" -c "$ctx" -b 2048 -ub 512 \
      -npp "$prompt" -ntg "$steps" -npl "1,$batch" -t "$threads" -tb "$threads" 2>/dev/null |
    awk -F'|' '/^\| *[0-9]+ \|/ { gsub(/ /, "", $4); gsub(/ /, "", $9); print "llama.cpp", $4, $9 }' >> "$results"
done
python3 - "$results" "$batch" "$threads" "$rounds" "$prompt" "$steps" <<'PY'
import statistics, sys
path, batch, threads, rounds, prompt, steps = sys.argv[1:]
rows = [l.split() for l in open(path) if l.strip()]
def rates(tool, b):
    return [float(r[2]) for r in rows if r[0] == tool and r[1] == str(b)]
print(f"decode tokens/s, {threads} threads, {rounds} interleaved rounds, {prompt} prompt tokens per sequence, {steps} steps\n")
print("| sequences | smelt t/s | llama.cpp t/s | smelt ÷ llama.cpp |")
print("| ---: | ---: | ---: | ---: |")
mean = {}
for b in (1, int(batch)):
    s, l = rates("smelt", b), rates("llama.cpp", b)
    if not s or not l:
        sys.exit(f"missing results for {b} sequences (smelt {len(s)}, llama.cpp {len(l)})")
    sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0
    mean[b] = (statistics.mean(s), statistics.mean(l))
    print(f"| {b} | {mean[b][0]:.1f} ± {sd(s):.1f} | {mean[b][1]:.1f} ± {sd(l):.1f} | {mean[b][0] / mean[b][1]:.2f}× |")
b = int(batch)
print(f"\nbatching ratio ({b} ÷ 1 sequence): smelt {mean[b][0] / mean[1][0]:.2f}×, llama.cpp {mean[b][1] / mean[1][1]:.2f}×")
PY
