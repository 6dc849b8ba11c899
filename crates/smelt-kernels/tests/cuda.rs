//! GPU kernels against their CPU references on fresh random inputs (outputs poisoned first).
//! Without a GPU, driver or NVRTC the kernel checks are skipped with the reason; opening must
//! then fail with a one-line error, never a panic.
#![cfg(feature = "cuda")]

use smelt_kernels::gpu::{self, check};

fn gpu_or_skip() -> Option<gpu::Gpu> {
    match gpu::open(0, None) {
        Ok(g) => {
            eprintln!("GPU: {}", g.describe());
            Some(g)
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                !msg.is_empty() && !msg.contains('\n'),
                "one-line reason: {msg:?}"
            );
            eprintln!("skipped: {msg}");
            None
        }
    }
}

#[test]
fn every_kernel_matches_its_reference() {
    let Some(gpu) = gpu_or_skip() else { return };
    let seed = smelt_quant::rng::test_seed();
    let rows = check::run_all(&gpu, seed).unwrap();
    let (table, ok) = check::format_rows(&rows);
    eprintln!("{table}");
    assert!(
        ok,
        "a kernel differs from its reference (seed {seed}):\n{table}"
    );
}

#[test]
fn bad_shapes_are_errors_not_faults() {
    let Some(gpu) = gpu_or_skip() else { return };
    check::bad_shapes_are_rejected(&gpu).unwrap_or_else(|e| panic!("{e}"));
}
