"""Dump a GGUF file's header as JSON using gguf-py (llama.cpp's own Python package), so smelt's
reader can be checked against an outside implementation. Usage: gguf_dump.py FILE.gguf"""
import hashlib
import json
import sys

import gguf
from gguf import GGUFReader, GGUFValueType

def value(field):
    main = field.types[0]
    if main == GGUFValueType.ARRAY:
        items = field.contents()
        return {"array_of": field.types[1].name.lower() if len(field.types) > 1 else None,
                "len": len(items), "head": items[:3], "tail": items[-2:]}
    v = field.contents()
    return v

reader = GGUFReader(sys.argv[1])
out = {
    "gguf_py_version": getattr(gguf, "__version__", "?"),
    "metadata": [
        {"key": f.name, "type": f.types[0].name.lower(), "value": value(f)}
        for f in reader.fields.values()
        if not f.name.startswith("GGUF.")
    ],
    "tensors": [
        {"name": t.name, "dims": [int(d) for d in t.shape], "type": int(t.tensor_type),
         "data_offset": int(t.data_offset), "n_bytes": int(t.n_bytes),
         "sha256": hashlib.sha256(t.data.tobytes()).hexdigest()}
        for t in reader.tensors
    ],
    "quant_sizes": {int(k): [int(v[0]), int(v[1])] for k, v in gguf.GGML_QUANT_SIZES.items()},
}
json.dump(out, sys.stdout, default=float)
