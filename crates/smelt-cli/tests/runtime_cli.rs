//! The LLM runtime verbs on the real SmolLM2: `chat` over piped turns with the model's template,
//! `perplexity` (with KL against itself, which must be 0), `bench`, and clear errors for bad
//! settings and missing files.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::{run, shared_home, smelt, text};

#[test]
fn chat_answers_each_piped_turn_and_reuses_the_cache() {
    let home = shared_home();
    let mut child = smelt(&home)
        .args(["chat", "smollm2-135m", "-n", "12", "--temp", "0", "-t", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Hello!\nWhat is two plus two?\n/exit\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let stats: Vec<&str> = all
        .lines()
        .filter(|l| l.starts_with("> [") || l.starts_with("["))
        .collect();
    assert_eq!(stats.len(), 2, "one stats line per turn: {all}");
    // The second turn re-sends the whole conversation but only its new tokens are run.
    let new_tokens = |l: &str| -> (usize, usize) {
        let total: usize = l
            .split('[')
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let new: usize = l
            .split('(')
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        (total, new)
    };
    let (t1, n1) = new_tokens(stats[0]);
    let (t2, n2) = new_tokens(stats[1]);
    assert_eq!(t1, n1, "first turn runs everything");
    assert!(
        t2 > t1 && n2 < t2 - t1 + 16,
        "second turn reuses the first: {stats:?}"
    );
}

#[test]
fn perplexity_of_a_text_and_kl_against_itself() {
    let home = shared_home();
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("t.txt");
    let para = "The quick brown fox jumps over the lazy dog. It was the best of times, it was the worst of times. ";
    std::fs::write(&txt, para.repeat(12)).unwrap();
    let out = run(smelt(&home)
        .env("SMELT_RUNS", dir.path().join("runs"))
        .args(["perplexity", "smollm2-135m", "-f"])
        .arg(&txt)
        .args([
            "--ctx",
            "64",
            "--chunks",
            "3",
            "--kl-base",
            "smollm2-135m",
            "-t",
            "2",
        ]));
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let line = all
        .lines()
        .find(|l| l.starts_with("Final estimate: PPL = "))
        .expect(&all);
    let ppl: f64 = line["Final estimate: PPL = ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // Repeated text is easy after its first occurrence: far below the vocabulary size.
    assert!(ppl > 1.0 && ppl < 50.0, "{line}");
    assert!(line.contains("3 windows, 93 scored tokens"), "{line}");
    let kl = all
        .lines()
        .find(|l| l.starts_with("KL divergence"))
        .expect(&all);
    assert!(
        kl.contains(": 0.000000 ± 0.000000") && kl.contains("same top token 100.00%"),
        "{kl}"
    );
}

#[test]
fn bench_prints_both_tests_and_the_bandwidth_line() {
    let home = shared_home();
    let out = run(smelt(&home).args([
        "bench",
        "smollm2-135m",
        "-p",
        "16",
        "-n",
        "4",
        "-r",
        "1",
        "-t",
        "2",
    ]));
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("| pp16 |") && all.contains("| tg4 |"), "{all}");
    assert!(all.contains("memory read bandwidth measured now"), "{all}");
    // At a depth, llama-bench's names; past the context, a clear error.
    let at = |depth: &str| {
        run(smelt(&home).args([
            "bench",
            "smollm2-135m",
            "-p",
            "8",
            "-n",
            "2",
            "-d",
            depth,
            "-r",
            "1",
            "-t",
            "2",
        ]))
    };
    let out = at("40");
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("| pp8 @ d40 |") && all.contains("| tg2 @ d40 |"),
        "{all}"
    );
    let out = at("8190");
    assert!(!out.status.success());
    assert!(text(&out).contains("do not fit"), "{}", text(&out));
}

#[test]
fn batched_bench_prints_one_row_per_size_and_checks_the_context() {
    let home = shared_home();
    let args = |extra: &[&str]| {
        let mut a = vec!["bench", "smollm2-135m", "-n", "3", "-r", "1", "-t", "2"];
        a.extend_from_slice(extra);
        run(smelt(&home).args(a))
    };
    let out = args(&["-b", "3", "--batch-prompt", "20"]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("starts from 20 prompt tokens, 3 steps"),
        "{all}"
    );
    assert!(
        all.contains("\n| 1 | ") && all.contains("\n| 3 | ") && all.contains("| 1.00× |"),
        "{all}"
    );
    let out = args(&["-b", "2", "--batch-prompt", "100000"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("exceeds the model's context"),
        "{}",
        text(&out)
    );
    let out = args(&["-b", "0"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("at least 1"), "{}", text(&out));
}

#[test]
fn bad_settings_and_missing_files_are_clear_errors() {
    let home = shared_home();
    let out = run(smelt(&home).args([
        "run",
        "smollm2-135m",
        "-p",
        "Hi",
        "--temp",
        "0.7",
        "--top-p",
        "0",
    ]));
    assert!(!out.status.success());
    assert!(
        text(&out).contains("top-p 0 is outside (0, 1]"),
        "{}",
        text(&out)
    );
    let out = run(smelt(&home).args(["perplexity", "smollm2-135m", "-f", "/nonexistent/text.txt"]));
    assert!(!out.status.success());
    assert!(
        text(&out).contains("reading /nonexistent/text.txt"),
        "{}",
        text(&out)
    );
    let out = run(smelt(&home).args([
        "run",
        "smollm2-135m",
        "-p",
        "Hello there my friend",
        "--ctx",
        "3",
    ]));
    assert!(!out.status.success());
    assert!(
        text(&out).contains("the prompt has 4 tokens but the context holds 3"),
        "{}",
        text(&out)
    );
    assert!(out.stdout.is_empty(), "nothing is printed before the error");
    let out = run(smelt(&home).args(["run", "/nonexistent/model.gguf", "-p", "Hi"]));
    assert!(!out.status.success());
    assert!(text(&out).contains("no such file"), "{}", text(&out));
    // --ctx 0 divided the text's length by zero; --chunks 0 blamed the text.
    for (flag, value, says) in [
        ("--ctx", "0", "--ctx 0: windows need at least 8 tokens"),
        ("--chunks", "0", "--chunks 0: score at least one window"),
    ] {
        let out = run(smelt(&home).args([
            "perplexity",
            "smollm2-135m",
            "-f",
            "shakespeare",
            flag,
            value,
        ]));
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains(says), "{}", text(&out));
    }
    // A context that fills ends the answer (length), as llama.cpp's does, not in an error:
    // 4 prompt tokens in a context of 6 leave room for 3.
    let out = run(smelt(&home).args([
        "run",
        "smollm2-135m",
        "-p",
        "Hello there my friend",
        "--ctx",
        "6",
        "-n",
        "20",
        "--temp",
        "0",
    ]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("generating at most 3"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("generated 3 tokens"), "{}", text(&out));
}

#[test]
fn run_with_trace_writes_a_valid_chrome_trace_and_tables() {
    let home = shared_home();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.trace.json");
    let out = run(smelt(&home).args([
        "run",
        "smollm2-135m",
        "-p",
        "Hello",
        "-n",
        "4",
        "-t",
        "2",
        "--trace",
        path.to_str().unwrap(),
    ]));
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    smelt_trace::chrome::check(&doc).unwrap();
    let names: Vec<&str> = doc["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X")
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for want in [
        "load",
        "tokenize",
        "prefill",
        "decode",
        "sample",
        "layer",
        "qkv",
        "attention",
        "gate+up",
        "ffn_down",
        "output_head",
    ] {
        assert!(names.contains(&want), "no `{want}` span");
    }
    // 30 layers per pass; one prefill pass and 3 decode passes.
    assert_eq!(names.iter().filter(|n| **n == "layer").count(), 4 * 30);
    assert!(all.contains("% wall") && all.contains("% of roof"), "{all}");
}
