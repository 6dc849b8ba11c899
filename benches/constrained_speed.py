"""Times constrained decoding on OpenAI-compatible servers: chat requests streamed in free text,
JSON mode (response_format json_object), a JSON schema (a pydantic-style object with an enum,
an integer, a bounded string and an optional field) and a schema of held values (a pattern, a
date, integer and number bounds). Each round sends every server and mode CONC
requests at once (temperature 0.7, 128 tokens at most, seeds 0..CONC), modes in rotating order,
and prints the mean time between streamed tokens (first to last, so the prompt is left out: JSON
answers are short), each mode's ratio to its own server's free text, and (with two servers) the
first's time over the second's. Every constrained answer that ends must parse as JSON.
Usage: python constrained_speed.py ROUNDS CONC NAME=URL [NAME=URL]"""

import json
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

rounds, conc = int(sys.argv[1]), int(sys.argv[2])
servers = [a.split("=", 1) for a in sys.argv[3:]]
schema = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 24},
    "kind": {"enum": ["cat", "dog", "owl"]},
    "age": {"type": "integer"},
    "nickname": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
    "required": ["name", "kind", "age", "nickname"], "additionalProperties": False}
booking = {"type": "object", "properties": {
    "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{3}$"},
    "day": {"type": "string", "format": "date"},
    "guests": {"type": "integer", "minimum": 1, "maximum": 8},
    "rating": {"type": "number", "minimum": 0, "maximum": 5}},
    "required": ["code", "day", "guests", "rating"], "additionalProperties": False}
modes = {
    "free text": None,
    "json_object": {"type": "json_object"},
    "json_schema": {"type": "json_schema", "json_schema": {"name": "pet", "schema": schema}},
    "patterns": {"type": "json_schema", "json_schema": {"name": "booking", "schema": booking}},
}


def ask(url, fmt, seed):
    body = {"messages": [{"role": "user", "content": "Describe a pet, as JSON."}],
            "max_tokens": 128, "temperature": 0.7, "seed": seed, "stream": True}
    if fmt:
        body["response_format"] = fmt
    r = urllib.request.Request(url + "/v1/chat/completions", json.dumps(body).encode(),
                               {"content-type": "application/json"})
    times, text, finish = [], "", None
    for line in urllib.request.urlopen(r):
        if not line.startswith(b"data: {"):
            continue
        for ch in json.loads(line[6:]).get("choices", []):
            if ch["delta"].get("content"):
                times.append(time.time())
                text += ch["delta"]["content"]
            finish = ch.get("finish_reason") or finish
    if fmt and finish == "stop":
        json.loads(text)  # the answer parses, or the bench stops
    return times[-1] - times[0], len(times) - 1


def batch(url, fmt):
    with ThreadPoolExecutor(conc) as ex:
        got = list(ex.map(lambda s: ask(url, fmt, s), range(conc)))
    return sum(g[0] for g in got) / max(1, sum(g[1] for g in got))


for _, url in servers:
    batch(url, None)  # warm up
names = list(modes)
for r in range(rounds):
    order = names[r % len(names):] + names[:r % len(names)]
    itl = {(s, m): batch(url, modes[m]) for m in order for s, url in servers}
    for s, _ in servers:
        free = itl[(s, "free text")]
        line = ", ".join(f"{m} {itl[(s, m)] * 1e3:.2f} ms/tok ({itl[(s, m)] / free:.2f}x)" for m in names)
        print(f"round {r + 1}, {conc} at once, {s}: {line}")
    if len(servers) == 2:
        (a, _), (b, _) = servers
        line = ", ".join(f"{m} {itl[(a, m)] / itl[(b, m)]:.2f}" for m in names)
        print(f"round {r + 1}: {a} / {b} time per token: {line}")
