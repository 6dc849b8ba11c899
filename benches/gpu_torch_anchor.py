"""PyTorch eager doing the same computations as smelt's CUDA kernels, timed the same way
(CUDA events around repeated calls after warm-up), next to smelt's numbers from
`smelt gpu bench --json FILE`. Usage: python3 benches/gpu_torch_anchor.py FILE.

Anchors where PyTorch has an equivalent: the INT8 add with scaling (dequantize, add,
requantize, saturate: several eager kernels), NF4 dequantize (table lookup times absmax),
a dense f16 GEMV of the same shape (what the quantized GEMV replaces), and the W8A8 INT8
GEMM (torch._int_mm plus the scale epilogue). Q4_K, Q8_0 and GPTQ have no eager equivalent.
"""
import json
import sys

import torch


def time_us(fn, reps=50):
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1e3 / reps


def main():
    rep = json.load(open(sys.argv[1]))
    copy = rep["copy_gbps"]
    rows = {(r["kernel"], r["size"]): r for r in rep["rows"]}
    dev = torch.device("cuda")
    print(f"PyTorch {torch.__version__} on {torch.cuda.get_device_name()}; smelt copy bandwidth {copy:.0f} GB/s")
    print(f"{'computation':<34} {'size':<16} {'smelt us':>10} {'torch us':>10} {'torch/smelt':>12}")
    goals = []

    add = [r for r in rep["rows"] if r["kernel"].startswith("int8_add")]
    n = int(add[0]["size"].split("=")[1])
    a = torch.randint(-128, 128, (n,), dtype=torch.int8, device=dev)
    b = torch.randint(-128, 128, (n,), dtype=torch.int8, device=dev)
    sa, sb, inv_so = 0.02, 0.03, 20.0
    t = time_us(lambda: torch.clamp(torch.round((a.float() * sa + b.float() * sb) * inv_so), -128, 127).to(torch.int8))
    for r in add:
        print(f"{'int8 add (' + r['kernel'] + ')':<34} {r['size']:<16} {r['micros']:>10.1f} {t:>10.1f} {t / r['micros']:>11.1f}x")
    best = min(add, key=lambda r: r["micros"])
    pct = 100 * best["bytes"] / best["micros"] / 1e3 / copy
    goals.append(f"INT8 add ({best['kernel']}): {pct:.0f} % of copy bandwidth (goal >= 70), {t / best['micros']:.1f}x PyTorch eager (goal >= 10)")

    r = rows.get(("dequant_nf4", "4096x14336"))
    if r:
        numel = 4096 * 14336
        codes = torch.randint(0, 256, (numel // 2,), dtype=torch.uint8, device=dev)
        absmax = torch.rand(numel // 64, device=dev)
        lut = torch.linspace(-1, 1, 16, device=dev)

        def nf4():
            idx = torch.stack([codes & 15, codes >> 4], dim=1).flatten().long()
            return (lut[idx].view(-1, 64) * absmax[:, None]).flatten()

        t = time_us(nf4)
        print(f"{'NF4 dequantize':<34} {r['size']:<16} {r['micros']:>10.1f} {t:>10.1f} {t / r['micros']:>11.1f}x")

    for rows_, k in [(4096, 14336), (14336, 4096)]:
        w = torch.randn(rows_, k, device=dev, dtype=torch.float16)
        x = torch.randn(k, device=dev, dtype=torch.float16)
        t = time_us(lambda: torch.mv(w, x))
        for kern in ["gemv_q4_k", "gemv_q8_0", "gemv_nf4", "gemv_gptq_int4"]:
            r = rows.get((kern, f"{rows_}x{k}"))
            if r:
                print(f"{kern + ' vs f16 torch.mv':<34} {r['size']:<16} {r['micros']:>10.1f} {t:>10.1f} {t / r['micros']:>11.1f}x")
        r = rows.get(("gemv_q4_k", f"{rows_}x{k}"))
        if r and rows_ == 4096:
            pct = 100 * r["bytes"] / r["micros"] / 1e3 / copy
            goals.append(f"Q4_K GEMV 4096x14336: {pct:.0f} % of copy bandwidth (goal >= 60)")

    r = rows.get(("gemm_int8_dp4a (w8a8)", "4096x4096x4096"))
    if r:
        m = nn = kk = 4096
        a8 = torch.randint(-128, 128, (m, kk), dtype=torch.int8, device=dev)
        b8 = torch.randint(-128, 128, (nn, kk), dtype=torch.int8, device=dev)
        s_a = torch.full((m, 1), 0.01, device=dev)
        s_b = torch.full((1, nn), 0.01, device=dev)
        t = time_us(lambda: torch._int_mm(a8, b8.t()).float() * s_a * s_b, reps=20)
        print(f"{'W8A8 GEMM (torch._int_mm)':<34} {r['size']:<16} {r['micros']:>10.1f} {t:>10.1f} {t / r['micros']:>11.1f}x")

    print()
    for g in goals:
        print("goal:", g)


if __name__ == "__main__":
    main()
