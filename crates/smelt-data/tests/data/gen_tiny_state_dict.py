#!/usr/bin/env python3
"""Writes tiny_state_dict.pth, a test file in PyTorch's zip `torch.save` format, without torch.

Run from this directory: `python3 gen_tiny_state_dict.py`. The output is deterministic.

Stub modules named `torch` and `torch._utils` make Python's own pickler emit exactly the
opcodes `torch.save(model.state_dict(), f)` emits (protocol 2): an `OrderedDict` of
`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)` calls,
each storage a persistent id `('storage', torch.<Type>Storage, key, location, numel)`,
plus the `_metadata` attribute set with BUILD. Storage bytes go to `tiny/data/<key>`,
little-endian, as torch writes them.

Expected values (the Rust test `torch_state_dict::tests::golden_file` checks them):
  conv.weight  [2, 1, 2, 2]  storage 0, contiguous        -> [-1.0, -0.5, ..., 2.5]
  scalar       []            storage 0, offset 3          -> [0.5]
  fc.weight    [3, 2]        storage 1, stride (1, 3)     -> [1, 4, 2, 5, 3, 6]
  fc.bias      [3]           storage 2, offset 4          -> [14, 15, 16]
  view         [2, 2]        storage 2, offset 1, (3, 1)  -> [11, 12, 14, 15]
  half         [3]           HalfStorage 3                -> [1.0, -2.5, 65504.0]
  bf16         [3]           BFloat16Storage 4            -> [1.0, -0.5, 3.0]
  double       [2]           DoubleStorage 5              -> [0.25, -8.0]
  empty        [0, 3]        storage 6 (0 elements)       -> []
"""

import collections
import io
import pickle
import struct
import sys
import types
import zipfile

torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")
torch._utils = torch_utils
sys.modules["torch"] = torch
sys.modules["torch._utils"] = torch_utils


def _rebuild_tensor_v2(*args):
    raise NotImplementedError


_rebuild_tensor_v2.__module__ = "torch._utils"
torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2


def storage_class(name):
    cls = type(name, (), {"__module__": "torch"})
    setattr(torch, name, cls)
    return cls


FloatStorage = storage_class("FloatStorage")
HalfStorage = storage_class("HalfStorage")
BFloat16Storage = storage_class("BFloat16Storage")
DoubleStorage = storage_class("DoubleStorage")


class Storage:
    def __init__(self, key, cls, fmt, values):
        self.key, self.cls, self.values = key, cls, values
        if cls is BFloat16Storage:
            # bfloat16 is the upper half of a float32; these values are exact.
            self.raw = b"".join(struct.pack("<f", v)[2:] for v in values)
        else:
            self.raw = struct.pack("<%d%s" % (len(values), fmt), *values)


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce_ex__(self, proto):
        args = (self.storage, self.offset, tuple(self.size), tuple(self.stride), False,
                collections.OrderedDict())
        return (_rebuild_tensor_v2, args)


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.cls, obj.key, "cpu", len(obj.values))
        return None


s0 = Storage("0", FloatStorage, "f", [i * 0.5 - 1.0 for i in range(8)])
s1 = Storage("1", FloatStorage, "f", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
s2 = Storage("2", FloatStorage, "f", [10.0 + i for i in range(10)])
s3 = Storage("3", HalfStorage, "e", [1.0, -2.5, 65504.0])
s4 = Storage("4", BFloat16Storage, None, [1.0, -0.5, 3.0])
s5 = Storage("5", DoubleStorage, "d", [0.25, -8.0])
s6 = Storage("6", FloatStorage, "f", [])

sd = collections.OrderedDict()
sd["conv.weight"] = Tensor(s0, 0, [2, 1, 2, 2], [4, 4, 2, 1])
sd["scalar"] = Tensor(s0, 3, [], [])
sd["fc.weight"] = Tensor(s1, 0, [3, 2], [1, 3])
sd["fc.bias"] = Tensor(s2, 4, [3], [1])
sd["view"] = Tensor(s2, 1, [2, 2], [3, 1])
sd["half"] = Tensor(s3, 0, [3], [1])
sd["bf16"] = Tensor(s4, 0, [3], [1])
sd["double"] = Tensor(s5, 0, [2], [1])
sd["empty"] = Tensor(s6, 0, [0, 3], [3, 1])
sd._metadata = collections.OrderedDict([("", {"version": 1}), ("conv", {"version": 1})])

buf = io.BytesIO()
TorchPickler(buf, protocol=2).dump(sd)

with zipfile.ZipFile("tiny_state_dict.pth", "w", zipfile.ZIP_STORED) as z:
    def put(name, data):
        z.writestr(zipfile.ZipInfo("tiny/" + name, date_time=(1980, 1, 1, 0, 0, 0)), data)

    put("data.pkl", buf.getvalue())
    put("byteorder", b"little")
    for s in (s0, s1, s2, s3, s4, s5, s6):
        put("data/" + s.key, s.raw)
    put("version", b"3\n")
