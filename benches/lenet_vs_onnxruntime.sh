#!/usr/bin/env bash
# Our integer-only INT8 engine vs onnxruntime running our own QDQ export of the same network,
# interleaved in one run on this machine (2 threads each), batch 1 and batch 256.
#
# usage: benches/lenet_vs_onnxruntime.sh [DIR] [MODEL] [ROUNDS]
#   DIR    work directory of `smelt lenet` (default lenet; needs quantize + export done)
#   MODEL  lenet | ccexam (default lenet)
#   ROUNDS interleaved rounds (default 3); ratios are per round, then the median
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-lenet}"; model="${2:-lenet}"; rounds="${3:-3}"
tag=$([ "$model" = ccexam ] && echo ccexam || echo lenet5)
smelt="$root/target/release/smelt"
py="${SMELT_TEST_PYTHON:-$root/.venv/bin/python}"
home="${SMELT_HOME:-$HOME/.cache/smelt}"
[ -x "$smelt" ] || (cd "$root" && cargo build --release -q -p smelt-cli)
qdq="$dir/$tag-int8-pc-qdq.onnx"; fp="$dir/$tag-fp32.onnx"
[ -f "$qdq" ] || { echo "missing $qdq: run smelt lenet quantize/export --dir $dir --model $model" >&2; exit 1; }
export RAYON_NUM_THREADS=2
out=$(mktemp -d)
for r in $(seq 1 "$rounds"); do
  "$smelt" -q lenet eval --dir "$dir" --model "$model" --only fp32,int8-pc > /dev/null
  cp "$dir/$tag-eval-only.json" "$out/smelt-$r.json"
  "$py" "$root/tests/oracle/onnx_cnn.py" "$home/assets/mnist" "$out/ort-$r.json" "$fp" "$qdq" --time 1
done
"$py" - "$out" "$rounds" "$fp" "$qdq" <<'PY'
import json, statistics, sys
out, rounds, fp, qdq = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = {"b1": [], "b256": [], "fb1": [], "fb256": []}
print("| round | smelt INT8 b=1 | ORT QDQ b=1 | ratio | smelt INT8 b=256 | ORT QDQ b=256 | ratio | smelt FP32 b=256 | ORT FP32 b=256 |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in range(1, rounds + 1):
    s = {x["variant"]: x for x in json.load(open(f"{out}/smelt-{r}.json"))}
    o = json.load(open(f"{out}/ort-{r}.json"))
    i8, f32, oq, of = s["int8-pc"], s["fp32"], o[qdq], o[fp]
    r1, r256 = i8["batch1_ips"] / oq["batch1_ips"], i8["batch256_ips"] / oq["batch256_ips"]
    rows["b1"].append(r1); rows["b256"].append(r256)
    print(f"| {r} | {i8['batch1_ips']:.0f} | {oq['batch1_ips']:.0f} | {r1:.2f}x | {i8['batch256_ips']:.0f} | {oq['batch256_ips']:.0f} | {r256:.2f}x | {f32['batch256_ips']:.0f} | {of['batch256_ips']:.0f} |")
print(f"median ratio smelt INT8 / onnxruntime QDQ (images/s): batch 1 {statistics.median(rows['b1']):.2f}x, batch 256 {statistics.median(rows['b256']):.2f}x")
PY
