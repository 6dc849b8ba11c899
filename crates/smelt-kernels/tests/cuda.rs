//! GPU kernels against their CPU references on fresh random inputs (outputs poisoned first).
//! Without a GPU, driver or NVRTC the kernel checks are skipped with the reason; opening must
//! then fail with a one-line error, never a panic.
#![cfg(feature = "cuda")]

use smelt_kernels::gpu::{self, AddVariant, check};

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
    let a = gpu.upload(&[1i8; 10]).unwrap();
    let b = gpu.upload(&[1i8; 11]).unwrap();
    let mut out = gpu.upload(&[0i8; 10]).unwrap();
    assert!(
        gpu.int8_add(AddVariant::Vec4, &a, &b, &mut out, 1.0, 1.0, 1.0)
            .is_err()
    );
    let w = gpu.upload(&[0u8; 144]).unwrap();
    let x = gpu.upload(&[0f32; 100]).unwrap();
    let mut y = gpu.upload(&[0f32; 1]).unwrap();
    assert!(
        gpu.gemv_ggml(true, &w, &x, &mut y).is_err(),
        "K not a multiple of 256"
    );
    let c = gpu.upload(&[0i8; 12]).unwrap();
    assert!(
        gpu.gemm_int8(&c, &c, (1, 1, 12), None, None).is_err(),
        "K not a multiple of 16"
    );
}
