#!/usr/bin/env bash
# Completions with n choices of one fresh prompt, two smelt binaries side by side in one run:
# A (e.g. a build before a scheduler change) and B, each serving on its own port; every round
# sends the same ~600-token Shakespeare prompt (new each round, so no cache holds it) with
# n = N and 8 tokens to each, in alternating order, and prints the wall time of each answer.
# Usage: benches/n_choices_ab.sh A_BIN [B_BIN] [N] [ROUNDS]   (B defaults to target/release/smelt)
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1
b=${2:-target/release/smelt}
n=${3:-8}
rounds=${4:-4}
"$a" -q serve smollm2-135m --port 8421 -t 2 --max-num-seqs 8 & p1=$!
"$b" -q serve smollm2-135m --port 8422 -t 2 --max-num-seqs 8 & p2=$!
trap 'kill $p1 $p2 2>/dev/null || true' EXIT
for port in 8421 8422; do for _ in $(seq 60); do curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 1; done; done
python3 - "${SMELT_HOME:-$HOME/.cache/smelt}/assets/shakespeare/shakespeare.txt" "$n" "$rounds" <<'PY'
import json, sys, time, urllib.request
text, n, rounds = open(sys.argv[1]).read(), int(sys.argv[2]), int(sys.argv[3])
def ask(port, prompt):
    body = json.dumps({"prompt": prompt, "max_tokens": 8, "n": n, "temperature": 0.8, "seed": 1})
    r = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", body.encode(),
                               {"content-type": "application/json"})
    t = time.time()
    usage = json.load(urllib.request.urlopen(r))["usage"]
    return (time.time() - t) * 1000, usage["prompt_tokens"]
ask(8421, "warm up"); ask(8422, "warm up")
for r in range(rounds):
    prompt = text[200000 + 5000 * r:][:2000]
    order = (8421, 8422) if r % 2 == 0 else (8422, 8421)
    got = {port: ask(port, prompt) for port in order}
    (ta, tokens), (tb, _) = got[8421], got[8422]
    print(f"round {r + 1}: n={n}, {tokens}-token prompt: A {ta:.0f} ms, B {tb:.0f} ms, A/B {ta / tb:.2f}")
PY
