#!/usr/bin/env bash
# GPU check and benchmark, for a machine with an NVIDIA GPU. Builds nothing there: it runs a
# smelt binary built elsewhere (`cargo build --release`, default features include `cuda`;
# cudarc loads libcuda and libnvrtc at run time) and PyTorch eager as the anchor.
#
#   benches/gpu.sh [path/to/smelt] [output-dir]
#
# The binary: `benches/gpu_prepare.sh` here builds it and strips it into target/gpu/smelt
# (about 20 MB; the unstripped release binary is over the 64 MiB a device call can carry), the
# default when that file exists. Relative paths are taken from the repository's root.
#
# Prints: the device, every kernel against its CPU reference, a table of kernel times
# (GB/s and % of the device-to-device copy bandwidth measured in the same run), pageable vs
# pinned vs pinned+streams transfers, then the PyTorch eager equivalents with ratios and the
# issue's goals (INT8 add >= 70 % of copy and >= 10x PyTorch; Q4_K GEMV 4096x14336 >= 60 %).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/gpu/smelt}
[ -e "$bin" ] || bin=target/release/smelt
out=${2:-${OUT:-/tmp/smelt-gpu}}
mkdir -p "$out"

# NVRTC: the CUDA toolkit's if the loader finds it, else a toolkit under /usr/local/cuda*, else
# the nvidia-cuda-nvrtc wheel that PyTorch installs (nvidia/cu13/lib in site-packages).
if ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc.so.13'; then
  lib=$(python3 - <<'PY' 2>/dev/null || true
import glob, site, sys
roots = site.getsitepackages() + [site.getusersitepackages()] + sys.path
dirs = ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"]
dirs += sorted(glob.glob("/usr/local/cuda-*/lib64"))
for r in roots:
    dirs += glob.glob(f"{r}/nvidia/cu13/lib") + glob.glob(f"{r}/nvidia/cuda_nvrtc/lib")
for d in dirs:
    if glob.glob(f"{d}/libnvrtc.so*"):
        print(d); raise SystemExit
PY
)
  if [ -n "$lib" ]; then
    export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "gpu.sh: NVRTC from $lib"
  fi
fi
export SMELT_HOME=${SMELT_HOME:-$out/home}

set -x
"$bin" gpu info
# A mismatch is reported but does not stop the timings (both are worth having from one lease).
"$bin" gpu check 2>&1 | tee "$out/gpu-check.txt" || echo "gpu.sh: CHECK FAILED (see gpu-check.txt)"
"$bin" gpu bench --json "$out/gpu-bench.json" 2>&1 | tee "$out/gpu-bench.txt"
set +x
if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  python3 benches/gpu_torch_anchor.py "$out/gpu-bench.json" 2>&1 | tee "$out/gpu-anchor.txt"
else
  echo "gpu.sh: no PyTorch with CUDA here; anchor skipped"
fi
