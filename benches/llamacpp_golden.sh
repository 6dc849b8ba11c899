#!/usr/bin/env bash
# Writes crates/smelt-models/tests/data/llamacpp_{q8_0,q5_0,q4_0,q4_1,q4_k_m,q5_k_s}_greedy.json:
# llama.cpp's own logits along its greedy path for three prompts, with SmolLM2 as shipped (Q4_1)
# and quantized to Q8_0, Q5_0, Q4_0, Q4_K_M and Q5_K_S by smelt, flash attention off, so that
# tests/llamacpp_golden.rs can hold smelt to them without llama.cpp at hand.
#
# Per step it keeps the top five (token, logit bits) and an FNV-1a hash of the whole logit row
# (n_vocab f32, little-endian), which only the same floats reproduce. The path is smelt's greedy
# tokens, and the script checks that each is also llama.cpp's argmax, so it is llama.cpp's
# greedy path too (it stops with an error where they part).
#
# llama.cpp (the llama-cpp-python 0.3.36 sdist's vendored copy, built by
# benches/llamacpp_native.sh, native x86-64 with AVX-512, no AMX) runs outside the repository.
# q8_0_rope_freqs is the Q8_0 model with a `rope_freqs.weight` tensor added by gguf-py (how
# llama.cpp's converter encodes Llama 3.1's `llama3` RoPE scaling): Llama 3.1's formula with
# factor 8, low/high frequency factors 1 and 4, and an original context of 64 positions, so the
# short prompts already turn most pairs at a scaled speed. Its factors go into the JSON.
# qwen2 and qwen3 are the Q8_0 model moved to those architectures by gguf-py (keys renamed;
# NeoX RoPE, as llama.cpp runs them) with the tensors they add, filled by an integer formula
# that tests/llamacpp_golden.rs repeats exactly (dyadic values, so f32 holds them exactly):
# Qwen 2's q/k/v biases and Qwen 3's per-head q/k RMSNorm weights.
# phi3 is the Q8_0 model moved to Phi-3's layout: q/k/v rows stacked into one attn_qkv
# matrix and gate/up into one ffn_up (gate first), the blocks copied as they are.
# phi3_wide is made up the same way with heads of 96 (1/sqrt(96) is not a power of two).
# phi3_longrope is phi3_wide with Phi-3.5's LongRoPE (an attention factor on cos and sin, long
# and short frequency factors, an original context of 64, so llama.cpp's context takes the
# long ones).
# qwen3_wide is a small Qwen 3 made up here (2 layers, width 64, 4 heads of 32: wider than
# width / heads, as real Qwen 3 models are; SmolLM2's vocabulary), F32 weights from a
# splitmix64 formula the test repeats, quantized to Q8_0 by smelt.
# gemma3 is a small Gemma 3 made up the same way (3 layers, width 128, 2 query heads and 1 KV
# head of 256 as Gemma 3 1B's, GeGLU, q/k norms and post-norms, embeddings scaled by
# sqrt(128)): a sliding window of 8 positions on layers 0 and 2 (pattern 2) rotating with the
# default local base 10000, layer 1 global with base 1e6 and linear RoPE scaling 8, and final
# logit soft-capping at 30. Run it with N_TOKENS 160 so the windows slide past whole blocks.
# gemma2 is the same without q/k norms, as Gemma 2 reads it: llama.cpp's defaults (pattern 2,
# one RoPE for all layers, here base 1e6 scaled linearly by 8, logits capped at 30), a window
# of 8 and attention scores capped at 5 (Gemma 2's 50 would barely bend these small scores).
# Usage: benches/llamacpp_golden.sh [N_TOKENS] [KINDS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-64}
kinds=${2:-q8_0 q5_0 q4_0 q4_1 q4_k_m q5_k_s q8_0_rope_freqs qwen2 qwen3 qwen3_wide phi3 phi3_wide phi3_longrope gemma3 gemma2 qwen3moe mixtral qwen3moe_q4_k_m qwen2moe}
py=${SMELT_TEST_PYTHON:-.venv/bin/python}

# with_rope_freqs IN: IN with rope_freqs.weight added (gguf-py copies everything else as
# gguf_new_metadata.py does); prints its path.
with_rope_freqs() {
  local out="${1%.gguf}.rope_freqs.gguf"
  "$py" - "$1" "$out" <<'PY' || return 1
import sys, math
import numpy as np
import gguf
sys.path.insert(0, "benches")
from gguf_fields import copy_fields
src, dst = sys.argv[1], sys.argv[2]
r = gguf.GGUFReader(src)
w = gguf.GGUFWriter(dst, "llama")
copy_fields(r, w)
base = float(r.fields["llama.rope.freq_base"].contents())
dim = int(r.fields["llama.rope.dimension_count"].contents())
# llama.cpp's converter (conversion/llama.py, generate_extra_tensors) in float32.
factor, low, high, old = 8.0, 1.0, 4.0, 64.0
freqs = (np.float32(1.0) / np.power(np.float32(base), np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim))).astype(np.float32)
ff = []
for freq in freqs:
    wavelen = np.float32(2 * math.pi) / freq
    if wavelen < old / high:
        ff.append(1.0)
    elif wavelen > old / low:
        ff.append(factor)
    else:
        smooth = (np.float32(old) / wavelen - np.float32(low)) / np.float32(high - low)
        ff.append(np.float32(1) / ((np.float32(1) - smooth) / np.float32(factor) + smooth))
ff = np.array(ff, dtype=np.float32)
tensors = list(r.tensors)
w.add_tensor_info("rope_freqs.weight", ff.shape, ff.dtype, ff.nbytes, gguf.GGMLQuantizationType.F32)
for t in tensors:
    w.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_ti_data_to_file()
w.write_tensor_data(ff)
for t in tensors:
    w.write_tensor_data(t.data, tensor_endianess=r.endianess)
w.close()
open(dst + ".factors", "w").write(",".join(str(int(b)) for b in ff.view(np.uint32)))
PY
  echo "$out"
}
# as_arch IN ARCH: IN moved to ARCH (qwen2 or qwen3) with that architecture's extra tensors;
# prints its path.
as_arch() {
  local out="${1%.gguf}.$2.gguf"
  "$py" - "$1" "$out" "$2" <<'PY' || return 1
import sys
import numpy as np
import gguf
sys.path.insert(0, "benches")
from gguf_fields import copy_fields
src, dst, arch = sys.argv[1], sys.argv[2], sys.argv[3]
r = gguf.GGUFReader(src)
w = gguf.GGUFWriter(dst, arch)
copy_fields(r, w, arch=arch)
meta = lambda k: int(r.fields["llama." + k].contents())
n_layer, e, n_head, n_kv = meta("block_count"), meta("embedding_length"), meta("attention.head_count"), meta("attention.head_count_kv")
hd = e // n_head

def pattern(layer, which, n, modulus, scale, base):
    # Repeated by tests/llamacpp_golden.rs: integers, then one exact division.
    i = np.arange(n, dtype=np.int64)
    k = (i * 7919 + layer * 104729 + which * 31337) % modulus - modulus // 2
    return (base + k / scale).astype(np.float32)

extra = []
for l in range(n_layer):
    if arch == "qwen2":
        for j, (name, n) in enumerate([("attn_q", e), ("attn_k", n_kv * hd), ("attn_v", n_kv * hd)]):
            extra.append((f"blk.{l}.{name}.bias", pattern(l, j, n, 2001, 4096.0, 0.0)))
    else:
        for j, name in enumerate(["attn_q_norm", "attn_k_norm"]):
            extra.append((f"blk.{l}.{name}.weight", pattern(l, j, hd, 257, 1024.0, 1.0)))
tensors = list(r.tensors)
for name, a in extra:
    w.add_tensor_info(name, a.shape, a.dtype, a.nbytes, gguf.GGMLQuantizationType.F32)
for t in tensors:
    w.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_ti_data_to_file()
for _, a in extra:
    w.write_tensor_data(a)
for t in tensors:
    w.write_tensor_data(t.data, tensor_endianess=r.endianess)
w.close()
PY
  echo "$out"
}
# as_phi3 IN: IN moved to phi3 with fused attn_qkv and ffn_up; prints its path.
as_phi3() {
  local out="${1%.gguf}.phi3.gguf"
  "$py" - "$1" "$out" <<'PY' || return 1
import sys
import numpy as np
import gguf
sys.path.insert(0, "benches")
from gguf_fields import copy_fields
src, dst = sys.argv[1], sys.argv[2]
r = gguf.GGUFReader(src)
w = gguf.GGUFWriter(dst, "phi3")
copy_fields(r, w, arch="phi3")
by_name = {t.name: t for t in r.tensors}
out = []
for t in r.tensors:
    blk, _, rest = t.name.partition(".")
    if blk == "blk":
        l, _, suffix = rest.partition(".")
        parts = {"attn_q.weight": ("attn_qkv.weight", ["attn_q", "attn_k", "attn_v"]),
                 "ffn_gate.weight": ("ffn_up.weight", ["ffn_gate", "ffn_up"])}
        if suffix in parts:
            name, members = parts[suffix]
            srcs = [by_name[f"blk.{l}.{m}.weight"] for m in members]
            assert len({s.tensor_type for s in srcs}) == 1
            out.append((f"blk.{l}.{name}", np.concatenate([s.data for s in srcs], axis=0), srcs[0].tensor_type))
            continue
        if suffix in ("attn_k.weight", "attn_v.weight", "ffn_up.weight"):
            continue
    out.append((t.name, t.data, t.tensor_type))
for name, data, ty in out:
    w.add_tensor_info(name, data.shape, data.dtype, data.nbytes, ty)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_ti_data_to_file()
for _, data, _ in out:
    w.write_tensor_data(data, tensor_endianess=r.endianess)
w.close()
PY
  echo "$out"
}
# made_up KIND: a small made-up model in F32 (qwen3_wide, phi3_wide, gemma3, gemma2, qwen3moe or
# mixtral), quantized to Q8_0 by smelt (but the routers, which llama.cpp's mixes keep in F32);
# prints its path.
made_up() {
  local mix=Q8_0
  [ "$1" = qwen3moe_q4_k_m ] && mix=Q4_K_M
  local f32="$work/$1.f32.gguf" out="$work/$1.$mix.gguf"
  "$py" benches/made_model.py "$q41" "$f32" "$1" || return 1
  $smelt -q --runs-dir "$work/runs" gguf quantize "$f32" "$out" "$mix" > /dev/null || return 1
  echo "$out"
}
source benches/llamacpp_common.sh
llamacpp_tools llama-completion
smelt_and_scratch
llamacpp_cc llamacpp_logits llama
q41="${SMELT_HOME:-$HOME/.cache/smelt}/assets/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"
for kind in $kinds; do
  case $kind in
    q4_1) model=$q41 ;;
    q8_0_rope_freqs) model=$(with_rope_freqs "$(smelt_requantized Q8_0)") ;;
    qwen2|qwen3) model=$(as_arch "$(smelt_requantized Q8_0)" "$kind") ;;
    qwen3_wide|phi3_wide|phi3_longrope|gemma3|gemma2|qwen3moe|mixtral|qwen3moe_q4_k_m|qwen2moe) model=$(made_up "$kind") ;;
    phi3) model=$(as_phi3 "$(smelt_requantized Q8_0)") ;;
    *) model=$(smelt_requantized "${kind^^}") ;;
  esac
  mkdir -p "$work/$kind"
  for i in "${!prompts[@]}"; do
    p=${prompts[$i]}
    $smelt -q run "$model" -p "$p" -n "$n" -t 2 --logits-top 1 > /dev/null 2> "$work/$kind/steps.$i.jsonl"
    tokens=$(python3 -c 'import json,sys; print(",".join(str(json.loads(l)["token"]) for l in open(sys.argv[1]) if l.startswith("{")))' "$work/$kind/steps.$i.jsonl")
    echo "$tokens" > "$work/$kind/tokens.$i"
    "$work/llamacpp_logits" "$model" "$p" "$tokens" 0 "$work/$kind/logits.$i.bin" 2> /dev/null
  done
  python3 - "$work/$kind" "crates/smelt-models/tests/data/llamacpp_${kind}_greedy.json" "$kind" "$model" "${prompts[@]}" <<'PY'
import array, json, os, sys
work, out, kind, model_path, prompts = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]

def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h

runs = []
for i, prompt in enumerate(prompts):
    tokens = [int(t) for t in open(f"{work}/tokens.{i}").read().strip().split(",")]
    raw = open(f"{work}/logits.{i}.bin", "rb").read()
    n_vocab = len(raw) // 4 // len(tokens)
    steps = []
    for k, tok in enumerate(tokens):
        row_bytes = raw[4 * n_vocab * k:4 * n_vocab * (k + 1)]
        row = array.array("f")
        row.frombytes(row_bytes)
        top = sorted(range(n_vocab), key=lambda t: -row[t])[:5]
        if top[0] != tok:
            sys.exit(f"{kind} prompt {i} step {k}: llama.cpp's argmax is {top[0]}, smelt chose {tok}")
        bits = array.array("I")
        bits.frombytes(row_bytes)
        steps.append({"top": [[t, bits[t]] for t in top], "fnv1a64": f"{fnv1a64(row_bytes):016x}"})
    runs.append({"prompt": prompt, "tokens": tokens, "steps": steps})
model = {
    "q8_0": "SmolLM2-135M-Instruct (DATA.md's Q4_1 GGUF) requantized to Q8_0 by "
            "`smelt gguf quantize smollm2-135m OUT Q8_0 --allow-requantize`",
    "q5_0": "SmolLM2-135M-Instruct (DATA.md's Q4_1 GGUF) requantized to Q5_0 by "
            "`smelt gguf quantize smollm2-135m OUT Q5_0 --allow-requantize` (its output "
            "matrix is Q8_0, llama.cpp's mix)",
    "q4_0": "SmolLM2-135M-Instruct (DATA.md's Q4_1 GGUF) requantized to Q4_0 by "
            "`smelt gguf quantize smollm2-135m OUT Q4_0 --allow-requantize` (its output "
            "matrix is Q8_0, llama.cpp's mix; llama.cpp repacks the Q4_0 matrices)",
    "q4_1": "SmolLM2-135M-Instruct.Q4_1.gguf as shipped (DATA.md)",
    "q4_k_m": "SmolLM2-135M-Instruct (DATA.md's Q4_1 GGUF) requantized to Q4_K_M by "
              "`smelt gguf quantize smollm2-135m OUT Q4_K_M --allow-requantize` (llama.cpp's "
              "mix: Q4_K and Q6_K ffn_down, Q5_0 and Q8_0 where rows are not whole 256-blocks; "
              "llama.cpp repacks the Q4_K matrices, and sends the 13-token prompt's Q6_K "
              "products through its tiled matmul)",
    "q5_k_s": "SmolLM2-135M-Instruct (DATA.md's Q4_1 GGUF) requantized to Q5_K_S by "
              "`smelt gguf quantize smollm2-135m OUT Q5_K_S --allow-requantize` (Q5_K ffn_down, "
              "Q5_1 and Q8_0 elsewhere)",
    "q8_0_rope_freqs": "SmolLM2 requantized to Q8_0 as in llamacpp_q8_0_greedy.json, with a "
                       "rope_freqs.weight tensor (F32; rope_freqs holds its f32 bits) added by "
                       "gguf-py: Llama 3.1's llama3 factors for factor 8, low/high frequency "
                       "factors 1 and 4, original context 64",
    "qwen2": "SmolLM2 requantized to Q8_0 as in llamacpp_q8_0_greedy.json, moved to the qwen2 "
             "architecture by gguf-py (llama.* keys renamed qwen2.*; llama.cpp rotates NeoX-style) "
             "with F32 biases blk.L.attn_{q,k,v}.bias (j = 0, 1, 2), element i = "
             "((i*7919 + L*104729 + j*31337) mod 2001 - 1000) / 4096",
    "qwen3": "SmolLM2 requantized to Q8_0 as in llamacpp_q8_0_greedy.json, moved to the qwen3 "
             "architecture by gguf-py (llama.* keys renamed qwen3.*; NeoX RoPE) with F32 per-head "
             "RMSNorm weights blk.L.attn_{q,k}_norm.weight (j = 0, 1), element i = "
             "1 + ((i*7919 + L*104729 + j*31337) mod 257 - 128) / 1024",
    "qwen3_wide": "a small Qwen 3 made up by benches/llamacpp_golden.sh (2 layers, width 64, "
                  "4 query heads and 2 KV heads of 32, feed-forward 128, RoPE base 1e6, RMS "
                  "epsilon 1e-6, SmolLM2's vocabulary, tied output): F32 weights from splitmix64 "
                  "of (t << 32) + i for the t-th tensor (matrices (z >> 40) - 2^23 over 2^25, "
                  "norms 1 + ((z >> 56) - 128) / 1024), quantized to Q8_0 by `smelt gguf quantize`",
    "phi3_wide": "a small Phi-3 made up by benches/llamacpp_golden.sh as qwen3_wide (2 layers, "
                 "width 192, 2 query heads and 1 KV head of 96, so 1/sqrt(96) scales the "
                 "queries, feed-forward 256, no q/k norms), q/k/v and gate/up stacked into "
                 "attn_qkv and ffn_up in F32 before `smelt gguf quantize` makes it Q8_0",
    "phi3_longrope": "phi3_wide with LongRoPE as Phi-3.5's GGUF files carry it: "
                     "phi3.rope.scaling.attn_factor 1.1902381, "
                     "phi3.rope.scaling.original_context_length 64 (llamacpp_logits's 1024-position "
                     "context takes the long factors), rope_factors_long.weight 1 + i/2 and "
                     "rope_factors_short.weight 1 + i/64 (i < 48, F32, kept F32 by the quantizer)",
    "gemma3": "a small Gemma 3 made up by benches/llamacpp_golden.sh as qwen3_wide (3 layers, "
              "width 128, 2 query heads and 1 KV head of 256, feed-forward 256, GeGLU, q/k norms, "
              "post-attention and post-feed-forward norms 1 + ((z >> 56) - 128) / 1024 from "
              "tensors t + 11 and t + 12, embeddings scaled by sqrt(128)); sliding window 8 with "
              "pattern 2 (layers 0 and 2 local, RoPE base 10000 unscaled), layer 1 global (base "
              "1e6, linear scaling 8), final logit soft-capping 30; quantized to Q8_0 by "
              "`smelt gguf quantize`",
    "gemma2": "a small Gemma 2 made up by benches/llamacpp_golden.sh as gemma3 without q/k norms "
              "(3 layers, width 128, 2 query heads and 1 KV head of 256, feed-forward 256, GeGLU, "
              "post-norms, embeddings scaled by sqrt(128)); llama.cpp's Gemma 2 defaults (layers 0 "
              "and 2 local, one RoPE for all layers, final logits capped at 30) with RoPE base 1e6 "
              "scaled linearly by 8, a sliding window of 8 and attention scores capped at 5; "
              "quantized to Q8_0 by `smelt gguf quantize`",
    "qwen3moe": "a small Qwen 3 MoE made up by benches/made_model.py the way qwen3_wide is (2 "
                "layers, width 128, 4 query heads and 2 KV heads of 32, q/k norms, RoPE base 1e6) "
                "with 20 experts of width 64 per layer and 4 per token: ffn_{gate,up,down}_exps "
                "from tensors t + 8, t + 9, t + 10 stacked (experts, rows, cols), router "
                "ffn_gate_inp from t + 13; quantized to Q8_0 by `smelt gguf quantize`, which "
                "keeps the routers in F32 as llama.cpp's mixes do",
    "qwen3moe_q4_k_m": "a small Qwen 3 MoE made up as qwen3moe (2 layers, width 256, 4 query "
                       "heads and 2 KV heads of 64, 16 experts of width 256, 4 per token) and "
                       "quantized to Q4_K_M by `smelt gguf quantize` (Q4_K experts, which llama.cpp "
                       "repacks, Q6_K down experts and V on the layers llama.cpp's rule picks; F32 "
                       "routers)",
    "qwen2moe": "a small Qwen 2 MoE made up as qwen3moe (2 layers, width 128, 4 query heads and "
                "2 KV heads of 32, no q/k norms, RoPE base 1e6) with 12 experts of width 64 per "
                "layer, 4 per token, weights not renormalized, and a shared expert of width 96 "
                "(ffn_{gate,up,down}_shexp from tensors t + 5, t + 6, t + 11, its sigmoid gate's "
                "(128,) F32 weights ffn_gate_inp_shexp from t + 12); Q8_0 but the F32 routers",
    "mixtral": "a small Mixtral-style model made up as qwen3moe but with architecture llama "
               "(adjacent-pair RoPE, no q/k norms) and 8 experts of width 64 per layer, 2 per "
               "token; Q8_0 experts, F32 routers",
    "phi3": "SmolLM2 requantized to Q8_0 as in llamacpp_q8_0_greedy.json, moved to the phi3 "
            "architecture by gguf-py (llama.* keys renamed phi3.*; NeoX RoPE, queries scaled "
            "before attention) with each layer's attn_q/attn_k/attn_v blocks stacked into "
            "attn_qkv and ffn_gate/ffn_up into ffn_up (gate rows first), bytes unchanged",
}[kind]
doc = {
    "source": "llama.cpp from the llama-cpp-python 0.3.36 sdist (vendored), built by "
              "benches/llamacpp_native.sh for x86-64 with AVX-512 (no AMX), CPU, 2 threads, "
              "flash attention off; logits of llama_decode along the path via "
              "benches/llamacpp_logits.c; written by benches/llamacpp_golden.sh",
    "model": model,
    "n_vocab": n_vocab,
    "step": "step k holds the logits after the prompt and tokens[..k]; tokens[k] is their argmax",
    "runs": runs,
}
if os.path.exists(model_path + ".factors"):
    doc["rope_freqs"] = [int(b) for b in open(model_path + ".factors").read().split(",")]
with open(out + ".tmp", "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")
os.replace(out + ".tmp", out)
print(f"{out}: {len(runs)} prompts, {sum(len(r['steps']) for r in runs)} steps; every step's argmax is the path's next token")
PY
done
