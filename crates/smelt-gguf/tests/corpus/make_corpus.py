"""Writes the malformed-GGUF corpus: one small file per bug class that GGUF parsers have
shipped (heap overflows from trusted counts, lengths, dims and offsets; see llama.cpp's gguf.cpp
hardening, e.g. PRs #18674 (dims × stride wrap), #19856 (integer overflows, string/array limits),
#24997 and #26318 (general.alignment bounds and type), issue #15711 (tensor count × overhead)).
Run from this directory: python3 make_corpus.py. Plain Python, no dependencies."""
import struct

U32, U64 = "<I", "<Q"


def s(v: bytes) -> bytes:
    return struct.pack(U64, len(v)) + v


def kv(key: bytes, ty: int, payload: bytes) -> bytes:
    return s(key) + struct.pack(U32, ty) + payload


def tinfo(name: bytes, dims, ty: int, offset: int) -> bytes:
    out = s(name) + struct.pack(U32, len(dims))
    for d in dims:
        out += struct.pack(U64, d)
    return out + struct.pack(U32, ty) + struct.pack(U64, offset)


def gguf(kvs=(), infos=(), data=b"", version=3, magic=b"GGUF", n_kv=None, n_t=None, align=32):
    head = magic + struct.pack(U32, version)
    head += struct.pack(U64, len(infos) if n_t is None else n_t)
    head += struct.pack(U64, len(kvs) if n_kv is None else n_kv)
    body = head + b"".join(kvs) + b"".join(infos)
    body += b"\0" * (-len(body) % align)
    return body + data


F32, Q4_0, Q8_0 = 0, 2, 8
ARCH = kv(b"general.architecture", 8, s(b"llama"))
ok_tensor = tinfo(b"w", [8], F32, 0)
floats = b"\0" * 32

files = {
    "bad-magic": gguf(magic=b"GGML"),
    "big-endian": b"GGUF" + struct.pack(">I", 3) + struct.pack(">Q", 0) + struct.pack(">Q", 0),
    "version-1": gguf(version=1),
    "kv-count-huge": gguf([ARCH], n_kv=1 << 63),
    "tensor-count-overflow": gguf([ARCH], n_t=1 << 61),
    "string-len-past-eof": gguf([s(b"k")[:0] + struct.pack(U64, 1 << 40) + b"abc"], n_kv=1),
    "string-len-wraps": gguf([struct.pack(U64, (1 << 64) - 1) + b"k"], n_kv=1),
    "array-count-huge": gguf([kv(b"a", 9, struct.pack(U32, 10) + struct.pack(U64, 1 << 62))]),
    "array-nesting-bomb": gguf([kv(b"a", 9, (struct.pack(U32, 9) + struct.pack(U64, 1)) * 64)]),
    "bool-invalid": gguf([kv(b"b", 7, b"\x02")]),
    "unknown-value-type": gguf([kv(b"t", 13, b"\0" * 8)]),
    "empty-key": gguf([kv(b"", 4, struct.pack(U32, 1))]),
    "duplicate-key": gguf([ARCH, ARCH]),
    "alignment-zero": gguf([kv(b"general.alignment", 4, struct.pack(U32, 0))]),
    "alignment-not-power-of-two": gguf([kv(b"general.alignment", 4, struct.pack(U32, 24))]),
    "alignment-huge": gguf([kv(b"general.alignment", 4, struct.pack(U32, 0x80000000))]),
    "alignment-wrong-type": gguf([kv(b"general.alignment", 5, struct.pack("<i", 32))]),
    "n-dims-5": gguf([ARCH], [tinfo(b"w", [1, 1, 1, 1, 8], F32, 0)], floats),
    "n-dims-zero": gguf([ARCH], [tinfo(b"w", [], F32, 0)], floats),
    "dims-times-stride-wraps": gguf([ARCH], [tinfo(b"token_embd.weight", [1152, (1 << 42) + 1], Q8_0, 0)], floats),
    "dims-product-overflow": gguf([ARCH], [tinfo(b"w", [1 << 32, 1 << 32], F32, 0)], floats),
    "unknown-ggml-type": gguf([ARCH], [tinfo(b"w", [32], 4, 0)], floats),
    "row-not-block-multiple": gguf([ARCH], [tinfo(b"w", [33], Q4_0, 0)], floats),
    "offset-misaligned": gguf([ARCH], [tinfo(b"w", [8], F32, 4)], floats * 2),
    "offset-plus-size-wraps": gguf([ARCH], [tinfo(b"w", [8], F32, (1 << 64) - 32)], floats),
    "tensor-past-eof": gguf([ARCH], [tinfo(b"w", [1024], F32, 0)], floats),
    "tensors-overlap": gguf([ARCH], [tinfo(b"a", [16], F32, 0), tinfo(b"b", [8], F32, 32)], floats * 3),
    "offsets-out-of-order": gguf([ARCH], [tinfo(b"a", [8], F32, 32), tinfo(b"b", [8], F32, 0)], floats * 2),
    "duplicate-tensor-name": gguf([ARCH], [tinfo(b"w", [8], F32, 0), tinfo(b"w", [8], F32, 32)], floats * 2),
    "empty-tensor-name": gguf([ARCH], [tinfo(b"", [8], F32, 0)], floats),
    # Found by our fuzzer: header ends mid-alignment, a zero-size tensor, no padding in the file.
    "padding-past-eof": (gguf([ARCH], [tinfo(b"z", [0], F32, 0)], b"", align=1)),
    "truncated-in-tensor-info": gguf([ARCH], [ok_tensor[:-2]], b"", align=1),
}

for name, data in files.items():
    with open(f"{name}.gguf", "wb") as f:
        f.write(data)
print(f"wrote {len(files)} files")
