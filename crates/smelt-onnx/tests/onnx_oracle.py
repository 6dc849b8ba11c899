"""Oracle for crates/smelt-onnx/tests/onnx_oracle.rs: checks an ONNX file written by smelt with the
real tooling and runs it.

usage: onnx_oracle.py MODEL.onnx INPUT.json
INPUT.json: {"shape": [...], "data": [flat f32 values]}, fed to the model's only input.

Prints one JSON object: package versions, whether onnx.checker (full_check=True, i.e. with strict
shape inference) passed, whether the onnx package re-serializes the file byte for byte, the
input/output signature onnxruntime sees, and the outputs of onnxruntime's CPU provider with graph
optimizations disabled (each node run as written) and fully enabled (QDQ groups fused into
integer kernels), with the op types of the graph onnxruntime runs in the latter case.
"""

import json
import sys

import numpy as np
import onnx
import onnxruntime as ort

model_path, input_path = sys.argv[1], sys.argv[2]

onnx.checker.check_model(model_path, full_check=True)
with open(model_path, "rb") as f:
    raw = f.read()
model = onnx.load_from_string(raw)

with open(input_path) as f:
    inp = json.load(f)
x = np.asarray(inp["data"], dtype=np.float32).reshape(inp["shape"])

runs = {}
optimized_path = model_path + ".optimized.onnx"
levels = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
for label, level in levels.items():
    opts = ort.SessionOptions()
    opts.graph_optimization_level = level
    if label == "all":
        opts.optimized_model_filepath = optimized_path
    sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    outs = sess.run(None, {sess.get_inputs()[0].name: x})
    runs[label] = {
        o.name: {"shape": list(v.shape), "data": v.astype(np.float64).ravel().tolist()}
        for o, v in zip(sess.get_outputs(), outs)
    }

print(
    json.dumps(
        {
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "checker": "ok",
            "reserialized_identical": model.SerializeToString() == raw,
            "ir_version": model.ir_version,
            "opsets": {o.domain: o.version for o in model.opset_import},
            "inputs": [{"name": i.name, "shape": i.shape, "type": i.type} for i in sess.get_inputs()],
            "outputs": [{"name": o.name, "shape": o.shape, "type": o.type} for o in sess.get_outputs()],
            "runs": runs,
            "optimized_ops": [n.op_type for n in onnx.load(optimized_path).graph.node],
        }
    )
)
