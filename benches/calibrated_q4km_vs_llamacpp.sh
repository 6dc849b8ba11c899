#!/usr/bin/env bash
# Quality check: smelt's calibrated Q4_K_M (`smelt gguf quantize --method gptq`) against
# llama.cpp's `llama-quantize` Q4_K_M of the same F32 base (SmolLM2-135M dequantized), scored by
# perplexity on the held-out Shakespeare tragedies (calibration uses the other plays) with BOTH
# llama.cpp's `llama-perplexity` and `smelt perplexity`, ctx 512. Also prints the file sizes and
# the base's perplexity. Every file is quantized and scored in this run.
#
# llama.cpp is built outside the repository by benches/llamacpp_native.sh.
# Usage: benches/calibrated_q4km_vs_llamacpp.sh [CHUNKS] [CALIB] [EXTRA_GPTQ_FLAGS...]
#   e.g. benches/calibrated_q4km_vs_llamacpp.sh 20 32x512 --act-order
set -euo pipefail
cd "$(dirname "$0")/.."
chunks=${1:-20}
calib=${2:-32x512}
shift 2 || true
extra=("$@")
[ ${#extra[@]} -gt 0 ] || extra=(--act-order)
source benches/llamacpp_common.sh
llamacpp_tools llama-quantize llama-perplexity
smelt_and_scratch
home=${SMELT_HOME:-$HOME/.cache/smelt}
$smelt -q --runs-dir "$work/runs" gguf quantize smollm2-135m "$work/base-f32.gguf" F32 --allow-requantize > /dev/null
# The held-out text: every tragedy, in the order of the play index (as `smelt llm` splits it).
python3 - "$home/assets/shakespeare" "$work/tragedies.txt" <<'PY'
import json, sys
d, out = sys.argv[1], sys.argv[2]
text = open(f"{d}/shakespeare.txt", "rb").read()
plays = json.load(open(f"{d}/plays.json"))
with open(out, "wb") as f:
    for p in plays:
        if p["category"] == "tragedies":
            f.write(text[p["offset"]:p["offset"] + p["len"]] + b"\n")
PY
LD_LIBRARY_PATH="$bin" "$bin/llama-quantize" "$work/base-f32.gguf" "$work/llama-q4km.gguf" Q4_K_M 2 > "$work/lq.log" 2>&1
t0=$(date +%s)
$smelt --runs-dir "$work/runs" gguf quantize "$work/base-f32.gguf" "$work/smelt-gptq-q4km.gguf" Q4_K_M \
  --method gptq --calib "$calib" "${extra[@]}" 2>&1 | grep -E "calibration|GPTQ chose" >&2
t1=$(date +%s)
printf "| file | bytes | llama-perplexity | smelt perplexity |\n|---|---|---|---|\n"
for f in base-f32 llama-q4km smelt-gptq-q4km; do
  l=$(LD_LIBRARY_PATH="$bin" "$bin/llama-perplexity" -m "$work/$f.gguf" -f "$work/tragedies.txt" -c 512 --chunks "$chunks" -t "$(nproc)" 2>&1 |
    sed -n 's/.*Final estimate: PPL = \([0-9.]*\) +\/- \([0-9.]*\).*/\1 ± \2/p')
  s=$($smelt -q --runs-dir "$work/runs" perplexity "$work/$f.gguf" -f "$work/tragedies.txt" --ctx 512 --chunks "$chunks" 2>&1 |
    sed -n 's/.*Final estimate: PPL = \([0-9.]*\) +\/- \([0-9.]*\).*/\1 ± \2/p')
  printf "| %s | %s | %s | %s |\n" "$f" "$(stat -c %s "$work/$f.gguf")" "$l" "$s"
done
echo "GPTQ flags: --calib $calib ${extra[*]}; calibrated quantization took $((t1 - t0)) s; $chunks windows of 512"
