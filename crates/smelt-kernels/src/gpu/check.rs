//! Every kernel against its CPU reference on fresh random inputs, with outputs poisoned before
//! each launch so an element the kernel never writes cannot pass. Used by `tests/cuda.rs` and
//! `smelt gpu check`.

use smelt_gguf::GgmlType;
use smelt_quant::rng::Rng;

use super::backend::KernelBackend;
use super::reference::{self as r, normalised_error};
use super::{AddVariant, GpuError};

/// Tolerance for GEMV results (normalised error vs an f64 sum of the same weights).
pub const GEMV_TOLERANCE: f64 = 5e-5;

/// One comparison.
#[derive(Debug, Clone)]
pub struct CheckRow {
    /// Kernel name.
    pub kernel: String,
    /// Problem size, human-readable.
    pub size: String,
    /// Mismatching elements (exact kernels) or normalised error (reductions).
    pub error: f64,
    /// Largest error allowed.
    pub tolerance: f64,
}

impl CheckRow {
    /// Whether the kernel matched its reference.
    pub fn ok(&self) -> bool {
        self.error <= self.tolerance
    }
}

fn exact_row(kernel: &str, size: String, mismatches: usize) -> CheckRow {
    CheckRow {
        kernel: kernel.to_string(),
        size,
        error: mismatches as f64,
        tolerance: 0.0,
    }
}

fn gemv_row(kernel: &str, size: String, got: &[f32], want: &[f64]) -> CheckRow {
    CheckRow {
        kernel: kernel.to_string(),
        size,
        error: normalised_error(got, want),
        tolerance: GEMV_TOLERANCE,
    }
}

fn count_bits_differ(got: &[f32], want: &[f32]) -> usize {
    got.iter()
        .zip(want)
        .filter(|(g, w)| g.to_bits() != w.to_bits())
        .count()
        + got.len().abs_diff(want.len())
}

pub(super) fn random_i8(rng: &mut Rng, n: usize) -> Vec<i8> {
    (0..n).map(|_| rng.next_u64() as i8).collect()
}

/// f32 values that are all NaN: what float outputs hold before a launch.
fn poisoned_f32<B: KernelBackend>(gpu: &B, n: usize) -> Result<B::Buf<f32>, GpuError> {
    gpu.upload(&vec![f32::NAN; n])
}

/// Runs every check on a GPU or the CPU emulator; `Err` only when the backend itself fails.
pub fn run_all<B: KernelBackend>(gpu: &B, seed: u64) -> Result<Vec<CheckRow>, GpuError> {
    let mut rng = Rng::new(seed);
    let mut rows = Vec::new();
    for n in [1usize, 15, 1_000_003] {
        rows.extend(check_int8_add(gpu, &mut rng, n)?);
    }
    rows.push(check_dequant_ggml(
        gpu,
        &mut rng,
        GgmlType::Q8_0,
        32 * 1001,
    )?);
    rows.push(check_dequant_ggml(
        gpu,
        &mut rng,
        GgmlType::Q4_K,
        256 * 333,
    )?);
    rows.push(check_dequant_nf4(gpu, &mut rng, 64 * 1001 + 7, 64)?);
    rows.push(check_dequant_gptq(gpu, &mut rng, 512, 264, false)?);
    rows.push(check_dequant_gptq(gpu, &mut rng, 512, 264, true)?);
    for (rows_, k) in [(37, 4096 + 3 * 256), (8, 256)] {
        rows.push(check_gemv_ggml(gpu, &mut rng, GgmlType::Q4_K, rows_, k)?);
        rows.push(check_gemv_ggml(gpu, &mut rng, GgmlType::Q8_0, rows_, k)?);
    }
    rows.push(check_gemv_nf4(gpu, &mut rng, 37, 4096 + 64)?);
    rows.push(check_gemv_gptq(gpu, &mut rng, 640, 520, false)?);
    rows.push(check_gemv_gptq(gpu, &mut rng, 640, 520, true)?);
    rows.push(check_gemm(gpu, &mut rng, 37, 70, 80)?);
    rows.push(check_gemm(gpu, &mut rng, 128, 256, 4096)?);
    // Two blocks only: every thread of the grid-stride kernels takes many steps.
    gpu.set_max_blocks(Some(2));
    let strided = (|| -> Result<Vec<CheckRow>, GpuError> {
        let mut rows = check_int8_add(gpu, &mut rng, 100_003)?;
        rows.push(check_dequant_ggml(gpu, &mut rng, GgmlType::Q4_K, 256 * 41)?);
        rows.push(check_dequant_nf4(gpu, &mut rng, 64 * 41 + 3, 64)?);
        rows.push(check_dequant_gptq(gpu, &mut rng, 256, 88, true)?);
        Ok(rows)
    })();
    gpu.set_max_blocks(None);
    for mut row in strided? {
        row.size += " grid=2";
        rows.push(row);
    }
    Ok(rows)
}

/// The three INT8-add variants on `n` values with random scales.
pub fn check_int8_add<B: KernelBackend>(
    gpu: &B,
    rng: &mut Rng,
    n: usize,
) -> Result<Vec<CheckRow>, GpuError> {
    let (a, b) = (random_i8(rng, n), random_i8(rng, n));
    let sa = (0.01 + 0.05 * rng.uniform()) as f32;
    let sb = (0.01 + 0.05 * rng.uniform()) as f32;
    let inv_so = 1.0 / (0.02 + 0.05 * rng.uniform()) as f32;
    let want = r::int8_add(&a, &b, sa, sb, inv_so);
    let (da, db) = (gpu.upload(&a)?, gpu.upload(&b)?);
    let poison: Vec<i8> = want.iter().map(|v| !v).collect();
    let mut rows = Vec::new();
    for v in AddVariant::ALL {
        let mut out = gpu.upload(&poison)?;
        gpu.int8_add(v, &da, &db, &mut out, sa, sb, inv_so)?;
        let got = gpu.download(&out)?;
        let bad = got.iter().zip(&want).filter(|(g, w)| g != w).count();
        rows.push(exact_row(v.kernel(), format!("n={n}"), bad));
    }
    Ok(rows)
}

fn random_weights(rng: &mut Rng, n: usize) -> Vec<f32> {
    rng.normals(n).into_iter().map(|v| 0.02 * v).collect()
}

/// Q8_0 or Q4_K dequantize on `n` values quantized by smelt-gguf.
pub fn check_dequant_ggml<B: KernelBackend>(
    gpu: &B,
    rng: &mut Rng,
    ty: GgmlType,
    n: usize,
) -> Result<CheckRow, GpuError> {
    let bytes = smelt_gguf::blocks::quantize(ty, &random_weights(rng, n))
        .map_err(|e| GpuError::new(e.to_string()))?;
    let want = r::dequant_ggml(ty, &bytes, n).map_err(GpuError::new)?;
    let src = gpu.upload(&bytes)?;
    let mut out = poisoned_f32(gpu, n)?;
    let q4k = ty == GgmlType::Q4_K;
    gpu.dequant_ggml(q4k, &src, &mut out)?;
    let got = gpu.download(&out)?;
    let name = if q4k { "dequant_q4_k" } else { "dequant_q8_0" };
    Ok(exact_row(
        name,
        format!("n={n}"),
        count_bits_differ(&got, &want),
    ))
}

/// NF4 dequantize on `n` values in blocks of `block`.
pub fn check_dequant_nf4<B: KernelBackend>(
    gpu: &B,
    rng: &mut Rng,
    n: usize,
    block: usize,
) -> Result<CheckRow, GpuError> {
    let q = smelt_quant::nf4::quantize(&random_weights(rng, n), block);
    let want = r::dequant_nf4(&q);
    let (packed, absmax) = (gpu.upload(&q.packed)?, gpu.upload(&q.absmax)?);
    let mut out = poisoned_f32(gpu, n)?;
    gpu.dequant_nf4(&packed, &absmax, block, &mut out)?;
    let got = gpu.download(&out)?;
    Ok(exact_row(
        "dequant_nf4",
        format!("n={n} block={block}"),
        count_bits_differ(&got, &want),
    ))
}

/// GPTQ int4 dequantize, group 128, with or without act-order.
pub fn check_dequant_gptq<B: KernelBackend>(
    gpu: &B,
    rng: &mut Rng,
    k: usize,
    n: usize,
    act_order: bool,
) -> Result<CheckRow, GpuError> {
    let q = r::random_gptq_int4(rng, k, n, 128, act_order);
    let want = r::dequant_gptq_int4(&q);
    let dq = gpu.upload_gptq(&q)?;
    let mut out = poisoned_f32(gpu, k * n)?;
    gpu.dequant_gptq(&dq, &mut out)?;
    let got = gpu.download(&out)?;
    Ok(exact_row(
        "dequant_gptq_int4",
        format!("{k}x{n} g128{}", if act_order { " act-order" } else { "" }),
        count_bits_differ(&got, &want),
    ))
}

/// Q4_K or Q8_0 GEMV on a `rows × k` matrix.
pub fn check_gemv_ggml<B: KernelBackend>(
    gpu: &B,
    rng: &mut Rng,
    ty: GgmlType,
    rows: usize,
    k: usize,
) -> Result<CheckRow, GpuError> {
    let bytes = smelt_gguf::blocks::quantize(ty, &random_weights(rng, rows * k))
        .map_err(|e| GpuError::new(e.to_string()))?;
    let w = r::dequant_ggml(ty, &bytes, rows * k).map_err(GpuError::new)?;
    let x = rng.normals(k);
    let want = r::gemv_f64(&w, &x, rows);
    let (dw, dx) = (gpu.upload(&bytes)?, gpu.upload(&x)?);
    let mut y = poisoned_f32(gpu, rows)?;
    let q4k = ty == GgmlType::Q4_K;
    gpu.gemv_ggml(q4k, &dw, &dx, &mut y)?;
    let got = gpu.download(&y)?;
    let name = if q4k { "gemv_q4_k" } else { "gemv_q8_0" };
    Ok(gemv_row(name, format!("{rows}x{k}"), &got, &want))
}

/// NF4 GEMV (block 64) on a `rows × k` matrix.
pub fn check_gemv_nf4<B: KernelBackend>(
    gpu: &B,
    rng: &mut Rng,
    rows: usize,
    k: usize,
) -> Result<CheckRow, GpuError> {
    let q = smelt_quant::nf4::quantize(&random_weights(rng, rows * k), 64);
    let w = r::dequant_nf4(&q);
    let x = rng.normals(k);
    let want = r::gemv_f64(&w, &x, rows);
    let (packed, absmax, dx) = (
        gpu.upload(&q.packed)?,
        gpu.upload(&q.absmax)?,
        gpu.upload(&x)?,
    );
    let mut y = poisoned_f32(gpu, rows)?;
    gpu.gemv_nf4(&packed, &absmax, &dx, &mut y)?;
    let got = gpu.download(&y)?;
    Ok(gemv_row("gemv_nf4", format!("{rows}x{k}"), &got, &want))
}

/// GPTQ int4 GEMV, group 128.
pub fn check_gemv_gptq<B: KernelBackend>(
    gpu: &B,
    rng: &mut Rng,
    k: usize,
    n: usize,
    act_order: bool,
) -> Result<CheckRow, GpuError> {
    let q = r::random_gptq_int4(rng, k, n, 128, act_order);
    let w = r::dequant_gptq_int4(&q);
    let x = rng.normals(k);
    let want = r::gemv_kn_f64(&w, &x, n);
    let (dq, dx) = (gpu.upload_gptq(&q)?, gpu.upload(&x)?);
    let mut y = poisoned_f32(gpu, n)?;
    gpu.gemv_gptq(&dq, &dx, &mut y)?;
    let got = gpu.download(&y)?;
    let size = format!("{k}x{n} g128{}", if act_order { " act-order" } else { "" });
    Ok(gemv_row("gemv_gptq_int4", size, &got, &want))
}

/// INT8 GEMM: int32 output exact, and the W8A8 float epilogue exact.
pub fn check_gemm<B: KernelBackend>(
    gpu: &B,
    rng: &mut Rng,
    m: usize,
    n: usize,
    k: usize,
) -> Result<CheckRow, GpuError> {
    let (a, b) = (random_i8(rng, m * k), random_i8(rng, n * k));
    let sa: Vec<f32> = (0..m)
        .map(|_| (0.001 + 0.01 * rng.uniform()) as f32)
        .collect();
    let sb: Vec<f32> = (0..n)
        .map(|_| (0.001 + 0.01 * rng.uniform()) as f32)
        .collect();
    let want = r::gemm_int8(&a, &b, m, n, k);
    let want_d = r::w8a8_scale(&want, &sa, &sb);
    let (da, db) = (gpu.upload(&a)?, gpu.upload(&b)?);
    let (dsa, dsb) = (gpu.upload(&sa)?, gpu.upload(&sb)?);
    let poison: Vec<i32> = want.iter().map(|v| !v).collect();
    let mut c = gpu.upload(&poison)?;
    let mut d = poisoned_f32(gpu, m * n)?;
    gpu.gemm_int8(
        &da,
        &db,
        (m, n, k),
        Some(&mut c),
        Some((&dsa, &dsb, &mut d)),
    )?;
    let got = gpu.download(&c)?;
    let got_d = gpu.download(&d)?;
    let bad =
        got.iter().zip(&want).filter(|(g, w)| g != w).count() + count_bits_differ(&got_d, &want_d);
    Ok(exact_row("gemm_int8_dp4a", format!("{m}x{n}x{k}"), bad))
}

/// Launches with inconsistent lengths or unsupported shapes must be errors before anything
/// runs; `Err` names the first one that was accepted.
pub fn bad_shapes_are_rejected<B: KernelBackend>(gpu: &B) -> Result<(), GpuError> {
    let accepted = |what: &str| Err(GpuError::new(format!("accepted {what}")));
    let a = gpu.upload(&[1i8; 10])?;
    let b = gpu.upload(&[1i8; 11])?;
    let mut out = gpu.upload(&[0i8; 10])?;
    if gpu
        .int8_add(AddVariant::Vec4, &a, &b, &mut out, 1.0, 1.0, 1.0)
        .is_ok()
    {
        return accepted("int8_add with inputs of different lengths");
    }
    let w = gpu.upload(&[0u8; 144])?;
    let x = gpu.upload(&[0f32; 100])?;
    let mut y = gpu.upload(&[0f32; 1])?;
    if gpu.gemv_ggml(true, &w, &x, &mut y).is_ok() {
        return accepted("gemv_q4_k with K not a multiple of 256");
    }
    let q8 = gpu.upload(&[0u8; 34 * 8 - 1])?;
    let x = gpu.upload(&[0f32; 256])?;
    if gpu.gemv_ggml(false, &q8, &x, &mut y).is_ok() {
        return accepted("gemv_q8_0 with a short weight buffer");
    }
    let mut deq = gpu.upload(&[0f32; 33])?;
    if gpu.dequant_ggml(false, &q8, &mut deq).is_ok() {
        return accepted("dequant_q8_0 of 33 values");
    }
    let c = gpu.upload(&[0i8; 12])?;
    if gpu.gemm_int8(&c, &c, (1, 1, 12), None, None).is_ok() {
        return accepted("gemm_int8 with K not a multiple of 16");
    }
    Ok(())
}

/// A table of the rows, one per line, and whether all passed.
pub fn format_rows(rows: &[CheckRow]) -> (String, bool) {
    let mut s = format!(
        "{:<20} {:<24} {:>12} {:>10}  result\n",
        "kernel", "size", "error", "tolerance"
    );
    for row in rows {
        s += &format!(
            "{:<20} {:<24} {:>12.3e} {:>10.0e}  {}\n",
            row.kernel,
            row.size,
            row.error,
            row.tolerance,
            if row.ok() { "ok" } else { "MISMATCH" }
        );
    }
    (s, rows.iter().all(CheckRow::ok))
}
