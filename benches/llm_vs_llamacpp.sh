#!/usr/bin/env bash
# Benchmark: `smelt bench` against llama.cpp's `llama-bench` on the same GGUF files, same machine,
# same thread count, interleaved round by round (this machine is shared, so the two must see the
# same load). Models: SmolLM2-135M as shipped (Q4_1), and the TYPES (default Q8_0,Q4_K_M)
# quantized by smelt.
# Prints pp512 / tg128 tokens/s for both and the ratio smelt ÷ llama.cpp.
#
# llama.cpp is built outside the repository by benches/llamacpp_native.sh (native, no AMX).
#
# EXTRA, comma-separated GGUF paths, are benchmarked after them (e.g. a made-up mixture of experts
# from benches/made_model.py: see docs/design.md, "Mixtures of experts").
#
# DEPTH (llama-bench's -d, smelt bench's -d) puts that many positions in each test's context
# before it is timed: "tg128 @ d2048" is decode at a 2048-position context. FA (on, off or
# auto, llama-bench's -fa; default auto, which its CPU backend turns on) is llama.cpp's flash
# attention; smelt's attention follows llama.cpp's without it (fa off) bit for bit.
#
# Usage: benches/llm_vs_llamacpp.sh [ROUNDS] [THREADS] [PROMPT] [GEN] [TYPES] [EXTRA] [DEPTH] [FA]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
threads=${2:-2}
n_prompt=${3:-512}
n_gen=${4:-128}
types=${5-Q8_0,Q4_K_M}
extra=${6:-}
depth=${7:-0}
fa=${8:-auto}
source benches/llamacpp_common.sh
llamacpp_tools llama-bench
llama_bench="$bin/llama-bench"
smelt_and_scratch
q4_1=$($smelt -q gguf inspect smollm2-135m --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["path"])')
models=("$q4_1")
for t in ${types//,/ }; do
  $smelt -q --runs-dir "$work/runs" gguf quantize "$q4_1" "$work/SmolLM2-135M.$t.gguf" "$t" --allow-requantize > /dev/null
  models+=("$work/SmolLM2-135M.$t.gguf")
done
for m in ${extra//,/ }; do
  models+=("$m")
done
results="$work/results.jsonl"
for model in "${models[@]}"; do
  name=$(basename "$model")
  for round in $(seq "$rounds"); do
    echo "$name: round $round/$rounds" >&2
    $smelt -q --runs-dir "$work/runs" bench "$model" -p "$n_prompt" -n "$n_gen" -d "$depth" -t "$threads" -r 1 --json |
      python3 -c 'import json,sys
for l in sys.stdin:
    r = json.loads(l); print(json.dumps({"tool": "smelt", "model": sys.argv[1], "test": r["test"], "ts": r["avg_ts"], "kernel": r["kernel"], "bw": r["read_bandwidth_gbs"]}))' "$name" >> "$results"
    LD_LIBRARY_PATH="$bin" "$llama_bench" -m "$model" -t "$threads" -p "$n_prompt" -n "$n_gen" -d "$depth" -fa "$fa" -r 1 -o jsonl 2>/dev/null |
      python3 -c 'import json,sys
for l in sys.stdin:
    r = json.loads(l)
    test = ("pp%d" % r["n_prompt"]) if r["n_prompt"] else ("tg%d" % r["n_gen"])
    if r.get("n_depth"):
        test += " @ d%d" % r["n_depth"]
    print(json.dumps({"tool": "llama.cpp", "model": sys.argv[1], "test": test, "ts": r["avg_ts"]}))' "$name" >> "$results"
  done
done
python3 - "$results" "$threads" "$rounds" "$fa" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
threads, rounds, fa = sys.argv[2], sys.argv[3], sys.argv[4]
kernel = next(r["kernel"] for r in rows if r["tool"] == "smelt")
bw = statistics.mean(r["bw"] for r in rows if r["tool"] == "smelt")
print(f"{threads} threads, {rounds} interleaved rounds, smelt kernels: {kernel}; llama.cpp flash attention: {fa}; read bandwidth during the run ≈ {bw:.1f} GB/s\n")
print("| model | test | smelt t/s | llama.cpp t/s | smelt ÷ llama.cpp |")
print("| --- | --- | ---: | ---: | ---: |")
keys = []
for r in rows:
    if (r["model"], r["test"]) not in keys:
        keys.append((r["model"], r["test"]))
def ms(v):
    return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)
for model, test in keys:
    s = [r["ts"] for r in rows if r["tool"] == "smelt" and r["model"] == model and r["test"] == test]
    l = [r["ts"] for r in rows if r["tool"] == "llama.cpp" and r["model"] == model and r["test"] == test]
    (sm, ss), (lm, ls) = ms(s), ms(l)
    print(f"| {model} | {test} | {sm:.1f} ± {ss:.1f} | {lm:.1f} ± {ls:.1f} | {sm / lm:.2f}× |")
PY
