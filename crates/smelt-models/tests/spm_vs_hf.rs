//! smelt's SentencePiece-style tokenizer against Hugging Face's `tokenizers` crate configured as
//! for Llama (`LlamaTokenizerFast`: BPE with byte fallback, `▁` normalizer, merges derived from
//! the piece scores) on the same vocabulary. No llama-architecture GGUF is among the project's
//! assets, so the vocabulary is trained here, deterministically, on multilingual text: 400 merges
//! by pair frequency, rarer characters left to byte fallback.

use std::collections::HashMap;

use smelt_models::tokenizer::{self, SpmTokenizer};

const CORPUS: &[&str] = &[
    "Once upon a time, there was a little girl named Emma who loved to read.",
    "Hello world! I'm here, you're there, we'll see; they'd've said it's fine.",
    "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs on.",
    "Numbers: 1234567890, 3.14159, -42, 1e-9, 2026-11-26, 0x1F.",
    "Grüße aus München! Ça va très bien, merci. ¿Dónde está la biblioteca?",
    "Привет, как дела? Съешь же ещё этих мягких французских булок.",
    "中文测试：我爱自然语言处理。日本語のテキストも試します。",
    "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer.",
];

const TEXTS: &[&str] = &[
    "Once upon a time, there was a little girl named Emma who loved to read.",
    "to be or not to be, the fox and the dog",
    "  leading spaces, trailing spaces   ",
    "tabs\tand\nnewlines\n\n\nand\r\nwindows line ends \n \n",
    "Grüße aus München! Ça va très bien. ¿Dónde?",
    "Привет, как дела? 中文测试 한국어도 있어요.",
    "Emoji: 😀😃😄 👩‍👩‍👧‍👦 🇩🇪 ✨🚀 (and text after).",
    "<s>Hello</s> world<s>again",
    "a",
    " ",
    "",
    "!!!???...",
];

/// (tokens, scores, types): <unk>, <s>, </s>, 256 byte tokens, frequent characters, merges.
fn train() -> (Vec<String>, Vec<f32>, Vec<i64>) {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2i64, 3, 3];
    tokens.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    types.extend(std::iter::repeat_n(6, 256));
    let mut scores = vec![0f32; tokens.len()];
    let words: Vec<Vec<String>> = CORPUS
        .iter()
        .map(|t| {
            format!(" {t}")
                .replace(' ', "\u{2581}")
                .chars()
                .map(String::from)
                .collect()
        })
        .collect();
    let mut char_count: HashMap<String, usize> = HashMap::new();
    for w in &words {
        for c in w {
            *char_count.entry(c.clone()).or_default() += 1;
        }
    }
    let mut chars: Vec<(String, usize)> = char_count.into_iter().filter(|(_, n)| *n >= 2).collect();
    chars.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut next_score = -1.0f32;
    for (c, _) in chars {
        tokens.push(c);
        types.push(1);
        scores.push(next_score);
        next_score -= 1.0;
    }
    let mut seqs = words;
    for _ in 0..400 {
        let mut pairs: HashMap<(String, String), usize> = HashMap::new();
        for s in &seqs {
            for w in s.windows(2) {
                *pairs.entry((w[0].clone(), w[1].clone())).or_default() += 1;
            }
        }
        let Some(((a, b), _)) = pairs
            .into_iter()
            // As SentencePiece: pieces only start with ▁, and both halves are pieces already.
            .filter(|((a, b), _)| {
                !b.starts_with('\u{2581}')
                    && tokens.contains(a)
                    && tokens.contains(b)
                    && !tokens.contains(&format!("{a}{b}"))
            })
            .max_by(|x, y| x.1.cmp(&y.1).then(y.0.cmp(&x.0)))
        else {
            break;
        };
        let merged = format!("{a}{b}");
        for s in &mut seqs {
            let mut i = 0;
            while i + 1 < s.len() {
                if s[i] == a && s[i + 1] == b {
                    s.splice(i..i + 2, [merged.clone()]);
                }
                i += 1;
            }
        }
        tokens.push(merged);
        types.push(1);
        scores.push(next_score);
        next_score -= 1.0;
    }
    (tokens, scores, types)
}

/// tokenizer.json for the same vocabulary, as Hugging Face converts a Llama SentencePiece model:
/// merges are every split of a piece into two pieces, ordered by the merged piece's score.
fn hf_tokenizer(tokens: &[String], scores: &[f32], types: &[i64]) -> tokenizers::Tokenizer {
    let ids: HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let mut merges: Vec<(f32, usize, usize, &str, &str)> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if types[i] != 1 || t.chars().count() < 2 {
            continue;
        }
        for (at, _) in t.char_indices().skip(1) {
            let (l, r) = t.split_at(at);
            if let (Some(&li), Some(&ri)) = (ids.get(l), ids.get(r)) {
                merges.push((scores[i], li, ri, l, r));
            }
        }
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let vocab: serde_json::Map<String, serde_json::Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), serde_json::json!(i)))
        .collect();
    let added: Vec<serde_json::Value> = (0..3)
        .map(|i| {
            serde_json::json!({"id": i, "content": tokens[i], "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u{2581}"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"}]},
        "pre_tokenizer": null, "post_processor": null, "decoder": null,
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>",
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": true,
            "byte_fallback": true, "ignore_merges": false, "vocab": vocab,
            "merges": merges.iter().map(|m| vec![m.3, m.4]).collect::<Vec<_>>()}
    });
    json.to_string().parse().expect("tokenizer.json loads")
}

#[test]
fn token_ids_equal_hugging_face_llama_tokenizer() {
    let (tokens, scores, types) = train();
    assert!(tokens.len() > 500, "trained {} tokens", tokens.len());
    let hf = hf_tokenizer(&tokens, &scores, &types);
    let special = |text: &str, id| tokenizer::Special {
        text: text.into(),
        id,
        control: true,
    };
    let specials = vec![special("</s>", 2), special("<s>", 1)];
    let ours = SpmTokenizer::new(tokens, scores, &types, specials, Some(0), true);
    let mut byte_fallbacks = 0;
    for text in TEXTS {
        let want: Vec<u32> = hf.encode(*text, false).unwrap().get_ids().to_vec();
        let got = ours.encode(text, true);
        assert_eq!(got, want, "text {text:?}");
        byte_fallbacks += got.iter().filter(|&&id| (3..259).contains(&id)).count();
        // Decoding gives the text back with the prefixed space(s) (no special tokens here).
        if !text.contains("<s>") && !text.is_empty() {
            assert_eq!(ours.decode(&got), format!(" {text}"));
        }
    }
    assert!(
        byte_fallbacks > 20,
        "the texts exercise byte fallback ({byte_fallbacks})"
    );
}
