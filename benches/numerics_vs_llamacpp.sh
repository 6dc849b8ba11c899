#!/usr/bin/env bash
# Op by op: smelt's intermediate tensors next to llama.cpp's (flash attention off) along one
# greedy path, with SmolLM2 quantized to Q8_0 by smelt. For each decode call (the prompt, then
# each token) it compares every layer's tensors under llama.cpp's graph names (attn_norm, Qcur,
# Kcur, Vcur, Qrope and Krope (llama.cpp's roped Qcur/Kcur), kqv_out, attn_out, ffn_norm,
# ffn_gate, ffn_up, ffn_swiglu, ffn_out; for a mixture of experts ffn_moe_logits, ffn_moe_probs
# and ffn_moe_out) and the last row's logits, and prints how many are
# bit-identical and the first that is not. llama.cpp's side is benches/llamacpp_dump.c (its
# eval callback); smelt's is crates/smelt-models/examples/dump_taps.rs.
#
# Usage: benches/numerics_vs_llamacpp.sh [PROMPT] [N_TOKENS] [MODEL.gguf]
set -euo pipefail
cd "$(dirname "$0")/.."
prompt=${1:-The capital of France is}
n=${2:-16}
source benches/llamacpp_common.sh
llamacpp_tools llama-completion
smelt_and_scratch
cargo build --release -q -p smelt-models --example dump_taps
llamacpp_cc llamacpp_dump llama ggml ggml-base
model=${3:-$(smelt_requantized Q8_0)}
# smelt's greedy tokens are the path; the last is not run.
$smelt -q run "$model" -p "$prompt" -n "$n" -t 2 --logits-top 1 > /dev/null 2> "$work/steps.jsonl"
forced=$(python3 -c 'import json,sys; t=[json.loads(l)["token"] for l in open(sys.argv[1]) if l.startswith("{")]; print(",".join(map(str, t[:-1])))' "$work/steps.jsonl")
prompt_ids=$("$work/llamacpp_dump" "$model" "$prompt" "$forced" "$work/llama.bin" 2> "$work/llama.log") \
  || { tail -5 "$work/llama.log" >&2; exit 1; }
target/release/examples/dump_taps "$model" "$prompt_ids" "$forced" "$work/smelt.bin"
python3 - "$work" <<'PY'
import struct, sys
work = sys.argv[1]

def parse(path, llama):
    """Steps of {name: f32 bytes}. llama.cpp names a tensor again after each view, so its
    first Qcur/Kcur/Vcur is the product and its third Qcur/Kcur the roped one."""
    data, at, steps, seen = open(path, "rb").read(), 0, [], {}
    while at < len(data):
        name = data[at:at + 64].split(b"\0")[0].decode()
        dims = struct.unpack("<4q", data[at + 64:at + 96])
        at += 96
        if name.startswith("STEP"):
            steps.append({})
            seen = {}
            continue
        n = dims[0] * dims[1] * dims[2] * dims[3]
        raw, row = data[at:at + 4 * n], 4 * dims[0]
        at += 4 * n
        if llama:
            k = seen.get(name, 0)
            seen[name] = k + 1
            base = name.split("-")[0]
            if base in ("Qcur", "Kcur", "Vcur"):
                if k == 2 and base != "Vcur":
                    name = name.replace("cur", "rope")
                elif k != 0:
                    continue
        steps[-1][name] = (raw, row)
    return steps

order = ["attn_norm", "Qcur", "Kcur", "Vcur", "Qrope", "Krope", "kqv_out", "attn_out",
         "ffn_norm", "ffn_gate", "ffn_up", "ffn_swiglu", "ffn_out", "ffn_moe_logits",
         "ffn_moe_probs", "ffn_moe_out", "ffn_shexp"]
llama, ours = parse(f"{work}/llama.bin", True), parse(f"{work}/smelt.bin", False)
total_same = total = 0
for s, (a, b) in enumerate(zip(llama, ours)):
    names = [f"{o}-{l}" for l in range(1000) for o in order if f"{o}-{l}" in a and f"{o}-{l}" in b]
    names.append("result_output")
    same, first = 0, None
    for name in names:
        (x, row), (y, _) = a[name], b[name]
        # llama.cpp keeps only the last row where the output needs no more (last layer, logits).
        x, y = (x[-row:], y[-row:]) if len(x) != len(y) or name == "result_output" else (x, y)
        if x == y:
            same += 1
        elif first is None:
            fx, fy = struct.unpack(f"<{len(x) // 4}f", x), struct.unpack(f"<{len(y) // 4}f", y)
            d = [abs(u - v) for u, v in zip(fx, fy) if u != v]
            first = f"{name}: {len(d)} of {len(fx)} values differ, max |Δ| {max(d, default=0.0):.3g}"
    total_same += same
    total += len(names)
    kind = "prompt" if s == 0 else f"token {s}"
    print(f"step {s:3d} ({kind}): {same}/{len(names)} tensors bit-identical"
          + (f"; first difference {first}" if first else ""))
print(f"all steps: {total_same}/{total} tensors bit-identical")
PY
