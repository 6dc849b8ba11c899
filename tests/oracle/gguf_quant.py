"""gguf-py (llama.cpp's Python package) as an outside oracle for smelt's block types and writer.

    gguf_quant.py quantize TYPE IN.f32 OUT.bin        raw little-endian f32 in, ggml blocks out
    gguf_quant.py dequantize TYPE IN.bin N OUT.f32    ggml blocks in, N f32 values out
    gguf_quant.py write OUT.gguf                      a small file written by gguf.GGUFWriter
"""
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T


def qtype(name):
    return T[name.upper()]


cmd = sys.argv[1]
if cmd == "quantize":
    ty = qtype(sys.argv[2])
    x = np.fromfile(sys.argv[3], dtype="<f4")
    if ty == T.F32:
        out = x
    elif ty == T.F16:
        out = x.astype(np.float16)
    else:
        out = gguf.quants.quantize(x.reshape(1, -1), ty)
    np.asarray(out).tofile(sys.argv[4])
elif cmd == "dequantize":
    ty = qtype(sys.argv[2])
    b = np.fromfile(sys.argv[3], dtype=np.uint8)
    n = int(sys.argv[4])
    if ty == T.F32:
        y = b.view("<f4")
    elif ty == T.F16:
        y = b.view("<f2").astype(np.float32)
    else:
        y = gguf.quants.dequantize(b.reshape(1, -1), ty).reshape(-1)
    assert y.size == n, (y.size, n)
    y.astype("<f4").tofile(sys.argv[5])
elif cmd == "write":
    w = gguf.GGUFWriter(sys.argv[2], "llama")
    w.add_string("general.name", "oracle")
    w.add_uint32("llama.block_count", 2)
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_bool("flag", True)
    w.add_int64("big", -(1 << 40))
    w.add_array("tokenizer.ggml.tokens", ["a", "bc", "<s>"])
    w.add_array("scores", [0.5, -1.25])
    rng = np.random.default_rng(0)
    w.add_tensor("f32", rng.standard_normal((3, 64), dtype=np.float32))
    w.add_tensor("f16", rng.standard_normal((2, 32)).astype(np.float16))
    q = gguf.quants.quantize(rng.standard_normal((4, 64), dtype=np.float32), T.Q8_0)
    w.add_tensor("q8", q, raw_dtype=T.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
else:
    sys.exit(f"unknown command {cmd}")
