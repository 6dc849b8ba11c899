"""Outside oracle for smelt's ONNX exports of MNIST CNNs (onnx + onnxruntime from PyPI).

usage: onnx_cnn.py MNIST_DIR OUT_JSON MODEL.onnx [MODEL.onnx ...] [--time ROUNDS]

Checks each model with onnx.checker (full_check, i.e. with shape inference), runs it in
onnxruntime (CPU, 2 intra-op threads) on the 10,000 MNIST test images from the IDX files in
MNIST_DIR, normalized exactly as smelt does in f32: (byte / 255 - 0.1307) / 0.3081, and writes
the argmax predictions per model to OUT_JSON. With --time, also measures images/s at batch 1
(500 images) and batch 256 (all 10,000), ROUNDS times, keeping the best of each.
"""
import json
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort


def read_idx_images(path):
    raw = open(path, "rb").read()
    if int.from_bytes(raw[:4], "big") != 0x803:
        raise SystemExit(f"{path}: not an IDX image file")
    n, h, w = (int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(3))
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, 1, h, w)


def main():
    args = sys.argv[1:]
    rounds = 0
    if "--time" in args:
        i = args.index("--time")
        rounds = int(args[i + 1])
        del args[i : i + 2]
    mnist_dir, out_json, models = args[0], args[1], args[2:]
    x = read_idx_images(f"{mnist_dir}/t10k-images-idx3-ubyte")
    xf = (x.astype(np.float32) / np.float32(255.0) - np.float32(0.1307)) / np.float32(0.3081)
    result = {}
    for path in models:
        m = onnx.load(path)
        onnx.checker.check_model(m, full_check=True)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        logits = np.concatenate([sess.run(None, {"input": xf[i : i + 256]})[0] for i in range(0, len(xf), 256)])
        entry = {
            "opset": [o.version for o in m.opset_import],
            "input_shape": [d.dim_param or d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim],
            "predictions": logits.argmax(axis=1).tolist(),
        }
        if rounds:
            b1, b256 = 0.0, 0.0
            for _ in range(rounds):
                t = time.perf_counter()
                for i in range(0, len(xf), 256):
                    sess.run(None, {"input": xf[i : i + 256]})
                b256 = max(b256, len(xf) / (time.perf_counter() - t))
                t = time.perf_counter()
                for i in range(500):
                    sess.run(None, {"input": xf[i : i + 1]})
                b1 = max(b1, 500 / (time.perf_counter() - t))
            entry["batch1_ips"], entry["batch256_ips"] = b1, b256
        result[path] = entry
    json.dump(result, open(out_json, "w"))


main()
