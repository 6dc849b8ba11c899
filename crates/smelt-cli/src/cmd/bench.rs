//! `smelt bench ...`: throughput measurements reported next to an anchor measured in the same
//! run (here: this machine's memory read bandwidth), never asserted in tests.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use smelt_quant::rng::Rng;
use smelt_quant::{Granularity, INT4, INT8, QuantSpec, QuantizedTensor, Scheme, nf4};

use crate::Context;

/// Benchmarks.
#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Load a running OpenAI-compatible server (smelt serve, llama-server, vLLM) and report
    /// throughput, TTFT, TPOT, ITL and end-to-end latency percentiles (vLLM's definitions).
    ///
    /// Example: smelt bench serve --url http://127.0.0.1:8000 --concurrency 8 --num-prompts 64
    Serve(super::bench_serve::ServeBenchArgs),
    /// Quantize + dequantize throughput (INT8 per-channel, INT4 group-128, NF4) vs memory bandwidth.
    ///
    /// Example: smelt bench quant --elements 67108864
    Quant {
        /// Number of f32 values (a matrix of 8192 rows).
        #[arg(long, default_value_t = 64 << 20)]
        elements: usize,
        /// Repetitions; the best is reported.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Worker threads [default: all cores].
        #[arg(long)]
        threads: Option<usize>,
    },
}

/// Runs a `smelt bench` verb.
pub fn run(ctx: &Context, cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Serve(args) => super::bench_serve::run(ctx, &args),
        BenchCommand::Quant {
            elements,
            repeat,
            threads,
        } => quant(ctx, elements, repeat, threads),
    }
}

fn best_of<T>(repeat: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed());
        out = Some(r);
    }
    (best, out.expect("ran at least once"))
}

/// Runs `f` on `threads` contiguous row blocks of `(rows, cols)` in parallel.
fn par_rows<T: Send>(
    rows: usize,
    threads: usize,
    f: impl Fn(std::ops::Range<usize>) -> T + Sync,
) -> Vec<T> {
    let per = rows.div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let r = (t * per).min(rows)..((t + 1) * per).min(rows);
                let f = &f;
                s.spawn(move || f(r))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench worker panicked"))
            .collect()
    })
}

/// Sums `x` on `threads` threads: a read-bandwidth probe that the compiler cannot skip.
fn read_sum(x: &[f32], threads: usize) -> f32 {
    let per = x.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = x
            .chunks(per)
            .map(|c| {
                s.spawn(move || {
                    // 16 independent accumulators so the loop is bandwidth-bound, not latency-bound.
                    let mut acc = [0f32; 16];
                    for ch in c.chunks_exact(16) {
                        for (a, v) in acc.iter_mut().zip(ch) {
                            *a += v;
                        }
                    }
                    acc.iter().sum::<f32>()
                })
            })
            .collect();
        parts
            .into_iter()
            .map(|h| h.join().expect("sum worker"))
            .sum()
    })
}

/// Best time of dequantizing every part in parallel into one (sum of lengths,) output buffer,
/// reused across repetitions as an inference engine would; returns the time and the output.
fn time_dequantize<P: Sync>(
    parts: &[P],
    repeat: usize,
    len: impl Fn(&P) -> usize,
    dequantize_into: impl Fn(&P, &mut [f32]) + Sync,
) -> (Duration, Vec<f32>) {
    let mut out = vec![0f32; parts.iter().map(&len).sum()];
    let (t, ()) = best_of(repeat, || {
        std::thread::scope(|s| {
            let mut rest: &mut [f32] = &mut out;
            for p in parts {
                let (mine, tail) = std::mem::take(&mut rest).split_at_mut(len(p));
                rest = tail;
                let f = &dequantize_into;
                s.spawn(move || f(p, mine));
            }
        })
    });
    (t, out)
}

/// The plain (allocating) dequantization of every part, concatenated: the check value.
fn plain_dequantize(parts: &[QuantizedTensor]) -> Vec<f32> {
    parts.iter().flat_map(QuantizedTensor::dequantize).collect()
}

/// Memory read bandwidth in GB/s: best of 3 sums of a 256 MiB buffer on `threads` threads.
pub(crate) fn read_bandwidth_gbs(threads: usize) -> f64 {
    let x: Vec<f32> = (0..64usize << 20).map(|i| (i % 7) as f32).collect();
    let (t, sum) = best_of(3, || read_sum(&x, threads));
    std::hint::black_box(sum);
    gbs(x.len() * 4, t)
}

fn gbs(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64() / 1e9
}

fn quant(ctx: &Context, elements: usize, repeat: usize, threads: Option<usize>) -> Result<()> {
    let threads = threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let rows = 8192usize;
    ensure!(
        elements >= rows && elements.is_multiple_of(rows * 128),
        "--elements must be a multiple of {} (8192 rows of whole 128-groups)",
        rows * 128
    );
    let cols = elements / rows;
    let bytes = elements * 4;
    let mut record = ctx.record("bench quant");
    record
        .setting("elements", elements)
        .setting("shape", [rows, cols])
        .setting("threads", threads)
        .setting("repeat", repeat)
        .setting("kernel", format!("{:?}", smelt_quant::simd::variant()));
    eprintln!(
        "generating {elements} normal f32 values ({})...",
        smelt_files::human_bytes(bytes as u64)
    );
    // (rows, cols) weights; generated in parallel row blocks, each with its own seed.
    let x: Vec<f32> = par_rows(rows, threads, |r| {
        Rng::new(r.start as u64).normals(r.len() * cols)
    })
    .concat();

    let (t_read, sum) = best_of(repeat, || read_sum(&x, threads));
    let bw = gbs(bytes, t_read);
    println!(
        "{threads} threads, {rows}x{cols} f32 ({}), kernels: {:?}",
        smelt_files::human_bytes(bytes as u64),
        smelt_quant::simd::variant()
    );
    println!("memory read bandwidth (sum of the buffer): {bw:.2} GB/s   [checksum {sum:.1}]\n");
    println!(
        "{:<22} {:>12} {:>14} {:>12} {:>14}",
        "method", "quantize", "vs bandwidth", "dequantize", "vs bandwidth"
    );
    record.metric("memory_read_gbps", bw);

    let specs = [
        (
            "int8 per-channel",
            QuantSpec {
                format: INT8,
                scheme: Scheme::Symmetric { restricted: true },
                granularity: Granularity::PerChannel { axis: 0 },
            },
        ),
        (
            "int4 group-128",
            QuantSpec {
                format: INT4,
                scheme: Scheme::Symmetric { restricted: true },
                granularity: Granularity::Group { axis: 1, size: 128 },
            },
        ),
    ];
    let mut results = Vec::new();
    let report = |name: &str, tq: Duration, td: Duration, results: &mut Vec<serde_json::Value>| {
        let (q, d) = (gbs(bytes, tq), gbs(bytes, td));
        println!(
            "{name:<22} {q:>8.2} GB/s {:>13.0}% {d:>8.2} GB/s {:>13.0}%",
            100.0 * q / bw,
            100.0 * d / bw
        );
        results.push(
            serde_json::json!({"method": name, "quantize_gbps": q, "dequantize_gbps": d,
            "quantize_vs_bandwidth": q / bw, "dequantize_vs_bandwidth": d / bw}),
        );
    };
    for (name, spec) in specs {
        // Row blocks quantize independently: per-channel (axis 0) and groups along axis 1
        // never cross rows, so this is the same result as one call on the whole matrix.
        let (tq, parts) = best_of(repeat, || {
            par_rows(rows, threads, |r| {
                QuantizedTensor::quantize(&x[r.start * cols..r.end * cols], &[r.len(), cols], spec)
            })
        });
        let parts = parts.into_iter().collect::<Result<Vec<_>, _>>()?;
        let (td, out) = time_dequantize(
            &parts,
            repeat,
            |p| p.shape.iter().product(),
            |p, o| p.dequantize_into(o),
        );
        ensure!(
            out == plain_dequantize(&parts),
            "dequantized output differs from the tensors' dequantize()"
        );
        report(name, tq, td, &mut results);
    }
    let block = nf4::DEFAULT_BLOCK;
    let (tq, parts) = best_of(repeat, || {
        par_rows(rows, threads, |r| {
            nf4::quantize(&x[r.start * cols..r.end * cols], block)
        })
    });
    let (td, out) = time_dequantize(&parts, repeat, |p| p.len, nf4::dequantize_into);
    let direct: Vec<f32> = parts.iter().flat_map(nf4::dequantize).collect();
    ensure!(
        out == direct,
        "NF4 dequantize_into differs from dequantize()"
    );
    report("nf4 block-64", tq, td, &mut results);
    println!("\nGB/s = f32 bytes in (quantize) or out (dequantize) per second; best of {repeat}.");
    record.metric("results", results);
    let rec = record.write(&ctx.runs_dir)?;
    println!("run record: {}", rec.display());
    Ok(())
}
