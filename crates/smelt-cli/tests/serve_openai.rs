//! `smelt serve` end to end: the official `openai` Python client (completion, chat, streaming
//! chat with usage, n > 1, logprobs, error cases) and plain `curl`, then SIGTERM: the server
//! stops cleanly.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{oracle_python, shared_home, smelt};

const KEY: &str = "sk-smelt-test";

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "curl {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn openai_client_and_curl_against_smelt_serve() {
    let mut child = smelt(&shared_home())
        .args([
            "serve",
            "smollm2-135m",
            "--port",
            "0",
            "--max-num-seqs",
            "4",
            "--enable-auto-tool-choice",
            "--tool-call-parser",
            "hermes",
        ])
        .env("SMELT_API_KEY", KEY)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("smelt serve starts");
    // The log line "serving `NAME` on http://ADDR" tells the port; keep draining stderr after.
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("on http://") {
                let url: String = line[at + 3..].split_whitespace().next().unwrap().into();
                let _ = tx.send(url);
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    let base = rx
        .recv_timeout(Duration::from_secs(300))
        .expect("the server logs its address");

    let py = oracle_python();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/openai_client_check.py"
    );
    let out = Command::new(&py)
        .args([script, &base, KEY, "smollm2-135m"])
        .output()
        .expect("python runs");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the openai client check failed (python {py:?}; `scripts/test` installs the client)"
    );

    let auth = format!("Authorization: Bearer {KEY}");
    let body = r#"{"model":"smollm2-135m","prompt":"The capital of France is","max_tokens":6,"temperature":0}"#;
    let v: serde_json::Value = serde_json::from_str(&curl(&[
        "-H",
        &auth,
        "-H",
        "Content-Type: application/json",
        "-d",
        body,
        &format!("{base}/v1/completions"),
    ]))
    .unwrap();
    assert_eq!(v["object"], "text_completion");
    assert!(
        v["choices"][0]["text"].as_str().unwrap().contains("Paris"),
        "{v}"
    );
    // vLLM's stop options on the same greedy answer: the stop string cut, kept, or not
    // counted while it ends within the first `min_tokens` tokens.
    let complete = |extra: &str| -> serde_json::Value {
        let body = format!(
            r#"{{"prompt":"The capital of France is","max_tokens":6,"temperature":0{extra}}}"#
        );
        let url = format!("{base}/v1/completions");
        serde_json::from_str(&curl(&["-H", &auth, "-d", &body, &url])).unwrap()
    };
    let plain = complete(r#","logprobs":0"#);
    let whole = plain["choices"][0]["text"].as_str().unwrap().to_string();
    let at = whole.find("Paris").expect("greedy names Paris");
    let tokens: Vec<&str> = plain["choices"][0]["logprobs"]["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    // How many tokens are out once "Paris" is whole.
    let mut len = 0;
    let paris_in = 1 + tokens
        .iter()
        .position(|t| {
            len += t.len();
            len >= at + 5
        })
        .unwrap();
    let text = |v: &serde_json::Value| v["choices"][0]["text"].as_str().unwrap().to_string();
    let finish = |v: &serde_json::Value| v["choices"][0]["finish_reason"].to_string();
    let cut = complete(r#","stop":["Paris"]"#);
    assert_eq!(
        (text(&cut), finish(&cut)),
        (whole[..at].to_string(), r#""stop""#.into())
    );
    let kept = complete(r#","stop":["Paris"],"include_stop_str_in_output":true"#);
    assert_eq!(
        (text(&kept), finish(&kept)),
        (whole[..at + 5].to_string(), r#""stop""#.into())
    );
    let late = complete(&format!(r#","stop":["Paris"],"min_tokens":{paris_in}"#));
    assert_eq!(text(&late), whole, "Paris ends in token {paris_in}");
    // One token fewer held, and the stop string counts again.
    let held = paris_in - 1;
    let early = complete(&format!(r#","stop":["Paris"],"min_tokens":{held}"#));
    assert_eq!(text(&early), whole[..at], "min_tokens {held}");
    // Fields smelt does not read are named in the log (checked below); best_of other than n
    // and a suffix are refused.
    complete(r#","frobnicate":1,"user":"u1""#);
    for extra in [r#","best_of":2"#, r#","suffix":" and""#] {
        let e = complete(extra);
        assert!(e["error"]["message"].as_str().is_some(), "{extra}: {e}");
    }
    // A completion length near usize::MAX is a 400 naming the context, not a wrapped sum.
    for (path, body) in [
        (
            "completions",
            r#"{"prompt":"Hi","max_tokens":18446744073709551612}"#,
        ),
        (
            "chat/completions",
            r#"{"messages":[{"role":"user","content":"Hi"}],"max_completion_tokens":18446744073709551611}"#,
        ),
    ] {
        let e = curl(&[
            "-w",
            "%{http_code}",
            "-H",
            &auth,
            "-d",
            body,
            &format!("{base}/v1/{path}"),
        ]);
        assert!(e.ends_with("400") && e.contains("context"), "{path}: {e}");
    }
    // Stop lists are bounded: 65 strings, a 2,000-byte string, 1,025 stop token ids.
    let many = serde_json::to_string(&vec!["x"; 65]).unwrap();
    let long = serde_json::to_string(&vec!["y".repeat(2000)]).unwrap();
    let ids = serde_json::to_string(&vec![1; 1025]).unwrap();
    for (extra, says) in [
        (format!(r#""stop":{many}"#), "at most 64"),
        (format!(r#""stop":{long}"#), "at most 1024"),
        (format!(r#""stop_token_ids":{ids}"#), "at most 1024"),
    ] {
        let body = format!(r#"{{"prompt":"Hi","max_tokens":2,{extra}}}"#);
        let url = format!("{base}/v1/completions");
        let e = curl(&["-w", "%{http_code}", "-H", &auth, "-d", &body, &url]);
        assert!(e.ends_with("400") && e.contains(says), "{says}: {e}");
    }
    let sse = curl(&[
        "-N",
        "-H",
        &auth,
        "-d",
        r#"{"messages":[{"role":"user","content":"Hi"}],"max_tokens":4,"stream":true}"#,
        &format!("{base}/v1/chat/completions"),
    ]);
    assert!(sse.starts_with("data: {"), "{sse}");
    assert!(sse.trim_end().ends_with("data: [DONE]"), "{sse}");
    // No key: 401 in OpenAI's error shape; /health and /metrics need none.
    let e = curl(&[
        "-w",
        "%{http_code}",
        "-d",
        body,
        &format!("{base}/v1/completions"),
    ]);
    assert!(
        e.ends_with("401") && e.contains("\"invalid_api_key\""),
        "{e}"
    );
    assert_eq!(curl(&[&format!("{base}/health")]), "ok");
    let metrics = curl(&[&format!("{base}/metrics")]);
    for name in [
        "smelt:num_requests_running 0",
        "smelt:num_requests_waiting 0",
        "smelt:gpu_cache_usage_perc 0",
        "smelt:time_to_first_token_seconds_bucket",
        "smelt:prefix_cache_hits_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }

    // SIGTERM: a clean exit.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let log = reader.join().unwrap();
    assert!(status.success(), "exit {status:?}\n{log}");
    assert!(log.contains("shutting down"), "{log}");
    assert!(
        log.contains("present in the request but ignored: frobnicate\n"),
        "{log}"
    );
}
