#!/usr/bin/env bash
# Check: greedy generation of 64 tokens from three prompts with smelt and with llama.cpp's
# `llama-completion` on the same GGUF (default: SmolLM2 quantized to Q8_0 by smelt).
#
# llama.cpp has two attention paths on the CPU (flash attention on, the default "auto" here, and
# off), which round differently (f16 Q and f16 V accumulation with it on), so the script runs both
# and reports three agreements: smelt vs llama.cpp FA-off, smelt vs llama.cpp FA-on, and llama.cpp
# FA-on vs FA-off. Where smelt differs, llama.cpp's logits are taken teacher-forced along smelt's
# tokens (benches/llamacpp_logits.c, built here against the same libllama) so the first differing
# step shows the two candidates' margin in smelt and in both llama.cpp modes, and the logit
# spread over the whole vocabulary: smelt vs FA-off next to llama.cpp's own FA-on vs FA-off.
#
# llama.cpp is built outside the repository by benches/llamacpp_native.sh.
# Usage: benches/greedy_vs_llamacpp.sh [MODEL.gguf]
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/llamacpp_common.sh
llamacpp_tools llama-completion
completion="$bin/llama-completion"
smelt_and_scratch
llamacpp_cc llamacpp_logits llama
model=${1:-$(smelt_requantized Q8_0)}
for i in "${!prompts[@]}"; do
  p=${prompts[$i]}
  for fa in off on; do
    LD_LIBRARY_PATH="$bin" "$completion" -m "$model" -p "$p" -n 64 --temp 0 -t 2 -no-cnv \
      --no-warmup -fa $fa 2> /dev/null > "$work/llama.$fa.$i.txt" < /dev/null
  done
  $smelt -q run "$model" -p "$p" -n 64 -t 2 --logits-top 1000000 > "$work/smelt.$i.txt" 2> "$work/steps.$i.jsonl"
  tokens=$(python3 -c 'import json,sys; print(",".join(str(json.loads(l)["token"]) for l in open(sys.argv[1]) if l.startswith("{")))' "$work/steps.$i.jsonl")
  for fa in 0 1; do
    "$work/llamacpp_logits" "$model" "$p" "$tokens" $fa "$work/logits.$fa.$i.bin" 2> /dev/null
  done
done
python3 - "$work" "${prompts[@]}" <<'PY'
import array, json, math, sys
work, prompts = sys.argv[1], sys.argv[2:]

def continuation(path, prompt):
    t = open(path, encoding="utf-8", errors="replace").read()
    # llama-completion marks an end-of-sequence token with this text; smelt stops there silently.
    t = t.replace(" [end of text]", "")
    return (t[t.index(prompt) + len(prompt):] if prompt in t else t).rstrip("\n")

def rows(path, n_vocab):
    a = array.array("f")
    with open(path, "rb") as f:
        a.frombytes(f.read())
    return [a[k * n_vocab:(k + 1) * n_vocab] for k in range(len(a) // n_vocab)]

def rms(x, y):
    return math.sqrt(sum((u - v) ** 2 for u, v in zip(x, y)) / len(x))

agree = {"smelt vs llama.cpp FA-off": 0, "smelt vs llama.cpp FA-on": 0, "llama.cpp FA-on vs FA-off": 0}
for i, prompt in enumerate(prompts):
    off = continuation(f"{work}/llama.off.{i}.txt", prompt)
    on = continuation(f"{work}/llama.on.{i}.txt", prompt)
    ours = continuation(f"{work}/smelt.{i}.txt", prompt)
    print(f"prompt: {prompt!r}")
    for name, a, b in (("smelt vs llama.cpp FA-off", ours, off), ("smelt vs llama.cpp FA-on", ours, on),
                       ("llama.cpp FA-on vs FA-off", on, off)):
        if a == b:
            agree[name] += 1
            print(f"  {name}: identical ({len(a)} characters)")
        else:
            k = next((j for j in range(min(len(a), len(b))) if a[j] != b[j]), min(len(a), len(b)))
            print(f"  {name}: differ at character {k}: {a[max(0, k - 25):k + 15]!r} vs {b[max(0, k - 25):k + 15]!r}")
    steps = [json.loads(l) for l in open(f"{work}/steps.{i}.jsonl") if l.startswith("{")]
    n_vocab = len(steps[0]["top"])
    smelt_rows = []
    for s in steps:
        r = [0.0] * n_vocab
        for t, l in s["top"]:
            r[t] = l
        smelt_rows.append(r)
    l0, l1 = rows(f"{work}/logits.0.{i}.bin", n_vocab), rows(f"{work}/logits.1.{i}.bin", n_vocab)
    argmax = lambda r: max(range(len(r)), key=r.__getitem__)
    k = next((j for j, s in enumerate(steps) if argmax(l0[j]) != s["token"]), None)
    upto = len(steps) if k is None else k + 1
    ours_rms = [rms(smelt_rows[j], l0[j]) for j in range(upto)]
    self_rms = [rms(l1[j], l0[j]) for j in range(upto)]
    print(f"  logit rms over the vocabulary, steps 0..{upto - 1} along smelt's tokens: "
          f"smelt vs FA-off {sum(ours_rms) / upto:.3f} (max {max(ours_rms):.3f}), "
          f"llama.cpp FA-on vs FA-off {sum(self_rms) / upto:.3f} (max {max(self_rms):.3f})")
    if k is not None:
        a, b = steps[k]["token"], argmax(l0[k])
        print(f"  first differing step {k}: smelt takes token {a}, llama.cpp FA-off token {b}; "
              f"margin logit[{a}] - logit[{b}]: smelt {smelt_rows[k][a] - smelt_rows[k][b]:+.4f}, "
              f"llama.cpp FA-off {l0[k][a] - l0[k][b]:+.4f}, FA-on {l1[k][a] - l1[k][b]:+.4f}")
    k1 = next((j for j, s in enumerate(steps) if argmax(l1[j]) != s["token"]), None)
    if k1 is not None:
        a, b = steps[k1]["token"], argmax(l1[k1])
        print(f"  llama.cpp FA-on first leaves smelt's path at step {k1}: token {b} over smelt's {a}; "
              f"margin logit[{b}] - logit[{a}]: FA-on {l1[k1][b] - l1[k1][a]:+.4f}, "
              f"FA-off {l0[k1][b] - l0[k1][a]:+.4f}, smelt {smelt_rows[k1][b] - smelt_rows[k1][a]:+.4f}")
for name, n in agree.items():
    print(f"identical continuations, {name}: {n} of {len(prompts)}")
PY
