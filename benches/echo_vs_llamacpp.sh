#!/usr/bin/env bash
# Prompt scoring (completions' `echo` with `logprobs`, max_tokens 0) against llama.cpp: smelt
# serve scores three texts in one request each; llama.cpp (benches/llamacpp_logits.c, flash
# attention off) gets the same tokens twice: in one batch with every position's logits (as
# llama-perplexity runs) and one token at a time (as generation runs). Prints, per text, the
# log-likelihoods and the largest difference of one token's log-probability from smelt's.
# Usage: benches/echo_vs_llamacpp.sh [MODEL.gguf]   (default: SmolLM2 requantized to Q8_0)
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/llamacpp_common.sh
llamacpp_tools llama-completion
smelt_and_scratch
llamacpp_cc llamacpp_logits llama
model=${1:-$(smelt_requantized Q8_0)}
port=8431
$smelt -q serve "$model" --port $port -t 2 & pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 60); do curl -sf "http://127.0.0.1:$port/health" > /dev/null 2>&1 && break; sleep 1; done
python3 - "$port" "$model" "$work" <<'PY'
import array, json, math, subprocess, sys, urllib.request
port, model, work = sys.argv[1], sys.argv[2], sys.argv[3]
def post(path, body):
    r = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(),
                               {"content-type": "application/json"})
    return json.load(urllib.request.urlopen(r))
texts = [
    "The quick brown fox jumps over the lazy dog, and the dog does not seem to mind at all.",
    "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer",
    "Water boils at 100 degrees Celsius at sea level, but at lower temperatures on mountains.",
]
for text in texts:
    ids = post("/tokenize", {"prompt": text})["tokens"]
    lp = post("/v1/completions", {"prompt": ids, "max_tokens": 0, "echo": True,
                                  "logprobs": 0})["choices"][0]["logprobs"]["token_logprobs"]
    first = post("/detokenize", {"tokens": ids[:1]})["prompt"]
    ours = lp[1:]
    line = f"{len(ids) - 1} tokens, first null: {lp[0] is None}; log-likelihood smelt {sum(ours):.4f}"
    for mode in ("batch", "tokens"):
        out = f"{work}/logits.bin"
        args = [f"{work}/llamacpp_logits", model, first, ",".join(map(str, ids[1:])), "0", out]
        subprocess.run(args + (["batch"] if mode == "batch" else []), check=True,
                       stderr=subprocess.DEVNULL)
        rows = array.array("f")
        rows.frombytes(open(out, "rb").read())
        vocab = len(rows) // (len(ids) - 1)
        theirs = []
        for i, t in enumerate(ids[1:]):
            row = rows[i * vocab:(i + 1) * vocab]
            m = max(row)
            theirs.append(row[t] - m - math.log(sum(math.exp(x - m) for x in row)))
        worst = max(abs(a - b) for a, b in zip(ours, theirs))
        line += f"; llama.cpp {mode} {sum(theirs):.4f} (largest difference {worst:.1e})"
    print(line)
PY
