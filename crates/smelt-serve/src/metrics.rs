//! Prometheus metrics with vLLM's names under a `smelt:` prefix (`smelt:num_requests_running`,
//! `smelt:time_to_first_token_seconds`, ...), so dashboards built for vLLM read them with
//! the prefix swapped. Plus counters vLLM lacks: KV slots allocated and left unused, summed
//! over steps, whose ratio is the KV waste; admissions put off to share a prompt prefix.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    /// Sequences in the running batch.
    pub running: IntGauge,
    /// Sequences waiting for admission.
    pub waiting: IntGauge,
    /// KV blocks held by sequences, in per cent of the pool (`gpu_cache_usage_perc` in vLLM).
    pub kv_usage_perc: prometheus::Gauge,
    /// Prefix-cache lookups, in tokens (as vLLM counts them).
    pub prefix_queries: IntCounter,
    /// Prefix-cache hits, in tokens.
    pub prefix_hits: IntCounter,
    /// Prompt tokens run (cached ones excluded).
    pub prompt_tokens: IntCounter,
    /// Tokens generated.
    pub generation_tokens: IntCounter,
    /// Finished requests by reason (`stop`, `length`, `abort`, `error`).
    pub finished: IntCounterVec,
    /// Preemptions.
    pub preemptions: IntCounter,
    /// Arrival to first token.
    pub ttft: Histogram,
    /// Between consecutive tokens of a request.
    pub itl: Histogram,
    /// Arrival to last token.
    pub e2e: Histogram,
    /// Arrival to admission.
    pub queue_time: Histogram,
    /// KV slots (block positions) held by running sequences, summed over steps.
    pub kv_slots_allocated: IntCounter,
    /// Of those, slots holding no token, summed over steps.
    pub kv_slots_unused: IntCounter,
    /// Engine steps run.
    pub steps: IntCounter,
    /// Requests refused because the queue was full.
    pub rejected: IntCounter,
    /// Admissions put off because the request's leading prompt blocks were still being
    /// computed for a running request (it then reuses them from the prefix cache).
    pub prefix_waits: IntCounter,
}

fn buckets(lo: f64, n: usize) -> Vec<f64> {
    prometheus::exponential_buckets(lo, 2.0, n).expect("valid buckets")
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let registry = Registry::new();
        let gauge = |n: &str, h: &str| {
            let g = IntGauge::new(format!("smelt:{n}"), h).expect("valid name");
            registry.register(Box::new(g.clone())).expect("unique");
            g
        };
        let counter = |n: &str, h: &str| {
            let c = IntCounter::new(format!("smelt:{n}"), h).expect("valid name");
            registry.register(Box::new(c.clone())).expect("unique");
            c
        };
        let hist = |n: &str, h: &str, b: Vec<f64>| {
            let x = Histogram::with_opts(HistogramOpts::new(format!("smelt:{n}"), h).buckets(b))
                .expect("valid name");
            registry.register(Box::new(x.clone())).expect("unique");
            x
        };
        let kv_usage_perc =
            prometheus::Gauge::new("smelt:gpu_cache_usage_perc", "KV blocks in use (0-1)")
                .expect("valid name");
        registry
            .register(Box::new(kv_usage_perc.clone()))
            .expect("unique");
        let finished = IntCounterVec::new(
            Opts::new("smelt:request_success_total", "Finished requests"),
            &["finished_reason"],
        )
        .expect("valid name");
        registry
            .register(Box::new(finished.clone()))
            .expect("unique");
        Self {
            running: gauge("num_requests_running", "Sequences in the running batch"),
            waiting: gauge("num_requests_waiting", "Sequences waiting for admission"),
            kv_usage_perc,
            prefix_queries: counter(
                "prefix_cache_queries_total",
                "Prompt tokens looked up in the prefix cache",
            ),
            prefix_hits: counter(
                "prefix_cache_hits_total",
                "Prompt tokens found in the prefix cache",
            ),
            prompt_tokens: counter("prompt_tokens_total", "Prompt tokens run"),
            generation_tokens: counter("generation_tokens_total", "Tokens generated"),
            finished,
            preemptions: counter("num_preemptions_total", "Sequences preempted"),
            ttft: hist(
                "time_to_first_token_seconds",
                "Arrival to first token",
                buckets(0.001, 16),
            ),
            itl: hist(
                "inter_token_latency_seconds",
                "Between consecutive tokens of a request",
                buckets(0.0005, 14),
            ),
            e2e: hist(
                "e2e_request_latency_seconds",
                "Arrival to last token",
                buckets(0.01, 14),
            ),
            queue_time: hist(
                "request_queue_time_seconds",
                "Arrival to admission",
                buckets(0.001, 16),
            ),
            kv_slots_allocated: counter(
                "kv_slots_allocated_total",
                "KV slots held by running sequences, summed over steps",
            ),
            kv_slots_unused: counter(
                "kv_slots_unused_total",
                "KV slots held but holding no token, summed over steps",
            ),
            steps: counter("engine_steps_total", "Engine steps run"),
            rejected: counter("requests_rejected_total", "Requests refused: queue full"),
            prefix_waits: counter(
                "prefix_waits_total",
                "Admissions put off to reuse a shared prompt prefix still being computed",
            ),
            registry,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
