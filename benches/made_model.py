"""Writes a small made-up model in F32 for benches/llamacpp_golden.sh (and, larger, for
benches/llm_vs_llamacpp.sh): SmolLM2's tokenizer, weights from splitmix64 of (t << 32) + i for
the t-th tensor (matrices (z >> 40) - 2^23 over 2^25, norms 1 + ((z >> 56) - 128) / 1024, all
exact in f32), which crates/smelt-models/tests/made_models/mod.rs repeats bit for bit.

Usage: made_model.py SMOLLM2.gguf OUT.gguf KIND [L,E,H,KV,HD,FF[,EXPERTS,USED]]
KIND: qwen3_wide, phi3_wide, phi3_longrope (with LongRoPE), gemma3, gemma2, qwen3moe, mixtral, qwen3moe_q4_k_m (rows of 256
for the k-quants) or qwen2moe (with a shared expert). The optional dims (layers,
width, heads, KV heads, head width, feed-forward or expert width, experts per layer and per
token) replace the kind's own and raise the context to 4096 (benchmark-size models).
"""
import sys
import numpy as np
import gguf
sys.path.insert(0, "benches")
from gguf_fields import copy_fields
src, dst, kind = sys.argv[1], sys.argv[2], sys.argv[3]
dims = [int(v) for v in sys.argv[4].split(",")] if len(sys.argv) > 4 else None
arch = {"qwen3_wide": "qwen3", "phi3_wide": "phi3", "phi3_longrope": "phi3", "gemma3": "gemma3", "gemma2": "gemma2",
        "qwen3moe": "qwen3moe", "mixtral": "llama", "qwen3moe_q4_k_m": "qwen3moe",
        "qwen2moe": "qwen2moe"}[kind]
r = gguf.GGUFReader(src)
w = gguf.GGUFWriter(dst, arch)
copy_fields(r, w, only="tokenizer.")
n_vocab = len(r.fields["tokenizer.ggml.tokens"].contents())
# Qwen 3: four heads of 32 at width 64; Phi-3: heads of 96 (its 1/sqrt(96) is not a power of
# two, so scaling the queries first rounds otherwise than scaling q.k).
L, E, H, KV, HD, FF = {"qwen3_wide": (2, 64, 4, 2, 32, 128), "phi3_wide": (2, 192, 2, 1, 96, 256),
                       "phi3_longrope": (2, 192, 2, 1, 96, 256),
                       "gemma3": (3, 128, 2, 1, 256, 256), "gemma2": (3, 128, 2, 1, 256, 256),
                       "qwen3moe": (2, 128, 4, 2, 32, 64), "mixtral": (2, 128, 4, 2, 32, 64),
                       "qwen3moe_q4_k_m": (2, 256, 4, 2, 64, 256),
                       "qwen2moe": (2, 128, 4, 2, 32, 64)}[kind]
# Experts per layer and per token; each expert as wide as FF.
NX, USED = {"qwen3moe": (20, 4), "mixtral": (8, 2), "qwen3moe_q4_k_m": (16, 4),
            "qwen2moe": (12, 4)}.get(kind, (1, 0))
# Qwen 2 MoE's shared expert: width 96, gate, up and down from tensors t + 5, t + 6, t + 11,
# the gate's (E,) weights from t + 12.
SFF = 96 if arch == "qwen2moe" else 0
CTX = 256
if dims:
    L, E, H, KV, HD, FF = dims[:6]
    if len(dims) == 8:
        NX, USED = dims[6:]
    CTX = 4096
for k, v in [("block_count", L), ("context_length", CTX), ("embedding_length", E),
             ("feed_forward_length", FF), ("attention.head_count", H),
             ("attention.head_count_kv", KV), ("attention.key_length", HD),
             ("attention.value_length", HD), ("rope.dimension_count", HD)]:
    w.add_uint32(arch + "." + k, v)
w.add_float32(arch + ".rope.freq_base", 1000000.0)
w.add_float32(arch + ".attention.layer_norm_rms_epsilon", 1e-6)
if USED:
    w.add_uint32(arch + ".expert_count", NX)
    w.add_uint32(arch + ".expert_used_count", USED)
    if arch in ("qwen3moe", "qwen2moe"):
        w.add_uint32(arch + ".expert_feed_forward_length", FF)
    if SFF:
        w.add_uint32(arch + ".expert_shared_feed_forward_length", SFF)
if kind == "phi3_longrope":
    # Phi-3.5's LongRoPE: its attention factor, a small original context (so llama.cpp's
    # 1024-position context takes the long factors) and two factor sets, below.
    w.add_float32(arch + ".rope.scaling.attn_factor", 1.1902381)
    w.add_uint32(arch + ".rope.scaling.original_context_length", 64)
if arch == "gemma3":
    w.add_uint32(arch + ".attention.sliding_window", 8)
    w.add_uint32(arch + ".attention.sliding_window_pattern", 2)
    w.add_string(arch + ".rope.scaling.type", "linear")
    w.add_float32(arch + ".rope.scaling.factor", 8.0)
    w.add_float32(arch + ".final_logit_softcapping", 30.0)
if arch == "gemma2":
    w.add_uint32(arch + ".attention.sliding_window", 8)
    w.add_float32(arch + ".attn_logit_softcapping", 5.0)
    w.add_string(arch + ".rope.scaling.type", "linear")
    w.add_float32(arch + ".rope.scaling.factor", 8.0)
M = np.uint64(0xFFFFFFFFFFFFFFFF)

def mix(t, n):
    # splitmix64 of (t << 32) + i, in wrapping uint64 arithmetic (the test repeats it).
    with np.errstate(over="ignore"):
        z = (np.uint64(t) << np.uint64(32)) + np.arange(n, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))

def matrix(t, rows, cols):
    # (24-bit integer - 2^23) / 2^25: in [-0.25, 0.25), exact in f32.
    k = (mix(t, rows * cols) >> np.uint64(40)).astype(np.int64) - (1 << 23)
    return (k / float(1 << 25)).astype(np.float32).reshape(rows, cols)

def norm(t, n):
    # 1 + (8-bit integer - 128) / 1024: in [0.875, 1.125), exact in f32.
    k = (mix(t, n) >> np.uint64(56)).astype(np.int64) - 128
    return (1.0 + k / 1024.0).astype(np.float32)

# (name, array): numpy shapes are (rows, cols), ggml's dims reversed; t counts in this order.
tensors = [("token_embd.weight", matrix(0, n_vocab, E)), ("output_norm.weight", norm(1, E))]
for l in range(L):
    t = 2 + 16 * l
    q, k, v = matrix(t + 1, H * HD, E), matrix(t + 2, KV * HD, E), matrix(t + 3, KV * HD, E)
    # Experts: matrices t + 8, t + 9, t + 10 stacked, numpy (experts, rows, cols); router t + 13.
    gate, up = matrix(t + 8, NX * FF, E), matrix(t + 9, NX * FF, E)
    tensors.append((f"blk.{l}.attn_norm.weight", norm(t, E)))
    if arch == "phi3":
        # Phi-3 stacks q/k/v rows and gate/up rows (gate first) into one matrix each.
        tensors += [(f"blk.{l}.attn_qkv.weight", np.concatenate([q, k, v])),
                    (f"blk.{l}.ffn_up.weight", np.concatenate([gate, up]))]
    else:
        tensors += [(f"blk.{l}.attn_q.weight", q), (f"blk.{l}.attn_k.weight", k),
                    (f"blk.{l}.attn_v.weight", v)]
        if arch in ("qwen3", "qwen3moe", "gemma3"):
            tensors += [(f"blk.{l}.attn_q_norm.weight", norm(t + 5, HD)),
                        (f"blk.{l}.attn_k_norm.weight", norm(t + 6, HD))]
        if USED:
            tensors += [(f"blk.{l}.ffn_gate_exps.weight", gate.reshape(NX, FF, E)),
                        (f"blk.{l}.ffn_up_exps.weight", up.reshape(NX, FF, E)),
                        (f"blk.{l}.ffn_down_exps.weight", matrix(t + 10, NX * E, FF).reshape(NX, E, FF)),
                        (f"blk.{l}.ffn_gate_inp.weight", matrix(t + 13, NX, E))]
            if SFF:
                tensors += [(f"blk.{l}.ffn_gate_shexp.weight", matrix(t + 5, SFF, E)),
                            (f"blk.{l}.ffn_up_shexp.weight", matrix(t + 6, SFF, E)),
                            (f"blk.{l}.ffn_down_shexp.weight", matrix(t + 11, E, SFF)),
                            (f"blk.{l}.ffn_gate_inp_shexp.weight", matrix(t + 12, 1, E).reshape(E))]
        else:
            tensors += [(f"blk.{l}.ffn_gate.weight", gate), (f"blk.{l}.ffn_up.weight", up)]
    if arch in ("gemma3", "gemma2"):
        tensors += [(f"blk.{l}.post_attention_norm.weight", norm(t + 11, E)),
                    (f"blk.{l}.post_ffw_norm.weight", norm(t + 12, E))]
    tensors += [
        (f"blk.{l}.attn_output.weight", matrix(t + 4, E, H * HD)),
        (f"blk.{l}.ffn_norm.weight", norm(t + 7, E)),
    ]
    if not USED:
        tensors.append((f"blk.{l}.ffn_down.weight", matrix(t + 10, E, FF)))
# llama.cpp's Qwen 2 MoE needs its own output matrix (tensor 2 + 16 L).
if arch == "qwen2moe":
    tensors.append(("output.weight", matrix(2 + 16 * L, n_vocab, E)))
if kind == "phi3_longrope":
    i = np.arange(HD // 2, dtype=np.float32)
    tensors += [("rope_factors_long.weight", (1 + i * np.float32(0.5)).astype(np.float32)),
                ("rope_factors_short.weight", (1 + i / np.float32(64)).astype(np.float32))]
for name, a in tensors:
    w.add_tensor(name, a)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
