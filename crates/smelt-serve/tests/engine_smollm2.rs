//! The engine on the real SmolLM2, driven through its handle (no HTTP): batched greedy output
//! equals each request run alone; a thousand requests of which a fifth disconnect mid-stream
//! leave every KV block free; a burst past the queue limit is refused cleanly while the rest
//! is served; prompt log-probabilities, scored in chunks beside other work, equal a one-shot
//! forward pass; JSON-constrained output stays in its grammar (any object, or a schema's).

use std::sync::Arc;
use std::time::Instant;

use smelt_models::llama::{Llama, Logits};
use smelt_models::sampler::SamplerConfig;
use smelt_models::tokenizer::{self, Tokenizer};
use smelt_serve::blocks::lock;
use smelt_serve::engine::{
    self, EngineConfig, EngineHandle, Event, Finish, GenParams, Request, TokenLogprob,
};
use smelt_serve::json_schema::{self, Grammar, Json};
use smelt_serve::scheduler::SchedulerConfig;
use tokio::sync::mpsc;

fn smollm2() -> (Arc<Llama>, Arc<Tokenizer>) {
    let path = smelt_data::Fetcher::new(smelt_data::fetch::default_home(), true)
        .ensure_gguf(smelt_data::assets::find("smollm2-135m").unwrap())
        .unwrap();
    let file = Arc::new(smelt_gguf::GgufFile::open(path).unwrap());
    let tok = tokenizer::from_gguf(&file.header).unwrap();
    (Arc::new(Llama::load(&file).unwrap()), Arc::new(tok))
}

fn config(max_num_seqs: usize, n_blocks: usize, max_waiting: usize) -> EngineConfig {
    EngineConfig {
        sched: SchedulerConfig {
            max_num_seqs,
            max_batched_tokens: 256,
            block_size: 16,
            prefix_caching: true,
        },
        n_blocks,
        max_waiting,
    }
}

fn greedy(max_tokens: usize) -> GenParams {
    GenParams {
        max_tokens,
        sampler: SamplerConfig::greedy(),
        stop_strings: vec![],
        stop_tokens: vec![],
        logprobs: false,
        top_logprobs: 0,
        prompt_logprobs: false,
        min_tokens: 0,
        keep_stop_string: false,
        grammar: None,
    }
}

const LINES: [&str; 8] = [
    "To be, or not to be, that is the question:",
    "Now is the winter of our discontent",
    "Friends, Romans, countrymen, lend me your ears;",
    "All the world's a stage, and all the men and women merely players.",
    "If music be the food of love, play on;",
    "Shall I compare thee to a summer's day?",
    "The quality of mercy is not strained;",
    "Once more unto the breach, dear friends, once more;",
];

fn submit(h: &EngineHandle, prompt: Vec<u32>, p: GenParams) -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel(p.max_tokens + 4);
    h.submit(Request {
        prompt,
        params: p,
        index: 0,
        events: tx,
        arrival: Instant::now(),
    })
    .unwrap();
    rx
}

/// Token ids and finish reason of a whole request.
async fn collect(mut rx: mpsc::Receiver<Event>) -> (Vec<u32>, Finish) {
    let mut ids = Vec::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Token { token, .. } => ids.extend(token),
            Event::Prompt { .. } => panic!("prompt scores were not asked for"),
            Event::Done { finish, .. } => return (ids, finish),
        }
    }
    panic!("the stream ended without Done");
}

fn all_blocks_free(h: &EngineHandle) {
    let m = lock(&h.blocks);
    m.check().unwrap();
    assert_eq!(m.stats().used, 0, "blocks leaked: {:?}", m.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_greedy_requests_equal_each_run_alone() {
    let (model, tok) = smollm2();
    let (h, _t) = engine::start(model, tok.clone(), config(8, 256, 16)).unwrap();
    let prompts: Vec<Vec<u32>> = LINES.iter().map(|l| tok.encode(l, true)).collect();
    let mut alone = Vec::new();
    for p in &prompts {
        alone.push(collect(submit(&h, p.clone(), greedy(32))).await);
    }
    let rxs: Vec<_> = prompts
        .iter()
        .map(|p| submit(&h, p.clone(), greedy(32)))
        .collect();
    let mut together = Vec::new();
    for rx in rxs {
        together.push(collect(rx).await);
    }
    for (i, (a, b)) in alone.iter().zip(&together).enumerate() {
        assert_eq!(a.1, Finish::Length);
        assert_eq!(a, b, "request {i}: batched output differs from alone");
    }
    // The batch really ran together: some step ran more than one sequence.
    let steps = h.metrics.steps.get();
    assert!(
        steps < 8 * 32 * 2,
        "{steps} steps for 16 requests of 32 tokens"
    );
    all_blocks_free(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_with_disconnects_leave_every_block_free() {
    let (model, tok) = smollm2();
    // A small pool so that preemption happens too.
    let (h, _t) = engine::start(model, tok.clone(), config(16, 24, 32)).unwrap();
    let prompts: Vec<Vec<u32>> = LINES.iter().map(|l| tok.encode(l, true)).collect();
    let mut seed = 42u64;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut tasks = tokio::task::JoinSet::new();
    let (mut dropped, mut finished) = (0, 0);
    for i in 0..1000u64 {
        let mut prompt = prompts[rnd(8) as usize].clone();
        // Unique tails, so prefixes are shared only up to the line.
        prompt.push(100 + (i % 500) as u32);
        let max_tokens = 2 + rnd(6) as usize;
        let disconnect_after = (rnd(5) == 0).then(|| rnd(max_tokens as u64) as usize);
        let (tx, mut rx) = mpsc::channel(max_tokens + 4);
        let mut req = Request {
            prompt,
            params: greedy(max_tokens),
            index: 0,
            events: tx,
            arrival: Instant::now(),
        };
        // Keep at most 48 in flight; a full queue is retried, as a client would.
        while tasks.len() >= 48 {
            tasks.join_next().await.unwrap().unwrap();
        }
        loop {
            match h.submit(req) {
                Ok(()) => break,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    let (tx, rx2) = mpsc::channel(max_tokens + 4);
                    rx = rx2;
                    req = Request {
                        prompt: prompts[0].clone(),
                        params: greedy(max_tokens),
                        index: 0,
                        events: tx,
                        arrival: Instant::now(),
                    };
                }
            }
        }
        if disconnect_after.is_some() {
            dropped += 1;
        } else {
            finished += 1;
        }
        tasks.spawn(async move {
            let mut got = 0;
            while let Some(ev) = rx.recv().await {
                if disconnect_after == Some(got) {
                    return; // drops the receiver mid-stream
                }
                match ev {
                    Event::Token { .. } => got += 1,
                    Event::Prompt { .. } => panic!("prompt scores were not asked for"),
                    Event::Done { finish, .. } => {
                        assert_eq!(finish, Finish::Length);
                        return;
                    }
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    assert!(
        dropped > 150 && finished > 700,
        "{dropped} dropped, {finished} finished"
    );
    // The engine retires cancelled sequences at its next step; wait for it to go idle.
    for _ in 0..200 {
        if h.metrics.running.get() == 0 && lock(&h.blocks).stats().used == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    all_blocks_free(&h);
    let text = h.metrics.render();
    assert!(text.contains("smelt:gpu_cache_usage_perc 0\n"), "{text}");
    assert!(text.contains("smelt:num_requests_running 0\n"));
    let waits = h.metrics.prefix_waits.get();
    assert!(
        text.contains(&format!("smelt:prefix_waits_total {waits}\n")),
        "{text}"
    );
    println!("admissions put off to share a prompt prefix: {waits}");
    let aborted = h.metrics.finished.with_label_values(&["abort"]).get();
    assert!(aborted > 0, "some disconnects were seen mid-generation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_past_the_queue_limit_is_refused_and_the_rest_served() {
    let (model, tok) = smollm2();
    let (h, _t) = engine::start(model, tok.clone(), config(2, 64, 4)).unwrap();
    let prompt = tok.encode(LINES[0], true);
    let mut accepted = Vec::new();
    let mut refused = 0;
    for _ in 0..100 {
        let (tx, rx) = mpsc::channel(12);
        match h.submit(Request {
            prompt: prompt.clone(),
            params: greedy(8),
            index: 0,
            events: tx,
            arrival: Instant::now(),
        }) {
            Ok(()) => accepted.push(rx),
            Err(e) => {
                assert_eq!(e, engine::SubmitError::QueueFull);
                refused += 1;
            }
        }
    }
    // At most the channel (4) plus what the engine already pulled (4 waiting + 2 running).
    assert!(
        accepted.len() <= 10 && refused >= 90,
        "{} accepted",
        accepted.len()
    );
    for rx in accepted {
        assert_eq!(collect(rx).await.1, Finish::Length);
    }
    assert_eq!(h.metrics.rejected.get(), refused);
    // Too long for the context is its own error.
    let (tx, _rx) = mpsc::channel(1);
    let err = h
        .submit(Request {
            prompt: prompt.clone(),
            params: greedy(h.max_context),
            index: 0,
            events: tx,
            arrival: Instant::now(),
        })
        .unwrap_err();
    assert!(matches!(err, engine::SubmitError::TooLong { .. }), "{err}");
    all_blocks_free(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_log_probabilities_equal_a_one_shot_forward_pass() {
    let (model, tok) = smollm2();
    // 16 tokens a step, so the prompt runs in chunks over several steps.
    let mut cfg = config(4, 256, 16);
    cfg.sched.max_batched_tokens = 16;
    let (h, _t) = engine::start(model.clone(), tok.clone(), cfg).unwrap();
    let prompt = tok.encode(&LINES.join(" "), true);
    // The prompt's blocks are in the prefix cache now; scoring must not start from them.
    collect(submit(&h, prompt.clone(), greedy(1))).await;
    let mut p = greedy(2);
    p.logprobs = true;
    p.top_logprobs = 3;
    p.prompt_logprobs = true;
    let other = submit(&h, tok.encode(LINES[0], true), greedy(8));
    let mut rx = submit(&h, prompt.clone(), p.clone());
    let (mut scores, mut generated) = (None, 0);
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Prompt { logprobs, .. } => {
                assert!(
                    scores.is_none() && generated == 0,
                    "one Prompt event, first"
                );
                scores = Some(logprobs);
            }
            Event::Token { token, logprob, .. } => {
                generated += usize::from(token.is_some());
                assert!(token.is_none() || logprob.is_some_and(|l| l.top.len() == 3));
            }
            Event::Done { finish, .. } => {
                assert_eq!(finish, Finish::Length);
                break;
            }
        }
    }
    assert_eq!(collect(other).await.1, Finish::Length);
    let scores = scores.expect("a Prompt event");
    assert_eq!((scores.len(), generated), (prompt.len() - 1, 2));

    assert!(scores.iter().all(|s| s.top.len() == 3));
    let worst = worst_against_one_pass(&model, &prompt, &scores);
    eprintln!(
        "{} prompt tokens scored; largest difference from one pass {worst:e}",
        scores.len()
    );

    // max_tokens 0: the scores and the end, no token.
    p.max_tokens = 0;
    let mut rx = submit(&h, prompt.clone(), p);
    let mut kinds = Vec::new();
    while let Some(ev) = rx.recv().await {
        kinds.push(match ev {
            Event::Prompt { logprobs, .. } => {
                assert_eq!(logprobs, scores);
                "prompt"
            }
            Event::Token { token, .. } => {
                assert!(token.is_none(), "a token was generated");
                "text"
            }
            Event::Done { finish, .. } => {
                assert_eq!(finish, Finish::Length);
                "done"
            }
        });
    }
    assert_eq!(kinds.first(), Some(&"prompt"));
    assert_eq!(kinds.last(), Some(&"done"));
    // ... which is refused where nothing would be scored.
    let (tx, _rx) = mpsc::channel(4);
    let refused = h.submit(Request {
        prompt: prompt.clone(),
        params: greedy(0),
        index: 0,
        events: tx,
        arrival: Instant::now(),
    });
    assert!(refused.is_err());
    all_blocks_free(&h);
}

/// The largest difference between `scores` (of prompt tokens 1..) and the log-probabilities
/// of one forward pass over `prompt`, after checking each step's alternatives: the argmax
/// first (up to ties), sorted. Fails past 2e-3 (chunked prefill against one pass: attention
/// may sum in another order, nothing more).
fn worst_against_one_pass(model: &Llama, prompt: &[u32], scores: &[TokenLogprob]) -> f32 {
    let mut cache = model.new_cache(prompt.len());
    // (prompt_len, n_vocab) in one pass.
    let logits = model
        .forward_batch(prompt, &mut cache, Logits::All)
        .unwrap();
    let v = model.config.n_vocab;
    let mut worst = 0f32;
    for (t, s) in scores.iter().enumerate() {
        let row = &logits[t * v..(t + 1) * v];
        let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let sum: f64 = row.iter().map(|&x| ((x - max) as f64).exp()).sum();
        let want = row[prompt[t + 1] as usize] - max - sum.ln() as f32;
        worst = worst.max((s.logprob - want).abs());
        if let Some(&(top, _)) = s.top.first() {
            let best = smelt_models::sampler::argmax(row);
            assert!(
                top == best || row[best as usize] - row[top as usize] < 1e-3,
                "position {t}: top token {top} against the argmax {best}"
            );
        }
        assert!(s.top.windows(2).all(|w| w[0].1 >= w[1].1));
    }
    assert!(worst < 2e-3, "largest log-probability difference {worst}");
    worst
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_scores_survive_preemption() {
    let (model, tok) = smollm2();
    // 12 blocks of 16 and 4 tokens a step: two generations of 100 tokens already under way
    // leave the scored prompt 2 tokens a step, and before its 89 tokens are through, a
    // generation needs a block and the newest sequence (the scored one) gives way.
    let mut cfg = config(4, 12, 16);
    cfg.sched.max_batched_tokens = 4;
    let (h, _t) = engine::start(model.clone(), tok.clone(), cfg).unwrap();
    let long: Vec<_> = LINES[..2]
        .iter()
        .map(|l| tokio::spawn(collect(submit(&h, tok.encode(l, true), greedy(100)))))
        .collect();
    while h.metrics.generation_tokens.get() < 80 {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let prompt = tok.encode(&LINES[2..].join(" "), true);
    let mut p = greedy(3);
    p.logprobs = true;
    p.prompt_logprobs = true;
    let mut rx = submit(&h, prompt.clone(), p);
    let mut prompt_events = Vec::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Prompt { logprobs, .. } => prompt_events.push(logprobs),
            Event::Done { finish, .. } => assert_eq!(finish, Finish::Length),
            Event::Token { .. } => {}
        }
    }
    for task in long {
        assert_eq!(task.await.unwrap().1, Finish::Length);
    }
    let preempted = h.metrics.preemptions.get();
    assert!(preempted > 0, "the pool was meant to run out");
    assert_eq!(prompt_events.len(), 1, "one Prompt event");
    let scores = &prompt_events[0];
    assert_eq!(scores.len(), prompt.len() - 1);
    let worst = worst_against_one_pass(&model, &prompt, scores);
    eprintln!("{preempted} preemptions; largest difference from one pass {worst:e}");
    all_blocks_free(&h);
}

/// Two scored prompts of about 250 tokens, each fitting the 20-block pool (320 positions)
/// alone, run side by side in 128-token chunks and fill it before either is through. Before
/// the scheduler preempted in that case, the engine planned nothing, forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scored_prompts_that_fill_the_pool_together_both_finish() {
    let (model, tok) = smollm2();
    let (h, _t) = engine::start(model.clone(), tok.clone(), config(4, 20, 16)).unwrap();
    let text = LINES.join(" ");
    let prompts: Vec<Vec<u32>> = (0..2)
        .map(|i| {
            let mut p = tok.encode(&format!("{i} {text} {text} {text}"), true);
            p.truncate(250);
            p
        })
        .collect();
    assert!(prompts.iter().all(|p| p.len() == 250));
    let rxs: Vec<_> = prompts
        .iter()
        .map(|p| {
            let mut params = greedy(1);
            params.prompt_logprobs = true;
            submit(&h, p.clone(), params)
        })
        .collect();
    let done = async {
        for mut rx in rxs {
            let mut scored = 0;
            while let Some(ev) = rx.recv().await {
                match ev {
                    Event::Prompt { logprobs, .. } => scored = logprobs.len(),
                    Event::Done { finish, .. } => assert_eq!(finish, Finish::Length),
                    Event::Token { .. } => {}
                }
            }
            assert_eq!(scored, 249);
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(120), done)
        .await
        .expect("both scored prompts finish");
    assert!(
        h.metrics.preemptions.get() > 0,
        "the pool was meant to fill"
    );
    all_blocks_free(&h);
}

/// Runs 8 seeds of `prompt` under `g` (at most `max` tokens each); checks every text stays in
/// the grammar and has no special token; returns the texts of the objects that closed.
async fn constrained_runs(
    g: &Arc<Grammar>,
    prompt: &str,
    max: usize,
) -> (Vec<serde_json::Value>, Arc<Tokenizer>) {
    use smelt_serve::json_mode::JsonState;
    let (model, tok) = smollm2();
    let (h, _t) = engine::start(model, tok.clone(), config(8, 256, 16)).unwrap();
    let prompt = tok.encode(prompt, true);
    let rxs: Vec<_> = (0..8u64)
        .map(|seed| {
            let mut p = greedy(max);
            p.sampler = SamplerConfig {
                temperature: 1.0,
                seed,
                ..SamplerConfig::default()
            };
            p.grammar = Some(g.clone());
            submit(&h, prompt.clone(), p)
        })
        .collect();
    let mut closed = vec![];
    for rx in rxs {
        let (ids, finish) = collect(rx).await;
        let text = tok.decode(&ids);
        let mut state = JsonState::new(g);
        assert!(
            state.feed(g, &tok.decode_bytes(&ids)),
            "{text:?} left the grammar"
        );
        assert!(
            ids.iter().all(|&t| !tok.is_special(t)),
            "a special token in {ids:?}"
        );
        match finish {
            Finish::Stop => {
                assert!(state.done());
                let v: serde_json::Value = serde_json::from_str(&text).expect("parses");
                assert!(v.is_object(), "{text:?}");
                closed.push(v);
            }
            Finish::Length => assert!(!state.done() && ids.len() == max),
            other => panic!("{other:?}"),
        }
    }
    all_blocks_free(&h);
    (closed, tok)
}

/// The mask's cost (ms) and its shortcut's agreement with trying every token, after `text`.
fn mask_check(tok: &Tokenizer, g: &Grammar, text: &str) -> (usize, f64) {
    use smelt_serve::json_mode::{JsonState, TokenBytes};
    let table = TokenBytes::new(tok);
    let mut state = JsonState::new(g);
    assert!(state.feed(g, text.as_bytes()));
    // The best of five, as the other tests run beside this one.
    let (mut left, mut elapsed) = (0, f64::INFINITY);
    for _ in 0..5 {
        let mut logits = vec![0f32; tok.vocab_size()];
        let t0 = Instant::now();
        left = table.mask(g, &state, &mut logits);
        elapsed = elapsed.min(t0.elapsed().as_secs_f64() * 1e3);
    }
    let tried = (0..tok.vocab_size())
        .filter(|&t| !table.special[t] && !table.bytes[t].is_empty())
        .filter(|&t| state.allows(g, &table.bytes[t]))
        .count();
    assert_eq!(left, tried, "after {text:?}");
    (left, elapsed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_mode_gives_objects_or_their_prefixes() {
    let g = Arc::new(Grammar::json_object());
    let (closed, tok) = constrained_runs(&g, "A cat, as JSON:", 48).await;
    assert!(!closed.is_empty(), "no object closed within 48 tokens");
    // The mask's cost where it is highest: inside a string, where most tokens may follow.
    let (left, ms) = mask_check(&tok, &g, "{\"name\": \"Fel");
    // Where every token is tried: any value may start.
    let (at_value, value_ms) = mask_check(&tok, &g, "{\"a\": [1, ");
    eprintln!(
        "{}/8 objects closed; a mask inside a string keeps {left} of {} tokens, in {ms:.2} ms; \
         before an array item {at_value}, in {value_ms:.2} ms",
        closed.len(),
        tok.vocab_size()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_schema_output_is_an_instance_of_the_schema() {
    let schema: Json = serde_json::from_str(
        r##"{"type": "object", "properties": {
            "name": {"type": "string", "maxLength": 12},
            "age": {"type": "integer"},
            "kind": {"enum": ["cat", "dog", "owl"]},
            "friends": {"type": "array", "items": {"$ref": "#/$defs/friend"}, "maxItems": 2},
            "nick": {"anyOf": [{"type": "string"}, {"type": "null"}]}
        }, "required": ["name", "age", "kind", "friends"],
        "$defs": {"friend": {"type": "object", "properties": {"name": {"type": "string"}},
                             "required": ["name"]}}}"##,
    )
    .unwrap();
    let g = Arc::new(json_schema::compile(&schema).unwrap());
    let (closed, tok) = constrained_runs(&g, "A pet, as JSON:", 96).await;
    assert!(!closed.is_empty(), "no object closed within 96 tokens");
    for v in &closed {
        // What the schema asks, checked on serde_json's reading of the text.
        let o = v.as_object().unwrap();
        let name = o["name"].as_str().expect("name is a string");
        assert!(name.chars().count() <= 12, "{v}");
        assert!(o["age"].is_i64() || o["age"].is_u64(), "{v}");
        assert!(
            ["cat", "dog", "owl"].contains(&o["kind"].as_str().unwrap()),
            "{v}"
        );
        let friends = o["friends"].as_array().expect("friends is an array");
        assert!(friends.len() <= 2, "{v}");
        assert!(
            friends
                .iter()
                .all(|f| f["name"].is_string() && f.as_object().unwrap().len() == 1)
        );
        assert!(
            o.get("nick").is_none_or(|n| n.is_string() || n.is_null()),
            "{v}"
        );
        assert!(
            o.keys()
                .all(|k| ["name", "age", "kind", "friends", "nick"].contains(&k.as_str()))
        );
    }
    // Inside the 12-character name the shortcut counts characters; after "kind" only the
    // enum's first bytes are left.
    let (in_name, ms) = mask_check(&tok, &g, "{\"name\": \"Felix the");
    let (in_kind, kind_ms) = mask_check(&tok, &g, "{\"name\": \"Felix\", \"age\": 3, \"kind\": ");
    eprintln!(
        "{}/8 instances closed: {closed:?}; a mask inside name keeps {in_name} tokens \
         ({ms:.2} ms), before kind {in_kind} ({kind_ms:.2} ms)",
        closed.len()
    );
    assert!(in_kind < 500, "{in_kind} tokens may start the enum");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patterned_and_bounded_output_meets_them() {
    let schema: Json = serde_json::from_str(
        r##"{"type": "object", "properties": {
            "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{3}$"},
            "day": {"type": "string", "format": "date"},
            "guests": {"type": "integer", "minimum": 1, "maximum": 8},
            "rating": {"type": "number", "minimum": 0, "maximum": 5}
        }, "required": ["code", "day", "guests", "rating"]}"##,
    )
    .unwrap();
    let g = Arc::new(json_schema::compile(&schema).unwrap());
    let (closed, tok) = constrained_runs(&g, "A hotel booking, as JSON:", 96).await;
    assert!(!closed.is_empty(), "no object closed within 96 tokens");
    let code = regex::Regex::new("^[A-Z]{3}-[0-9]{3}$").unwrap();
    for v in &closed {
        assert!(code.is_match(v["code"].as_str().unwrap()), "{v}");
        let day: Vec<u32> = v["day"]
            .as_str()
            .unwrap()
            .split('-')
            .map(|p| p.parse().unwrap())
            .collect();
        assert!(
            (1..=12).contains(&day[1]) && (1..=31).contains(&day[2]),
            "{v}"
        );
        assert!((1..=8).contains(&v["guests"].as_i64().unwrap()), "{v}");
        assert!((0.0..=5.0).contains(&v["rating"].as_f64().unwrap()), "{v}");
    }
    // Inside a patterned string every token is stepped through the pattern's table.
    let (in_code, code_ms) = mask_check(&tok, &g, "{\"code\": \"AB");
    let (in_day, day_ms) = mask_check(&tok, &g, "{\"code\": \"ABC-123\", \"day\": \"2024-0");
    let before_guests = "{\"code\": \"ABC-123\", \"day\": \"2024-02-29\", \"guests\": ";
    let (at_guests, guests_ms) = mask_check(&tok, &g, before_guests);
    eprintln!(
        "{}/8 instances closed: {closed:?}; a mask inside code keeps {in_code} tokens \
         ({code_ms:.2} ms), inside day {in_day} ({day_ms:.2} ms), before guests {at_guests} \
         ({guests_ms:.2} ms)",
        closed.len()
    );
    let mut state = smelt_serve::json_mode::JsonState::new(&g);
    assert!(state.feed(&g, before_guests.as_bytes()));
    for (text, ok) in [
        ("8", true),
        ("1,", true),
        ("9", false),
        ("0", false),
        ("-", false),
    ] {
        assert_eq!(state.allows(&g, text.as_bytes()), ok, "guests {text}");
    }
}

/// An idle engine waits for requests off the compute pool: with as many idle engines as the
/// pool has threads, a forward pass outside them still runs. (The engine loop used to wait
/// on a pool thread, so two tests' idle engines on a 2-thread pool starved each test's own
/// one-pass check, and the suite hung.)
#[test]
fn idle_engines_leave_the_compute_pool_free() {
    let (model, tok) = smollm2();
    let engines: Vec<_> = (0..rayon::current_num_threads())
        .map(|_| engine::start(model.clone(), tok.clone(), config(2, 16, 4)).unwrap())
        .collect();
    // Let every engine thread reach its wait for a first request.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (tx, rx) = std::sync::mpsc::channel();
    let prompt = tok.encode(LINES[0], true);
    let m = model.clone();
    std::thread::spawn(move || {
        let mut cache = m.new_cache(prompt.len());
        let _ = tx.send(m.forward_batch(&prompt, &mut cache, Logits::Last).is_ok());
    });
    // A hang guard, not a timing check: the pass takes milliseconds.
    let done = rx.recv_timeout(std::time::Duration::from_secs(60));
    assert_eq!(
        done,
        Ok(true),
        "a forward pass waited on a pool held by idle engines"
    );
    drop(engines);
}

/// A forced call over 64 tools whose names share a long prefix: every tool is a reading of its
/// own until the name parts them, and the mask there still agrees with trying every token.
#[test]
fn masks_over_sixty_four_tool_readings() {
    let (_, tok) = smollm2();
    let names: Vec<String> = (0..64)
        .map(|i| format!("get_weather_in_city_{i}"))
        .collect();
    let params: Json = serde_json::from_str(
        r#"{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}"#,
    )
    .unwrap();
    let tools: Vec<(&str, Option<&Json>)> =
        names.iter().map(|n| (n.as_str(), Some(&params))).collect();
    let g = json_schema::compile_calls(&tools, 4).unwrap();
    // Each text with the tools still alive after it (city_1 and city_10 to city_19 share
    // `city_1`).
    for (text, alive) in [
        ("[{", 64),
        ("[{\"name\": \"get_weather_in_", 64),
        ("[{\"name\": \"get_weather_in_city_1", 11),
        (
            "[{\"name\": \"get_weather_in_city_17\", \"parameters\": {\"city\": \"Par",
            1,
        ),
    ] {
        let mut s = smelt_serve::json_mode::JsonState::new(&g);
        assert!(s.feed(&g, text.as_bytes()));
        assert_eq!(s.readings(), alive, "after {text:?}");
        let (left, ms) = mask_check(&tok, &g, text);
        eprintln!(
            "after {text:?}: {} readings, {left} tokens left, mask {ms:.2} ms",
            s.readings()
        );
    }
}
