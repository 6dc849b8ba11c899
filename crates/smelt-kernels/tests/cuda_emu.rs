//! Every CUDA kernel file, run on the CPU emulator (`gpu::emu`), against its reference with the
//! same checks `smelt gpu check` runs on a device: fresh random inputs, outputs poisoned first.
//! The emulator needs a C++ compiler; `scripts/test` sets `SMELT_REQUIRE_CUDA_EMU=1` so CI
//! cannot skip, elsewhere the tests skip with a message when none is found.
#![cfg(feature = "cuda")]

use cudarc::driver::LaunchConfig;
use smelt_kernels::gpu::compile::{self, KernelSource};
use smelt_kernels::gpu::emu::{self, EmuArg, Emulator, arg_in, arg_out};
use smelt_kernels::gpu::{KernelBackend, check};

fn cxx_or_skip() -> bool {
    if emu::cxx_present() {
        return true;
    }
    assert!(
        std::env::var("SMELT_REQUIRE_CUDA_EMU").ok().as_deref() != Some("1"),
        "SMELT_REQUIRE_CUDA_EMU=1 but no C++ compiler ({}) runs",
        emu::cxx()
    );
    eprintln!(
        "skipped: no C++ compiler ({}) for the CUDA emulator",
        emu::cxx()
    );
    false
}

#[test]
fn every_kernel_matches_its_reference_on_the_emulator() {
    if !cxx_or_skip() {
        return;
    }
    let emulator = Emulator::open(None).unwrap_or_else(|e| panic!("{e}"));
    let seed = smelt_quant::rng::test_seed();
    let rows = check::run_all(&emulator, seed).unwrap_or_else(|e| panic!("{e}"));
    let (table, ok) = check::format_rows(&rows);
    eprintln!("{table}");
    assert!(
        ok,
        "a kernel differs from its reference (seed {seed}):\n{table}"
    );
    // Every kernel of every file was exercised.
    for src in compile::SOURCES {
        for f in src.functions {
            assert!(
                rows.iter().any(|r| r.kernel == *f),
                "{f} was not checked:\n{table}"
            );
        }
    }
}

#[test]
fn bad_shapes_are_errors_on_the_emulator_too() {
    if !cxx_or_skip() {
        return;
    }
    let emulator = Emulator::open(None).unwrap_or_else(|e| panic!("{e}"));
    check::bad_shapes_are_rejected(&emulator).unwrap_or_else(|e| panic!("{e}"));
}

/// `source` with `from` replaced by `to` (which must occur exactly once).
fn altered(source: KernelSource, from: &str, to: &str) -> KernelSource {
    assert_eq!(
        source.text.matches(from).count(),
        1,
        "{from:?} in {}",
        source.file
    );
    KernelSource {
        text: Box::leak(source.text.replace(from, to).into_boxed_str()),
        ..source
    }
}

#[test]
fn checks_on_the_emulator_catch_broken_kernels() {
    if !cxx_or_skip() {
        return;
    }
    // Each bug must show as a mismatch (or an error) in the same checks the device runs.
    let bugs = [
        // The last value of a grid-stride loop is never written.
        (
            altered(
                compile::DEQUANT,
                "out[i] = __fmul_rn(d, (float)(i8)blk[2 + i % 32]);",
                "if (i + 1 < n) out[i] = __fmul_rn(d, (float)(i8)blk[2 + i % 32]);",
            ),
            "dequant_q8_0",
        ),
        // The staged x tile is read before every thread has written it.
        (
            altered(
                compile::GEMV,
                "        *(float4*)&xs[i] = *(const float4*)&x[k0 + i];\n    __syncthreads();",
                "        *(float4*)&xs[i] = *(const float4*)&x[k0 + i];",
            ),
            "gemv_q4_k",
        ),
        // Lanes read the staged weight blocks before the whole warp has copied them.
        (
            altered(
                compile::GEMV,
                "((uint4*)st)[i] = src[i];\n            __syncwarp();",
                "((uint4*)st)[i] = src[i];",
            ),
            "gemv_q8_0",
        ),
        // The 16-wide add's tail skips its first value.
        (
            altered(compile::INT8_ADD, "n16 * 16 + tid;", "n16 * 16 + tid + 1;"),
            "int8_add_vec16",
        ),
        // Saturation at -127 instead of -128.
        (
            altered(
                compile::INT8_ADD,
                "max(-128, min(127, q))",
                "max(-127, min(127, q))",
            ),
            "int8_add_scalar",
        ),
        // The GEMM's K loop stops one 64-wide slice early.
        (
            altered(
                compile::GEMM_INT8,
                "k0 < k_dim; k0 += 4 * GB_KW",
                "k0 + 4 * GB_KW < k_dim; k0 += 4 * GB_KW",
            ),
            "gemm_int8_dp4a",
        ),
    ];
    let seed = smelt_quant::rng::test_seed();
    for (bad, kernel) in bugs {
        let sources: Vec<KernelSource> = compile::SOURCES
            .iter()
            .map(|s| if s.file == bad.file { bad } else { *s })
            .collect();
        let emulator = Emulator::with_sources(&sources, None).unwrap_or_else(|e| panic!("{e}"));
        match check::run_all(&emulator, seed) {
            Err(e) => eprintln!("{kernel}: error {e}"),
            Ok(rows) => {
                let (table, _) = check::format_rows(&rows);
                for r in rows.iter().filter(|r| !r.ok()) {
                    eprintln!(
                        "broken {kernel}: {} {} error {:.3e}",
                        r.kernel, r.size, r.error
                    );
                }
                assert!(
                    rows.iter().any(|r| r.kernel == kernel && !r.ok()),
                    "the broken {kernel} passed (seed {seed}):\n{table}"
                );
            }
        }
    }
}

const PROBES: KernelSource = KernelSource {
    file: "probes.cu",
    text: r#"
extern "C" __global__ void write_past_end(float* out, u32 n) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) out[i] = 1.0f;
}
extern "C" __global__ void shuffle_after_exit(float* out) {
    if (threadIdx.x % 32 >= 16) return;
    float v = warp_sum(1.0f);
    out[threadIdx.x] = v;
}
extern "C" __global__ void block_and_warp_sum(float* out) {
    __shared__ float part[8];
    float v = warp_sum((float)threadIdx.x);
    if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        float s = 0.f;
        for (u32 w = 0; w < blockDim.x / 32; w++) s += part[w];
        out[blockIdx.x] = s + (float)(blockIdx.y * 1000);
    }
}
"#,
    functions: &["write_past_end", "shuffle_after_exit", "block_and_warp_sum"],
};

fn cfg(grid: (u32, u32, u32), threads: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: grid,
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

#[test]
fn the_emulator_models_barriers_and_reports_faults() {
    if !cxx_or_skip() {
        return;
    }
    let emulator = Emulator::with_sources(&[PROBES], None).unwrap_or_else(|e| panic!("{e}"));
    // Barriers and shuffles: block sums of thread indices, 256 threads, grid (3, 2).
    let mut out = emulator.upload(&[f32::NAN; 3]).unwrap();
    emulator
        .launch(
            "block_and_warp_sum",
            cfg((3, 2, 1), 256),
            &[arg_out(&mut out)],
        )
        .unwrap();
    // Block y = 1 ran after y = 0 and overwrote out[x]: 255·256/2 + 1000.
    assert_eq!(emulator.download(&out).unwrap(), vec![33640.0; 3]);

    // A write one past the end lands in the guard bytes.
    let mut out = emulator.upload(&[0f32; 100]).unwrap();
    let err = emulator
        .launch(
            "write_past_end",
            cfg((1, 1, 1), 128),
            &[arg_out(&mut out), EmuArg::U32(100)],
        )
        .unwrap_err();
    assert!(err.to_string().contains("wrote past the end"), "{err}");

    // A warp shuffle after half the warp exited can never complete.
    let mut out = emulator.upload(&[0f32; 32]).unwrap();
    let err = emulator
        .launch(
            "shuffle_after_exit",
            cfg((1, 1, 1), 32),
            &[arg_out(&mut out)],
        )
        .unwrap_err();
    assert!(err.to_string().contains("can never complete"), "{err}");

    // Unknown kernels and bad launches are errors.
    let input = emulator.upload(&[0f32; 4]).unwrap();
    assert!(
        emulator
            .launch("no_such_kernel", cfg((1, 1, 1), 32), &[arg_in(&input)])
            .is_err()
    );
    assert!(
        emulator
            .launch(
                "block_and_warp_sum",
                cfg((1, 1, 1), 2048),
                &[arg_out(&mut out)]
            )
            .is_err()
    );
}
