#!/usr/bin/env bash
# Benchmark: smelt's matrix products for one token (the decode hot path; or TOKENS of one
# sequence) against ggml's, same machine,
# same shape, same thread count, interleaved round by round (this machine is shared, so the two
# must see the same load): crates/smelt-kernels/examples/gemv_micro.rs beside
# benches/ggml_gemv_speed.c, built against the llama.cpp that benches/llamacpp_native.sh builds
# outside the repository. Each side reports the best of 5 batches of REPS products per round;
# the table has the median over rounds and the ratio (ggml's time ÷ smelt's: above 1, smelt is
# faster).
#
# The default shape (1536 × 1024) fits in L2, so it measures instructions, not memory; a model's
# shape (e.g. 2816 × 1024, 1024 × 2816, 49152 × 1024) shows both.
#
# Usage: benches/gemv_vs_ggml.sh [ROUNDS] [THREADS] [ROWS] [COLS] [TYPES] [TOKENS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
threads=${2:-1}
rows=${3:-1536}
cols=${4:-1024}
types=${5:-q4_K,q6_K,q8_0}
tokens=${6:-1}
source benches/llamacpp_common.sh
llamacpp_tools llama-completion
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
llamacpp_cc ggml_gemv_speed ggml ggml-base ggml-cpu
cargo build --release -q -p smelt-kernels --example gemv_micro
reps=$(( 200000000 / (rows * cols * tokens) + 1 ))
results="$work/results.jsonl"
for round in $(seq "$rounds"); do
  echo "round $round/$rounds" >&2
  target/release/examples/gemv_micro "$threads" "$rows" "$cols" "$tokens" "$reps" 5 ${types//,/ } |
    sed 's/^{/{"tool": "smelt", /' >> "$results"
  "$work/ggml_gemv_speed" "$threads" "$rows" "$cols" "$tokens" "$reps" 5 ${types//,/ } 2> /dev/null |
    sed 's/^{/{"tool": "ggml", /' >> "$results"
done
python3 - "$results" "$threads" "$rounds" "$rows" "$cols" "$tokens" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
threads, rounds, r, c, n = sys.argv[2:7]
kernel = next(x["kernel"] for x in rows if x["tool"] == "smelt")
print(f"{r} x {c}, {n} token(s), {threads} thread(s), {rounds} interleaved rounds, smelt kernels: {kernel}\n")
print("| type | ggml repacks | smelt ns/row/token | ggml ns/row/token | ggml ÷ smelt |")
print("| --- | --- | ---: | ---: | ---: |")
for t in dict.fromkeys(x["type"] for x in rows):
    s = statistics.median(x["ns_per_row"] for x in rows if x["tool"] == "smelt" and x["type"] == t)
    g = statistics.median(x["ns_per_row"] for x in rows if x["tool"] == "ggml" and x["type"] == t)
    rep = next(x["repacked"] for x in rows if x["tool"] == "ggml" and x["type"] == t)
    print(f"| {t} | {'yes' if rep else 'no'} | {s:.1f} | {g:.1f} | {g / s:.2f}× |")
PY
