//! `smelt serve`: the OpenAI-compatible server on the continuous-batching engine.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use smelt_models::chat::ChatTemplate;
use smelt_models::kv_cache::KvPool;
use smelt_serve::engine::{self, EngineConfig};
use smelt_serve::openai::AppState;
use smelt_serve::scheduler::SchedulerConfig;

use crate::Context;

/// `smelt serve` settings.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// A .gguf path, or a model asset name.
    pub model: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one; the chosen port is logged).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Name clients use as `model` [default: the model argument's file stem].
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Most sequences in the running batch.
    #[arg(long, default_value_t = 16)]
    pub max_num_seqs: usize,
    /// Most tokens per engine step (decodes plus prompt chunks).
    #[arg(long, default_value_t = 512)]
    pub max_batched_tokens: usize,
    /// KV blocks in the pool (overrides --kv-memory).
    #[arg(long)]
    pub kv_blocks: Option<usize>,
    /// Memory for the KV pool, in MiB.
    #[arg(long, default_value_t = 256)]
    pub kv_memory: usize,
    /// Positions per KV block.
    #[arg(long, default_value_t = 16)]
    pub block_size: usize,
    /// Turn off prefix caching (every prompt is computed in full).
    #[arg(long)]
    pub no_prefix_cache: bool,
    /// Requests that may wait for admission; beyond that new requests get 503.
    #[arg(long, default_value_t = 64)]
    pub max_waiting: usize,
    /// Require `Authorization: Bearer KEY` on /v1 routes.
    #[arg(long, env = "SMELT_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Seconds in-flight requests get to finish after SIGTERM before they are aborted.
    #[arg(long, default_value_t = 30)]
    pub shutdown_timeout: u64,
    /// Write a Chrome/Perfetto trace of every engine step (and each layer's ops) to FILE when
    /// the server stops, and print the per-phase table and roofline.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<std::path::PathBuf>,
    /// Worker threads for the model [default: all cores].
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// vLLM's switch for `tool_choice: "auto"`, accepted so its command lines work here;
    /// --tool-call-parser alone enables it.
    #[arg(long, requires = "tool_call_parser")]
    pub enable_auto_tool_choice: bool,
    /// How the model writes tool calls, so `"auto"` answers are read for them: `hermes`
    /// (`<tool_call>` blocks: Hermes, Qwen 2.5) or `llama3_json` (Llama 3.1-3.3).
    #[arg(long, value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(smelt_serve::openai::tool_parsers::ToolParser::NAMES))]
    pub tool_call_parser: Option<String>,
}

/// Settings parsed as on the command line, for callers inside smelt (the tour).
pub fn default_args(model: &str) -> ServeArgs {
    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        args: ServeArgs,
    }
    <Wrap as clap::Parser>::parse_from(["serve", model]).args
}

/// Starts the engine thread for the loaded model and builds the handlers' state.
pub fn start_engine(
    l: super::run::Loaded,
    args: &ServeArgs,
) -> Result<(Arc<AppState>, std::thread::JoinHandle<()>)> {
    if args.block_size == 0 || args.max_num_seqs == 0 || args.max_waiting == 0 {
        bail!("--block-size, --max-num-seqs and --max-waiting must be at least 1");
    }
    if args.max_batched_tokens < args.max_num_seqs {
        bail!(
            "--max-batched-tokens ({}) must be at least --max-num-seqs ({}): every running sequence decodes each step",
            args.max_batched_tokens,
            args.max_num_seqs
        );
    }
    let c = &l.model.config;
    let kv_dim = c.n_head_kv * c.head_dim();
    let per_block = KvPool::bytes_per_block(c.n_layer, args.block_size, kv_dim);
    let n_blocks = args
        .kv_blocks
        .unwrap_or(args.kv_memory * (1 << 20) / per_block);
    if n_blocks == 0 {
        bail!(
            "the KV pool has no blocks: one block of {} positions takes {per_block} bytes",
            args.block_size
        );
    }
    let name = args.served_model_name.clone().unwrap_or_else(|| {
        std::path::Path::new(&args.model)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| args.model.clone())
    });
    let template = ChatTemplate::from_gguf(&l.file.header, |id| l.tok.token(id).map(String::from));
    let tok = Arc::new(l.tok);
    let config = EngineConfig {
        sched: SchedulerConfig {
            max_num_seqs: args.max_num_seqs,
            max_batched_tokens: args.max_batched_tokens,
            block_size: args.block_size,
            prefix_caching: !args.no_prefix_cache,
        },
        n_blocks,
        max_waiting: args.max_waiting,
    };
    let (handle, engine_thread) = engine::start(Arc::new(l.model), tok.clone(), config)
        .context("starting the engine thread")?;
    tracing::info!(
        "engine: {n_blocks} KV blocks x {} positions ({:.0} MiB, {} tokens), prefix caching {}; max {} sequences, {} tokens per step, {} waiting; context {}",
        args.block_size,
        (n_blocks * per_block) as f64 / (1 << 20) as f64,
        n_blocks * args.block_size,
        if args.no_prefix_cache { "off" } else { "on" },
        args.max_num_seqs,
        args.max_batched_tokens,
        args.max_waiting,
        handle.max_context
    );
    let state = Arc::new(AppState {
        engine: handle,
        tok,
        template,
        model_name: name.clone(),
        api_key: args.api_key.clone(),
        bos: l.bos,
        stop_tokens: l.stop_tokens,
        shutting_down: AtomicBool::new(false),
        tool_parser: args
            .tool_call_parser
            .as_deref()
            .and_then(smelt_serve::openai::tool_parsers::ToolParser::from_name),
        started: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    });
    Ok((state, engine_thread))
}

/// Runs the server until SIGTERM or Ctrl-C.
pub fn run(ctx: &Context, args: &ServeArgs) -> Result<()> {
    super::profile::start(args.trace.as_deref());
    let l = super::run::load(ctx, &args.model, args.threads)?;
    let load_seconds = l.load_seconds;
    let (state, engine_thread) = start_engine(l, args)?;
    let name = state.model_name.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let addr = format!("{}:{}", args.host, args.port);
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        let local = listener.local_addr()?;
        tracing::info!(
            "serving `{name}` on http://{local} (load {load_seconds:.1} s){}",
            if args.api_key.is_some() {
                "; API key required"
            } else {
                ""
            }
        );
        smelt_serve::server::serve(
            listener,
            state,
            smelt_serve::server::termination(),
            Duration::from_secs(args.shutdown_timeout),
        )
        .await
        .context("serving")
    })?;
    // Every handle is gone once the server has stopped; the engine thread then ends.
    drop(runtime);
    let _ = engine_thread.join();
    tracing::info!("stopped");
    super::profile::finish(args.trace.as_deref(), rayon::current_num_threads())
}
