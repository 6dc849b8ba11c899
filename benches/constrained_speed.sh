#!/usr/bin/env bash
# What constrained decoding costs a served model: chat requests to one `smelt serve`, free text
# against JSON mode (response_format json_object) against a JSON schema (a pydantic-style
# object with an enum, an integer, a bounded string and an optional field), in one run. Each
# round streams every mode CONC requests at once (temperature 0.7, 128 tokens at most, seeds
# 0..CONC), modes in rotating order, and prints the mean time between streamed tokens (first
# to last, so the prompt is left out: JSON answers are short) and the ratio to free text's in
# the same round.
# Usage: benches/constrained_speed.sh [BIN] [ROUNDS] [CONC]   (BIN defaults to target/release/smelt)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/smelt}
rounds=${2:-4}
conc=${3:-1}
"$bin" -q serve smollm2-135m --port 8431 -t 2 --max-num-seqs 16 & pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 60); do curl -sf http://127.0.0.1:8431/health >/dev/null 2>&1 && break; sleep 1; done
python3 - "$rounds" "$conc" <<'PY'
import json, sys, time, urllib.request
from concurrent.futures import ThreadPoolExecutor
rounds, conc = int(sys.argv[1]), int(sys.argv[2])
schema = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 24},
    "kind": {"enum": ["cat", "dog", "owl"]},
    "age": {"type": "integer"},
    "nickname": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
    "required": ["name", "kind", "age", "nickname"], "additionalProperties": False}
modes = {
    "free text": None,
    "json_object": {"type": "json_object"},
    "json_schema": {"type": "json_schema", "json_schema": {"name": "pet", "schema": schema}},
}
def ask(fmt, seed):
    body = {"messages": [{"role": "user", "content": "Describe a pet, as JSON."}],
            "max_tokens": 128, "temperature": 0.7, "seed": seed, "stream": True,
            "stream_options": {"include_usage": True}}
    if fmt:
        body["response_format"] = fmt
    r = urllib.request.Request("http://127.0.0.1:8431/v1/chat/completions",
                               json.dumps(body).encode(), {"content-type": "application/json"})
    times, text, tokens = [], "", 0
    for line in urllib.request.urlopen(r):
        if not line.startswith(b"data: {"):
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
        for ch in chunk["choices"]:
            if ch["delta"].get("content"):
                times.append(time.time())
                text += ch["delta"]["content"]
            if fmt and ch.get("finish_reason") == "stop":
                json.loads(text)  # the answer parses, or the bench stops
    return tokens, times[-1] - times[0], len(times) - 1
def batch(fmt):
    with ThreadPoolExecutor(conc) as ex:
        got = list(ex.map(lambda s: ask(fmt, s), range(conc)))
    tokens = sum(g[0] for g in got)
    return tokens, sum(g[1] for g in got) / max(1, sum(g[2] for g in got))
batch(None)  # warm up
names = list(modes)
for r in range(rounds):
    order = names[r % 3:] + names[:r % 3]
    got = {m: batch(modes[m]) for m in order}
    free = got["free text"][1]
    line = ", ".join(f"{m} {t} tok {itl * 1e3:.2f} ms/tok ({itl / free:.2f}x)" for m, (t, itl) in got.items())
    print(f"round {r + 1}, {conc} at once: {line}")
PY
