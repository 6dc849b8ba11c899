#!/usr/bin/env bash
# smelt's AWQ next to AutoAWQ (PyPI autoawq 0.2.9, the reference implementation the AWQ authors'
# recipe lives on in) on the same F32 base, the same calibration windows and the same held-out
# evaluation: what share of RTN's perplexity gap each closes.
#
#   1. `smelt llm compare --methods rtn,awq` on the grid, writing its calibration windows and
#      held-out tokens (--calib-out) — base, RTN and smelt's AWQ rows;
#   2. benches/autoawq_oracle.py runs AutoAWQ on those windows (scales and clipping only,
#      export_compatible; one CPU-only aliasing bug in its scale search patched, see the script)
#      and writes the scaled, clipped model as an F32 GGUF;
#   3. `smelt llm compare --methods rtn` on that GGUF: its RTN row is AutoAWQ's result rounded on
#      smelt's grid and scored on the same windows; its base row is AutoAWQ's scaled and clipped
#      model before rounding (scaling leaves the float model unchanged, clipping does not).
#
# AutoAWQ needs the group to divide every matrix's input width (576 and 1536 for SmolLM2-135M):
# group 64 or 32, not 128. AutoAWQ runs on PyTorch on the CPU: the whole script took about 40
# minutes for 32x512 on two cores (2026-11-28). The Python packages go to a venv under the smelt
# cache, outside the repository.
#
# Usage: benches/awq_vs_autoawq.sh [BITS:GROUP] [CALIB] [SEED] [EVAL_CHUNKS] [CALIB_INPUTS]
#   e.g. benches/awq_vs_autoawq.sh 4:64 128x512 0 200 float
set -euo pipefail
cd "$(dirname "$0")/.."
grid=${1:-4:64}
calib=${2:-128x512}
seed=${3:-0}
chunks=${4:-200}
inputs=${5:-float}
bits=${grid%%:*}
group=${grid##*:}
smelt=${SMELT:-target/release/smelt}
[ -x "$smelt" ] || cargo build --release -q -p smelt-cli
home=${SMELT_HOME:-$HOME/.cache/smelt}
venv=$home/anchors/autoawq-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import awq, gguf" 2>/dev/null; then
  echo "installing autoawq 0.2.9 (+ torch, transformers 4.51.3, gguf) into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "autoawq==0.2.9" "transformers==4.51.3" "datasets<3.6" "gguf==0.19.0"
fi
"$smelt" -q fetch smollm2-135m >/dev/null
gguf=$(ls "$home"/assets/smollm2-135m/*.gguf | head -1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== smelt: base, RTN, AWQ ($grid, calib $calib seed $seed, --calib-inputs $inputs, $chunks held-out windows)"
"$smelt" -q llm compare --model "$gguf" --methods rtn,awq --grids "$grid" --calib "$calib" \
  --seed "$seed" --eval-chunks "$chunks" --calib-inputs "$inputs" \
  --calib-out "$work/calib.json" --out "$work/smelt" | grep '^|'
echo "== AutoAWQ on the same windows"
if ! "$venv/bin/python" benches/autoawq_oracle.py "$gguf" "$work/calib.json" "$work/autoawq.gguf" \
  --bits "$bits" --group "$group" > "$work/oracle.log" 2>&1; then
  echo "AutoAWQ failed; the end of its log:" >&2
  tail -n 30 "$work/oracle.log" >&2
  exit 1
fi
grep -E "conversion check|after AutoAWQ|wrote" "$work/oracle.log"
"$smelt" -q llm compare --model "$work/autoawq.gguf" --methods rtn --grids "$grid" \
  --calib "$calib" --seed "$seed" --eval-chunks "$chunks" --out "$work/autoawq" | grep '^|'
python3 - "$work/smelt/compare.json" "$work/autoawq/compare.json" <<'EOF'
import json, sys
ours = json.load(open(sys.argv[1]))
theirs = json.load(open(sys.argv[2]))
base, rtn = ours[0]["ppl"], ours[1]["ppl"]
gap = rtn - base
print(f"base {base:.3f} (AutoAWQ's scaled, clipped model before rounding: {theirs[0]['ppl']:.3f}), RTN {rtn:.3f}")
for name, ppl in (("smelt AWQ", ours[2]["ppl"]), ("AutoAWQ", theirs[1]["ppl"])):
    print(f"{name:10} {ppl:.3f}: closes {100 * (rtn - ppl) / gap:.0f} % of RTN's gap")
EOF
