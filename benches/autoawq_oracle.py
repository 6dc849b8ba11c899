#!/usr/bin/env python3
"""AutoAWQ as an outside oracle for `smelt llm ... --method awq`.

Runs AutoAWQ (PyPI `autoawq`, on PyTorch + transformers) on the same F32 base and the same
calibration windows smelt uses, and writes the result back as an F32 GGUF so smelt rounds and
scores it exactly as it scores its own AWQ. Driven by benches/awq_vs_autoawq.sh, which also
runs smelt's side.

  autoawq_oracle.py MODEL.gguf CALIB.json OUT.gguf [--bits 4] [--group 128] [--check-windows 2]

1. Every tensor of MODEL.gguf is dequantized to F32 (gguf-py), as `smelt llm` does for its base.
2. The tensors become a Hugging Face LlamaForCausalLM. llama.cpp's converter stores q and k with
   each head's rows reordered for its rotary layout (pairs interleaved rather than halves); that
   order is undone here and redone on the way back.
3. As a check of the conversion, the model's perplexity on the first --check-windows held-out
   windows is printed, scored the way llama-perplexity (and smelt) score them; compare it with
   `smelt llm compare --methods rtn --eval-chunks N`'s base row.
4. AutoAWQ searches the scales and clipping (export_compatible=True: scales folded and weights
   clipped, not rounded; AutoAWQ's own order, each layer calibrated on the float model's
   activations) with zero point, group --group, --bits bits.
5. The scaled, clipped F32 weights are written to OUT.gguf with the original metadata; smelt's
   RTN on that file is AutoAWQ's AWQ on smelt's grid.
"""

import argparse
import json
import math
import os
import sys
import tempfile

import numpy as np


def unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    """GGUF (interleaved rotary pairs) row order of a q/k matrix -> Hugging Face (halves)."""
    rows = w.shape[0]
    return w.reshape(heads, rows // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def permute(w: np.ndarray, heads: int) -> np.ndarray:
    """Hugging Face row order of a q/k matrix -> GGUF's."""
    rows = w.shape[0]
    return w.reshape(heads, 2, rows // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def hf_name(gguf_name: str) -> str:
    if gguf_name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if gguf_name == "output_norm.weight":
        return "model.norm.weight"
    if gguf_name == "output.weight":
        return "lm_head.weight"
    blk, i, part, kind = gguf_name.split(".")
    if blk != "blk" or part not in LAYER_NAMES:
        raise SystemExit(f"{gguf_name}: not a llama tensor this script knows")
    return f"model.layers.{i}.{LAYER_NAMES[part]}.{kind}"


def field(reader, key):
    f = reader.fields.get(key)
    if f is None:
        raise SystemExit(f"{key}: missing from the GGUF")
    return f.contents()


def perplexity(model, tokens, bos, ctx, windows):
    """llama-perplexity's score: non-overlapping windows (first token replaced by BOS), the
    second half of each scored."""
    import torch

    nll, count = 0.0, 0
    for i in range(windows):
        w = list(tokens[i * ctx:(i + 1) * ctx])
        if len(w) < ctx:
            break
        if bos is not None:
            w[0] = bos
        with torch.no_grad():
            logits = model(torch.tensor([w])).logits[0].float()
        logp = torch.log_softmax(logits, dim=-1)
        first = ctx // 2
        for j in range(first, ctx - 1):
            nll -= logp[j, w[j + 1]].item()
            count += 1
    return math.exp(nll / max(count, 1))


def patch_autoawq_cpu_snapshot():
    """AutoAWQ's scale search snapshots the inspected module with `v.cpu()` before trying each
    α and restores it afterwards. On a GPU that is a copy; on a CPU-only run `.cpu()` returns the
    live tensor, so the trial's in-place `weight.mul_(scales)` leaks into the snapshot and the
    "restored" weights keep one trial's scales (measured: SmolLM2's perplexity went from 14.7
    to 84084 with weights merely scaled and clipped). The one expression is rewritten to clone,
    which is what the GPU path does; the rest of AutoAWQ runs as released."""
    import inspect
    import textwrap

    from awq.quantize import quantizer

    src = textwrap.dedent(inspect.getsource(quantizer.AwqQuantizer._compute_best_scale))
    old = "org_sd = {k: v.cpu() for k, v in module2inspect.state_dict().items()}"
    if old not in src:
        raise SystemExit("AutoAWQ's _compute_best_scale changed; check the CPU snapshot patch")
    src = src.replace(old, old.replace("v.cpu()", "v.detach().clone().cpu()"))
    scope = {}
    exec(compile(src, quantizer.__file__, "exec"), quantizer.__dict__, scope)
    quantizer.AwqQuantizer._compute_best_scale = scope["_compute_best_scale"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("calib")
    ap.add_argument("out")
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--group", type=int, default=128)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--check-windows", type=int, default=2)
    a = ap.parse_args()

    import gguf
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    reader = gguf.GGUFReader(a.model)
    arch = field(reader, "general.architecture")
    if arch != "llama":
        raise SystemExit(f"architecture {arch!r}: this script converts llama only")
    n_head = int(field(reader, "llama.attention.head_count"))
    n_kv = int(field(reader, "llama.attention.head_count_kv"))
    tensors = {}
    for t in reader.tensors:
        # (rows, cols) F32 for matrices, (n,) for norms.
        w = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
        w = w.reshape([int(d) for d in reversed(t.shape.tolist())])
        if t.name.endswith("attn_q.weight"):
            w = unpermute(w, n_head)
        elif t.name.endswith("attn_k.weight"):
            w = unpermute(w, n_kv)
        tensors[t.name] = w
    vocab, n_embd = tensors["token_embd.weight"].shape
    tied = "output.weight" not in tensors
    cfg = LlamaConfig(
        vocab_size=int(vocab),
        hidden_size=int(n_embd),
        intermediate_size=int(tensors["blk.0.ffn_gate.weight"].shape[0]),
        num_hidden_layers=int(field(reader, "llama.block_count")),
        num_attention_heads=n_head,
        num_key_value_heads=n_kv,
        rms_norm_eps=float(field(reader, "llama.attention.layer_norm_rms_epsilon")),
        rope_theta=float(field(reader, "llama.rope.freq_base")),
        max_position_embeddings=int(field(reader, "llama.context_length")),
        tie_word_embeddings=tied,
        torch_dtype="float32",
    )
    state = {hf_name(k): torch.from_numpy(v.copy()) for k, v in tensors.items()}
    model = LlamaForCausalLM(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not (tied and m == "lm_head.weight")]
    if missing or unexpected:
        raise SystemExit(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model.eval()

    data = json.load(open(a.calib))
    calib, eval_tokens, bos = data["calib"], data["eval"], data.get("bos")
    if a.check_windows > 0:
        ppl = perplexity(model, eval_tokens, bos, a.ctx, a.check_windows)
        print(f"conversion check: base perplexity on {a.check_windows} held-out windows "
              f"of {a.ctx}: {ppl:.4f}", flush=True)

    from awq import AutoAWQForCausalLM

    patch_autoawq_cpu_snapshot()

    with tempfile.TemporaryDirectory() as hf_dir:
        model.save_pretrained(hf_dir, safe_serialization=True)
        del model
        awq_model = AutoAWQForCausalLM.from_pretrained(
            hf_dir, torch_dtype=torch.float32, device_map="cpu", safetensors=True
        )
        awq_model.quantize(
            None,
            quant_config={"zero_point": True, "q_group_size": a.group, "w_bit": a.bits,
                          "version": "GEMM"},
            calib_data=calib,
            max_calib_samples=len(calib),
            max_calib_seq_len=len(calib[0]),
            export_compatible=True,
        )
        if a.check_windows > 0:
            ppl = perplexity(awq_model.model, eval_tokens, bos, a.ctx, a.check_windows)
            print(f"after AutoAWQ (scaled and clipped, not rounded): perplexity {ppl:.4f}",
                  flush=True)
        sd = {k: v.detach().float().numpy() for k, v in awq_model.model.state_dict().items()}

    back = {v: k for k, v in ((k, hf_name(k)) for k in tensors)}
    writer = gguf.GGUFWriter(a.out + ".tmp", arch)
    for f in reader.fields.values():
        if f.name == gguf.Keys.General.ARCHITECTURE or f.name.startswith("GGUF."):
            continue
        vt = f.types[0]
        sub = f.types[-1] if vt == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(f.name, f.contents(), vt, sub_type=sub)
    for hf, name in back.items():
        if hf not in sd:
            raise SystemExit(f"{hf}: not in AutoAWQ's model")
        w = sd[hf]
        if name.endswith("attn_q.weight"):
            w = permute(w, n_head)
        elif name.endswith("attn_k.weight"):
            w = permute(w, n_kv)
        writer.add_tensor(name, np.ascontiguousarray(w, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(a.out + ".tmp", a.out)
    print(f"wrote {a.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
