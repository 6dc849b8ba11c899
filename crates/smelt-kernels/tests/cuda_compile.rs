//! Every CUDA kernel file compiles with NVRTC to sm_90 PTX, with each entry point present and
//! no local-memory spills. NVRTC needs no GPU: CI installs it from PyPI
//! (`nvidia-cuda-nvrtc==13.0.*`) and sets `SMELT_REQUIRE_NVRTC=1`, so there the test cannot
//! skip; elsewhere it skips with a message when libnvrtc is not found.
#![cfg(feature = "cuda")]

use smelt_kernels::gpu::compile;

fn nvrtc_or_skip() -> bool {
    if compile::nvrtc_present() {
        return true;
    }
    assert!(
        std::env::var("SMELT_REQUIRE_NVRTC").ok().as_deref() != Some("1"),
        "SMELT_REQUIRE_NVRTC=1 but {}",
        compile::NO_NVRTC
    );
    eprintln!("skipped: {}", compile::NO_NVRTC);
    false
}

#[test]
fn every_kernel_compiles_to_ptx_without_local_memory() {
    if !nvrtc_or_skip() {
        return;
    }
    let (major, minor) = compile::nvrtc_version().unwrap();
    eprintln!("NVRTC {major}.{minor}");
    for src in compile::SOURCES {
        let ptx = compile::compile(&src, "compute_90").unwrap_or_else(|e| panic!("{e}"));
        for f in src.functions {
            assert!(
                ptx.contains(&format!(".entry {f}(")),
                "{}: no entry point {f} in the PTX",
                src.file
            );
        }
        assert!(
            !ptx.contains(".local"),
            "{}: the PTX uses local memory (a register spill or an indexed array)",
            src.file
        );
    }
}

#[test]
fn machine_code_has_no_spills_and_fits_the_launch_bounds() {
    if !nvrtc_or_skip() {
        return;
    }
    for src in compile::SOURCES {
        let report = compile::ptxas_report(&src, "sm_90").unwrap_or_else(|e| panic!("{e}"));
        let kernels = compile::ptxas_kernels(&report);
        assert_eq!(
            kernels.len(),
            src.functions.len(),
            "{}:\n{report}",
            src.file
        );
        for (name, regs, spills) in kernels {
            eprintln!("{name}: {regs} registers, {spills} spill bytes");
            assert_eq!(spills, 0, "{name} spills:\n{report}");
            // The one-warp-per-row GEMVs need 4 blocks of 256 threads per SM: ≤ 64 registers.
            if ["gemv_q4_k", "gemv_q8_0", "gemv_nf4"].contains(&name.as_str()) {
                assert!(regs <= 64, "{name} uses {regs} registers");
            }
        }
    }
}

#[test]
fn a_syntax_error_is_reported_with_the_log() {
    if !nvrtc_or_skip() {
        return;
    }
    let bad = compile::KernelSource {
        file: "bad.cu",
        text: "extern \"C\" __global__ void k(float* x) { x[0] = undefined_name; }",
        functions: &["k"],
    };
    let err = compile::compile(&bad, "compute_90")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad.cu") && err.contains("undefined_name"),
        "{err}"
    );
}

#[test]
fn the_ptx_cache_returns_what_was_compiled() {
    if !nvrtc_or_skip() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("smelt-ptx-cache-{}", std::process::id()));
    let first = compile::compile_cached(&compile::INT8_ADD, "compute_90", Some(&dir)).unwrap();
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(files.len(), 1, "one cached PTX file");
    let second = compile::compile_cached(&compile::INT8_ADD, "compute_90", Some(&dir)).unwrap();
    assert_eq!(first, second);
    std::fs::remove_dir_all(&dir).unwrap();
}
