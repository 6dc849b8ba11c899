#!/usr/bin/env bash
# Check: greedy generation of 64 tokens from three prompts with smelt and with llama.cpp's
# `llama-completion` on the same GGUF (default: SmolLM2 quantized to Q8_0 by smelt). Where the
# texts differ, the first differing step is printed with smelt's two best logits there, so a
# divergence can be told apart from a bug: a near-tie (gap < 1e-3 · |logit| or so) is explained
# by the two runtimes' different activation rounding, a large gap is not.
#
# llama.cpp is built outside the repository by benches/llamacpp_native.sh.
# Usage: benches/greedy_vs_llamacpp.sh [MODEL.gguf]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(benches/llamacpp_native.sh llama-completion)
completion="$bin/llama-completion"
cargo build --release -q
smelt=target/release/smelt
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
model=${1:-}
if [ -z "$model" ]; then
  model="$work/SmolLM2-135M.Q8_0.gguf"
  $smelt -q --runs-dir "$work/runs" gguf quantize smollm2-135m "$model" Q8_0 --allow-requantize > /dev/null
fi
prompts=(
  "The capital of France is"
  "Once upon a time, in a small village by the sea,"
  "def fibonacci(n):"
)
same=0
for i in "${!prompts[@]}"; do
  p=${prompts[$i]}
  LD_LIBRARY_PATH="$bin" "$completion" -m "$model" -p "$p" -n 64 --temp 0 -t 2 -no-cnv \
    --no-warmup 2> /dev/null > "$work/llama.$i.txt" < /dev/null
  $smelt -q run "$model" -p "$p" -n 64 -t 2 --logits-top 2 > "$work/smelt.$i.txt" 2> "$work/steps.$i.jsonl"
  if python3 - "$p" "$work/llama.$i.txt" "$work/smelt.$i.txt" "$work/steps.$i.jsonl" <<'PY'
import json, sys
prompt, llama_f, smelt_f, steps_f = sys.argv[1:]
llama = open(llama_f, encoding="utf-8", errors="replace").read()
smelt = open(smelt_f, encoding="utf-8", errors="replace").read()
strip = lambda t: t[t.index(prompt) + len(prompt):] if prompt in t else t
# llama-completion marks an end-of-sequence token with this text; smelt stops there silently.
llama = llama.replace(" [end of text]", "")
a, b = strip(llama).rstrip("\n"), strip(smelt).rstrip("\n")
print(f"prompt: {prompt!r}")
if a == b:
    print(f"  identical ({len(b)} characters): {b[:70]!r}...")
    sys.exit(0)
k = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
steps = [json.loads(l) for l in open(steps_f) if l.startswith("{")]
pos = 0
for s in steps:
    pos += len(s["text"])
    if pos > k:
        (t1, l1), (t2, l2) = s["top"][0], s["top"][1]
        print(f"  first difference at character {k}, smelt step {s['step']}")
        print(f"  llama.cpp: ...{a[max(0, k - 30):k + 20]!r}")
        print(f"  smelt:     ...{b[max(0, k - 30):k + 20]!r}")
        print(f"  smelt's best two logits there: {l1:.4f} (token {t1}) vs {l2:.4f} (token {t2}), gap {l1 - l2:.4f}")
        break
sys.exit(1)
PY
  then same=$((same + 1)); fi
done
echo "identical continuations: $same of ${#prompts[@]}"
