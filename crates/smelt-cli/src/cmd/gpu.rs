//! `smelt gpu`: the CUDA backend's front door. Without a GPU (or without the `cuda` feature)
//! every verb says why in one line; `check` and `bench` then exit with an error, since there
//! is nothing to check, and everything else in smelt keeps running on the CPU.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};

use crate::Context;

/// `smelt gpu` verbs.
#[derive(Subcommand)]
pub enum GpuCommand {
    /// Whether a GPU is usable: device, NVRTC version, or the reason it is not.
    Info,
    /// Compare every kernel with its CPU reference on fresh random inputs.
    Check(CheckArgs),
    /// Time every kernel (GB/s and % of the measured device-to-device copy bandwidth), and
    /// host-device transfers with pageable memory, pinned memory and streams.
    Bench(BenchArgs),
}

/// `smelt gpu check` options.
#[derive(Args)]
pub struct CheckArgs {
    /// Seed for the random inputs [default: from the clock].
    #[arg(long)]
    seed: Option<u64>,
    /// GPU ordinal.
    #[arg(long, default_value_t = 0)]
    device: usize,
    /// Run the same checks on the CPU emulator instead of a GPU: the kernel files compiled by
    /// the system C++ compiler (g++, or $SMELT_CXX), one fiber per CUDA thread. It shows the
    /// kernels compute the right values with their real launch plans; it times nothing.
    #[arg(long)]
    emulate: bool,
}

/// `smelt gpu bench` options.
#[derive(Args)]
pub struct BenchArgs {
    /// Timed calls per kernel (after 3 warm-up calls).
    #[arg(short, long, default_value_t = 50)]
    reps: usize,
    /// Also write the results as JSON (read by benches/gpu_torch_anchor.py).
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
    /// GPU ordinal.
    #[arg(long, default_value_t = 0)]
    device: usize,
}

/// Runs a `smelt gpu` verb.
pub fn run(ctx: &Context, command: GpuCommand) -> Result<()> {
    imp::run(ctx, command)
}

#[cfg(feature = "cuda")]
mod imp {
    use super::*;
    use smelt_kernels::gpu::{self, bench, check, compile};

    fn open(ctx: &Context, device: usize) -> Result<gpu::Gpu> {
        match gpu::open(device, Some(ctx.home.join("cuda-ptx"))) {
            Ok(g) => Ok(g),
            Err(e) => bail!("no GPU: {e}"),
        }
    }

    pub fn run(ctx: &Context, command: GpuCommand) -> Result<()> {
        match command {
            GpuCommand::Info => {
                match compile::nvrtc_version() {
                    Ok((a, b)) => println!("NVRTC {a}.{b}"),
                    Err(e) => println!("NVRTC: {e}"),
                }
                match gpu::driver_version() {
                    Ok((a, b)) => println!("driver supports CUDA {a}.{b}"),
                    Err(e) => println!("driver: {e}"),
                }
                match gpu::open(0, None) {
                    Ok(g) => println!("GPU 0: {}", g.describe()),
                    Err(e) => println!("no GPU: {e}; smelt runs on the CPU"),
                }
                Ok(())
            }
            GpuCommand::Check(args) => {
                let seed = args.seed.unwrap_or_else(|| {
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos() as u64)
                        .unwrap_or(1)
                });
                let rows = if args.emulate {
                    let emu = gpu::emu::Emulator::open(Some(&ctx.home.join("cuda-emu")))
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    println!(
                        "CPU emulator ({}, one fiber per CUDA thread)  seed: {seed}",
                        gpu::emu::cxx()
                    );
                    check::run_all(&emu, seed)
                } else {
                    let g = open(ctx, args.device)?;
                    println!("GPU: {}  seed: {seed}", g.describe());
                    check::run_all(&g, seed)
                }
                .map_err(|e| anyhow::anyhow!("{e}"))?;
                let (table, ok) = check::format_rows(&rows);
                print!("{table}");
                if !ok {
                    bail!("a kernel differs from its reference (seed {seed})");
                }
                println!("all {} checks match their references", rows.len());
                Ok(())
            }
            GpuCommand::Bench(args) => {
                let g = open(ctx, args.device)?;
                let rep = bench::run(&g, args.reps).map_err(|e| anyhow::anyhow!("{e}"))?;
                print!("{}", bench::format_report(&rep));
                if let Some(path) = args.json {
                    smelt_files::write_atomic(&path, bench::report_json(&rep).as_bytes())?;
                    println!("wrote {}", path.display());
                }
                Ok(())
            }
        }
    }
}

#[cfg(not(feature = "cuda"))]
mod imp {
    use super::*;

    pub fn run(_ctx: &Context, command: GpuCommand) -> Result<()> {
        let why = "this smelt was built without the `cuda` feature; smelt runs on the CPU";
        match command {
            GpuCommand::Info => {
                println!("no GPU: {why}");
                Ok(())
            }
            _ => bail!("no GPU: {why}"),
        }
    }
}
