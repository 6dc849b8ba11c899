//! GPU timings for every kernel, as `smelt gpu bench` prints them: time per call from CUDA
//! events around repeated launches, bytes moved per call, and that rate as a share of the
//! device-to-device copy bandwidth measured in the same run; plus host↔device transfers
//! with pageable memory, pinned memory, and pinned memory split over streams so copies overlap
//! each other and the kernel (each the median of 3 runs after a warm-up). GEMV and dequantize
//! timings rotate through copies of their weights that together exceed 4× the L2 cache, so
//! the rates are those of reading device memory, like the copy they are compared with.

use std::time::Instant;

use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, sys::CUevent_flags};
use half::f16;
use smelt_quant::rng::Rng;

use super::check::random_i8;
use super::reference as r;
use super::{AddVariant, GptqDevice, Gpu, GpuError, nvtx_range};

/// One timed kernel.
#[derive(Debug, Clone)]
pub struct BenchRow {
    /// Kernel name.
    pub kernel: String,
    /// Problem size.
    pub size: String,
    /// Microseconds per call (mean over the timed repetitions).
    pub micros: f64,
    /// Bytes read and written per call.
    pub bytes: f64,
    /// Integer or float operations per call (0 where the kernel is a pure stream).
    pub ops: f64,
}

impl BenchRow {
    fn new(
        kernel: impl Into<String>,
        size: impl Into<String>,
        ms: f64,
        bytes: f64,
        ops: f64,
    ) -> Self {
        Self {
            kernel: kernel.into(),
            size: size.into(),
            micros: ms * 1e3,
            bytes,
            ops,
        }
    }

    /// Achieved bandwidth in GB/s.
    pub fn gbps(&self) -> f64 {
        self.bytes / self.micros / 1e3
    }
}

/// Host↔device transfer timings of one INT8 add over `bytes` per input.
#[derive(Debug, Clone)]
pub struct TransferReport {
    /// Bytes per input tensor.
    pub bytes: usize,
    /// Pageable host memory, one stream, copy in → kernel → copy out (ms).
    pub pageable_ms: f64,
    /// Pinned host memory, same sequence (ms).
    pub pinned_ms: f64,
    /// Pinned host memory in `chunks` pieces over `streams` streams (ms).
    pub overlapped_ms: f64,
    /// Pieces of the overlapped run.
    pub chunks: usize,
    /// Streams of the overlapped run.
    pub streams: usize,
    /// Whether all three produced the reference's output.
    pub outputs_match: bool,
}

/// Everything `smelt gpu bench` measures.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// The device, in one line.
    pub device: String,
    /// Device-to-device copy bandwidth (bytes read + written per second / 1e9).
    pub copy_gbps: f64,
    /// One row per kernel and size.
    pub rows: Vec<BenchRow>,
    /// Pinned memory and streams.
    pub transfer: TransferReport,
}

/// Mean milliseconds per call of `f` over `reps` calls after 3 warm-up calls, by CUDA events.
/// `f` gets the call's number, so it can rotate through copies of its inputs.
fn time_ms(
    gpu: &Gpu,
    reps: usize,
    mut f: impl FnMut(usize) -> Result<(), GpuError>,
) -> Result<f64, GpuError> {
    for call in 0..3 {
        f(call)?;
    }
    let ctx = gpu.context();
    let start = ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
    let end = ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
    start.record(gpu.stream())?;
    for call in 3..3 + reps {
        f(call)?;
    }
    end.record(gpu.stream())?;
    end.synchronize()?;
    Ok(start.elapsed_ms(&end)? as f64 / reps as f64)
}

/// How many copies of a `bytes`-long weight buffer the GEMV timings rotate through, so that
/// together they exceed the L2 cache four times over and every call reads its weights from
/// device memory, not from the cache the previous call filled (at most 16).
fn rotation(gpu: &Gpu, bytes: usize) -> usize {
    use cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE;
    let l2 = gpu
        .context()
        .attribute(CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)
        .map(|v| v.max(0) as usize)
        .unwrap_or(64 << 20)
        .max(1 << 20);
    (4 * l2).div_ceil(bytes.max(1)).clamp(1, 16)
}

/// `copies` device buffers holding `v`.
fn upload_copies<T: cudarc::driver::DeviceRepr>(
    gpu: &Gpu,
    v: &[T],
    copies: usize,
) -> Result<Vec<CudaSlice<T>>, GpuError> {
    (0..copies).map(|_| gpu.upload(v)).collect()
}

/// Random bytes with a valid f16 factor written at each listed offset of every block.
fn random_blocks(rng: &mut Rng, blocks: usize, size: usize, f16_at: &[usize]) -> Vec<u8> {
    let mut b: Vec<u8> = (0..blocks * size).map(|_| rng.next_u64() as u8).collect();
    for blk in b.chunks_exact_mut(size) {
        for &o in f16_at {
            let v = f16::from_f32((0.001 + 0.01 * rng.uniform()) as f32).to_le_bytes();
            blk[o..o + 2].copy_from_slice(&v);
        }
    }
    b
}

/// Runs the whole benchmark with `reps` timed calls per kernel.
pub fn run(gpu: &Gpu, reps: usize) -> Result<BenchReport, GpuError> {
    let reps = reps.max(1);
    let mut rng = Rng::new(7);
    let mut rows = Vec::new();

    let copy_gbps = {
        let _r = nvtx_range("bench copy d2d");
        let n = 1usize << 30;
        let src = gpu.stream().alloc_zeros::<u8>(n)?;
        let mut dst = gpu.stream().alloc_zeros::<u8>(n)?;
        let ms = time_ms(gpu, reps, |_| {
            Ok(gpu.stream().memcpy_dtod(&src, &mut dst)?)
        })?;
        2.0 * n as f64 / ms / 1e6
    };

    {
        let _r = nvtx_range("bench int8_add");
        let n = 256usize << 20;
        let a: Vec<i8> = (0..n).map(|i| (i * 7 + 3) as i8).collect();
        let (da, db) = (gpu.upload(&a)?, gpu.upload(&a)?);
        let mut out = gpu.stream().alloc_zeros::<i8>(n)?;
        for v in AddVariant::ALL {
            let ms = time_ms(gpu, reps, |_| {
                gpu.int8_add(v, &da, &db, &mut out, 0.02, 0.03, 20.0)
            })?;
            rows.push(BenchRow::new(
                v.kernel(),
                format!("n={n}"),
                ms,
                3.0 * n as f64,
                0.0,
            ));
        }
    }

    // The Llama-3-8B FFN shape both ways: 4096 × 14336 (down) and 14336 × 4096 (up/gate).
    for (rows_, k) in [(4096usize, 14336usize), (14336, 4096)] {
        let _r = nvtx_range(&format!("bench gemv {rows_}x{k}"));
        let n = rows_ * k;
        let x: Vec<f32> = rng.normals(k);
        let dx = gpu.upload(&x)?;
        let mut y = gpu.stream().alloc_zeros::<f32>(rows_)?;
        let size = format!("{rows_}x{k}");
        for q4k in [true, false] {
            let (block, bsize) = if q4k { (256, 144) } else { (32, 34) };
            let offsets: &[usize] = if q4k { &[0, 2] } else { &[0] };
            let host = random_blocks(&mut rng, n / block, bsize, offsets);
            let ws = upload_copies(gpu, &host, rotation(gpu, host.len()))?;
            let ms = time_ms(gpu, reps, |i| {
                gpu.gemv_ggml(q4k, &ws[i % ws.len()], &dx, &mut y)
            })?;
            rows.push(BenchRow::new(
                if q4k { "gemv_q4_k" } else { "gemv_q8_0" },
                size.clone(),
                ms,
                (host.len() + 4 * (k + rows_)) as f64,
                2.0 * n as f64,
            ));
            if rows_ == 4096 {
                let mut out = gpu.stream().alloc_zeros::<f32>(n)?;
                let ms = time_ms(gpu, reps, |i| {
                    gpu.dequant_ggml(q4k, &ws[i % ws.len()], &mut out)
                })?;
                rows.push(BenchRow::new(
                    if q4k { "dequant_q4_k" } else { "dequant_q8_0" },
                    size.clone(),
                    ms,
                    (host.len() + 4 * n) as f64,
                    0.0,
                ));
            }
        }
        let packed: Vec<u8> = (0..n / 2).map(|_| rng.next_u64() as u8).collect();
        let absmax: Vec<f32> = (0..n / 64).map(|_| 0.05 * rng.uniform() as f32).collect();
        let nf4_bytes = (packed.len() + 4 * absmax.len()) as f64;
        let copies = rotation(gpu, nf4_bytes as usize);
        let (dps, das) = (
            upload_copies(gpu, &packed, copies)?,
            upload_copies(gpu, &absmax, copies)?,
        );
        let ms = time_ms(gpu, reps, |i| {
            gpu.gemv_nf4(&dps[i % copies], &das[i % copies], &dx, &mut y)
        })?;
        rows.push(BenchRow::new(
            "gemv_nf4",
            size.clone(),
            ms,
            nf4_bytes + 4.0 * (k + rows_) as f64,
            2.0 * n as f64,
        ));
        // GPTQ stores W as (K, N): the same matrix is k = K inputs, n = rows outputs.
        let q = r::random_gptq_int4(&mut rng, k, rows_, 128, false);
        let dq = GptqDevice::upload(gpu, &q)?;
        let gptq_bytes = dq.weight_bytes();
        let mut dqs = vec![dq];
        for _ in 1..rotation(gpu, gptq_bytes) {
            dqs.push(GptqDevice::upload(gpu, &q)?);
        }
        let ms = time_ms(gpu, reps, |i| {
            gpu.gemv_gptq(&dqs[i % dqs.len()], &dx, &mut y)
        })?;
        rows.push(BenchRow::new(
            "gemv_gptq_int4",
            size.clone(),
            ms,
            (gptq_bytes + 4 * (k + rows_)) as f64,
            2.0 * n as f64,
        ));
        if rows_ == 4096 {
            let mut out = gpu.stream().alloc_zeros::<f32>(n)?;
            let ms = time_ms(gpu, reps, |i| {
                gpu.dequant_nf4(&dps[i % copies], &das[i % copies], 64, &mut out)
            })?;
            rows.push(BenchRow::new(
                "dequant_nf4",
                size.clone(),
                ms,
                nf4_bytes + 4.0 * n as f64,
                0.0,
            ));
            let ms = time_ms(gpu, reps, |i| {
                gpu.dequant_gptq(&dqs[i % dqs.len()], &mut out)
            })?;
            let bytes = (gptq_bytes + 4 * n) as f64;
            rows.push(BenchRow::new("dequant_gptq_int4", size, ms, bytes, 0.0));
        }
    }

    for (m, n, k) in [(4096usize, 4096usize, 4096usize), (16, 14336, 4096)] {
        let _r = nvtx_range(&format!("bench gemm_int8 {m}x{n}x{k}"));
        let (a, b) = (random_i8(&mut rng, m * k), random_i8(&mut rng, n * k));
        let (da, db) = (gpu.upload(&a)?, gpu.upload(&b)?);
        let (sa, sb) = (
            gpu.upload(&vec![0.01f32; m])?,
            gpu.upload(&vec![0.01f32; n])?,
        );
        let mut d = gpu.stream().alloc_zeros::<f32>(m * n)?;
        let ms = time_ms(gpu, reps, |_| {
            gpu.gemm_int8(&da, &db, (m, n, k), None, Some((&sa, &sb, &mut d)))
        })?;
        let bytes = (m * k + n * k + 4 * (m * n + m + n)) as f64;
        let ops = 2.0 * (m * n * k) as f64;
        rows.push(BenchRow::new(
            "gemm_int8_dp4a (w8a8)",
            format!("{m}x{n}x{k}"),
            ms,
            bytes,
            ops,
        ));
    }

    let transfer = {
        let _r = nvtx_range("bench transfers");
        transfers(gpu, 64 << 20, 8, 4)?
    };
    Ok(BenchReport {
        device: gpu.describe(),
        copy_gbps,
        rows,
        transfer,
    })
}

/// Median wall-clock milliseconds of 3 runs of `f` after one untimed run (which absorbs the
/// driver's first-use costs, so no mode is charged for them).
fn median_ms(mut f: impl FnMut() -> Result<(), GpuError>) -> Result<f64, GpuError> {
    f()?;
    let mut ms = [0f64; 3];
    for m in &mut ms {
        let t = Instant::now();
        f()?;
        *m = t.elapsed().as_secs_f64() * 1e3;
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms[1])
}

/// INT8 add of two `n`-byte host tensors, result back on the host: pageable, pinned, and
/// pinned in `chunks` pieces round-robin over `streams` streams.
pub fn transfers(
    gpu: &Gpu,
    n: usize,
    chunks: usize,
    streams: usize,
) -> Result<TransferReport, GpuError> {
    let (sa, sb, inv_so) = (0.02f32, 0.03f32, 20.0f32);
    let a: Vec<i8> = (0..n).map(|i| (i * 13 + 1) as i8).collect();
    let b: Vec<i8> = (0..n).map(|i| (i * 5 + 7) as i8).collect();
    let want = r::int8_add(&a, &b, sa, sb, inv_so);
    let ctx = gpu.context();

    // Every buffer is allocated and the kernel compiled before the clocks start.
    let s = gpu.stream();
    gpu.function(&super::compile::INT8_ADD, AddVariant::Vec16.kernel())?;
    let mut da = s.alloc_zeros::<i8>(n)?;
    let mut db = s.alloc_zeros::<i8>(n)?;
    let mut dout = s.alloc_zeros::<i8>(n)?;
    let mut out_pageable = vec![0i8; n];
    // SAFETY: the pinned buffers are written before any read.
    let mut ha = unsafe { ctx.alloc_pinned_with_flags::<i8>(n, 0) }?;
    let mut hb = unsafe { ctx.alloc_pinned_with_flags::<i8>(n, 0) }?;
    let mut hout = unsafe { ctx.alloc_pinned_with_flags::<i8>(n, 0) }?;
    ha.as_mut_slice()?.copy_from_slice(&a);
    hb.as_mut_slice()?.copy_from_slice(&b);
    s.synchronize()?;

    // Pageable: Vec memory; the driver stages every copy through its own pinned buffer.
    let pageable_ms = median_ms(|| {
        s.memcpy_htod(&a, &mut da)?;
        s.memcpy_htod(&b, &mut db)?;
        gpu.int8_add(AddVariant::Vec16, &da, &db, &mut dout, sa, sb, inv_so)?;
        s.memcpy_dtoh(&dout, &mut out_pageable)?;
        Ok(s.synchronize()?)
    })?;

    // Pinned: page-locked host buffers (flags 0: cached, so the CPU reads them fast), DMA
    // straight from and to them.
    let pinned_ms = median_ms(|| {
        s.memcpy_htod(&ha, &mut da)?;
        s.memcpy_htod(&hb, &mut db)?;
        gpu.int8_add(AddVariant::Vec16, &da, &db, &mut dout, sa, sb, inv_so)?;
        s.memcpy_dtoh(&dout, &mut hout)?;
        Ok(s.synchronize()?)
    })?;
    let out_pinned = hout.as_slice()?.to_vec();

    // Pinned, chunked over several streams: chunk i's copies overlap chunk i-1's kernel.
    let chunk = n.div_ceil(chunks);
    let lanes: Vec<_> = (0..streams)
        .map(|_| -> Result<_, GpuError> {
            let st = ctx.new_stream()?;
            Ok((
                st.alloc_zeros::<i8>(chunk)?,
                st.alloc_zeros::<i8>(chunk)?,
                st.alloc_zeros::<i8>(chunk)?,
                st,
            ))
        })
        .collect::<Result<_, _>>()?;
    let mut lanes = lanes;
    hout.as_mut_slice()?.fill(0);
    let (ha_s, hb_s) = (ha.as_slice()?, hb.as_slice()?);
    let ho = hout.as_mut_slice()?;
    let overlapped_ms = median_ms(|| {
        for c in 0..chunks {
            let (lo, hi) = (c * chunk, ((c + 1) * chunk).min(n));
            if lo >= hi {
                break;
            }
            let (ca, cb, co, st) = &mut lanes[c % streams];
            let len = hi - lo;
            {
                let (pa, _ga) = ca.device_ptr_mut(st);
                let (pb, _gb) = cb.device_ptr_mut(st);
                // SAFETY: device buffers hold `chunk` ≥ len bytes; the host ranges are in bounds
                // and pinned, and outlive the stream work (synchronized below).
                unsafe {
                    cudarc::driver::result::memcpy_htod_async(pa, &ha_s[lo..hi], st.cu_stream())?;
                    cudarc::driver::result::memcpy_htod_async(pb, &hb_s[lo..hi], st.cu_stream())?;
                }
            }
            gpu.int8_add_on(st, AddVariant::Vec16, ca, cb, co, len, (sa, sb, inv_so))?;
            let (po, _go) = co.device_ptr(st);
            // SAFETY: as above.
            unsafe {
                cudarc::driver::result::memcpy_dtoh_async(&mut ho[lo..hi], po, st.cu_stream())?;
            }
        }
        for (_, _, _, st) in &lanes {
            st.synchronize()?;
        }
        Ok(())
    })?;
    let outputs_match = out_pageable == want && out_pinned == want && ho[..] == want[..];
    Ok(TransferReport {
        bytes: n,
        pageable_ms,
        pinned_ms,
        overlapped_ms,
        chunks,
        streams,
        outputs_match,
    })
}

/// The report as text: a kernel table and the transfer comparison.
pub fn format_report(rep: &BenchReport) -> String {
    let mut s = format!(
        "device: {}\ndevice-to-device copy: {:.0} GB/s (bytes read + written)\n\n",
        rep.device, rep.copy_gbps
    );
    s += &format!(
        "{:<22} {:<14} {:>10} {:>9} {:>7} {:>8}\n",
        "kernel", "size", "time(us)", "GB/s", "%copy", "TOPS"
    );
    for row in &rep.rows {
        let tops = if row.ops > 0.0 {
            format!("{:.2}", row.ops / row.micros / 1e6)
        } else {
            "-".into()
        };
        s += &format!(
            "{:<22} {:<14} {:>10.1} {:>9.0} {:>6.0}% {:>8}\n",
            row.kernel,
            row.size,
            row.micros,
            row.gbps(),
            100.0 * row.gbps() / rep.copy_gbps,
            tops
        );
    }
    let t = &rep.transfer;
    s += &format!(
        "\nhost -> device -> host, int8 add of 2 x {} MiB: pageable {:.2} ms, pinned {:.2} ms, \
         pinned + {} chunks over {} streams {:.2} ms ({:.2}x vs pageable); outputs {}\n",
        t.bytes >> 20,
        t.pageable_ms,
        t.pinned_ms,
        t.chunks,
        t.streams,
        t.overlapped_ms,
        t.pageable_ms / t.overlapped_ms,
        if t.outputs_match {
            "match the reference"
        } else {
            "DIFFER from the reference"
        }
    );
    s
}

/// The report as JSON (for the PyTorch anchor script).
pub fn report_json(rep: &BenchReport) -> String {
    let rows: Vec<String> = rep
        .rows
        .iter()
        .map(|r| {
            format!(
                "{{\"kernel\":\"{}\",\"size\":\"{}\",\"micros\":{:.3},\"bytes\":{},\"ops\":{}}}",
                r.kernel, r.size, r.micros, r.bytes, r.ops
            )
        })
        .collect();
    let t = &rep.transfer;
    format!(
        "{{\"device\":\"{}\",\"copy_gbps\":{:.1},\"rows\":[{}],\"transfer\":{{\"bytes\":{},\
         \"pageable_ms\":{:.3},\"pinned_ms\":{:.3},\"overlapped_ms\":{:.3},\"chunks\":{},\
         \"streams\":{},\"outputs_match\":{}}}}}",
        rep.device.replace('"', "'"),
        rep.copy_gbps,
        rows.join(","),
        t.bytes,
        t.pageable_ms,
        t.pinned_ms,
        t.overlapped_ms,
        t.chunks,
        t.streams,
        t.outputs_match
    )
}
