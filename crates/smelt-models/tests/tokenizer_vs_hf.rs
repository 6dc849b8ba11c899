//! smelt's BPE tokenizer against Hugging Face's `tokenizers` crate built from the same vocabulary
//! and merges (SmolLM2's GGUF metadata, written out as tokenizer.json), on multilingual,
//! whitespace-heavy, emoji-heavy and special-token text.

use smelt_models::tokenizer;

const TEXTS: &[&str] = &[
    "Once upon a time, there was a little girl named Emma who loved to read.",
    "Hello world! I'm here, you're there, we'll see; they'd've said it's fine.",
    "  leading spaces, trailing spaces   ",
    "tabs\tand\nnewlines\n\n\nand\r\nwindows line ends \n \n",
    "Numbers: 1234567890, 3.14159, -42, 1e-9, 2026-11-26, 0x1F.",
    "Grüße aus München! Ça va très bien, merci. ¿Dónde está la biblioteca?",
    "Привет, как дела? Съешь же ещё этих мягких французских булок.",
    "中文测试：我爱自然语言处理。日本語のテキストも試します。한국어도 있어요.",
    "العربية: مرحبا بالعالم. हिन्दी: नमस्ते दुनिया। ελληνικά: Γειά σου Κόσμε.",
    "Emoji: 😀😃😄 👩‍👩‍👧‍👦 🇩🇪 ❤️‍🔥 ✨🚀 (and text after).",
    "fn main() {\n    let x: Vec<u8> = vec![1, 2, 3];\n    println!(\"{:?}\", x);\n}",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>",
    "mixed<|endoftext|>specials<|im_end|>in the<|im_start|>middle",
    "a",
    " ",
    "",
    "'''",
    "!!!???...",
    "   \t  \n",
];

/// SmolLM2's tokenizer, and Hugging Face's built from the same vocabulary and merges.
fn both() -> (tokenizer::Tokenizer, tokenizers::Tokenizer) {
    let gguf = smelt_data::Fetcher::new(smelt_data::fetch::default_home(), true)
        .ensure_gguf(smelt_data::assets::find("smollm2-135m").unwrap())
        .unwrap();
    let file = smelt_gguf::GgufFile::open(&gguf).unwrap();
    let ours = tokenizer::from_gguf(&file.header).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let tokens: Vec<&str> = (0..ours.vocab_size() as u32)
        .map(|i| ours.token(i).unwrap())
        .collect();
    smelt_gguf::hf::write_tokenizer_files(&file.header, &tokens, tmp.path()).unwrap();
    let hf = tokenizers::Tokenizer::from_file(tmp.path().join("tokenizer.json")).unwrap();
    (ours, hf)
}

#[test]
fn token_ids_equal_hugging_face_tokenizers() {
    let (ours, hf) = both();
    for text in TEXTS {
        let want: Vec<u32> = hf.encode(*text, false).unwrap().get_ids().to_vec();
        let got = ours.encode(text, true);
        assert_eq!(got, want, "{text:?}");
        assert_eq!(ours.decode(&got), *text, "decode of {text:?}");
    }
    // Without special-token parsing, "<|im_start|>" is ordinary text.
    assert!(ours.encode("<|im_start|>", false).len() > 1);
}

/// Random texts over letters of several scripts, digits, punctuation, whitespace, emoji and
/// special tokens, and long runs of one letter or one special token (one word of 30,000
/// letters is merged in O(n log n); the special-token cut scans the text once per special).
#[test]
fn random_texts_and_long_runs_equal_hugging_face_tokenizers() {
    let (ours, hf) = both();
    let pool: Vec<&str> = vec![
        "a",
        "b",
        "e",
        "n",
        "t",
        "the",
        " ",
        "  ",
        "\n",
        "\t",
        "ü",
        "ß",
        "é",
        "я",
        "ж",
        "中",
        "文",
        "한",
        "ا",
        "ह",
        "0",
        "7",
        "42",
        ".",
        ",",
        "'",
        "'s",
        "!",
        "?",
        "(",
        "-",
        "😀",
        "👩‍👧",
        "🇩🇪",
        "<|im_start|>",
        "<|im_end|>",
        "<|endoftext|>",
        "<|im",
        "end|>",
    ];
    let mut rng = smelt_quant::rng::Rng::new(smelt_quant::rng::test_seed());
    for _ in 0..300 {
        let n = rng.next_u64() as usize % 60;
        let text: String = (0..n)
            .map(|_| pool[rng.next_u64() as usize % pool.len()])
            .collect();
        let want: Vec<u32> = hf.encode(text.as_str(), false).unwrap().get_ids().to_vec();
        assert_eq!(ours.encode(&text, true), want, "{text:?}");
        // Decoding is concatenative (the server appends each new token's bytes).
        let pieces: Vec<u8> = want.iter().flat_map(|&t| ours.decode_bytes(&[t])).collect();
        assert_eq!(String::from_utf8_lossy(&pieces), ours.decode(&want));
    }
    for text in [
        "a".repeat(30_000),
        format!("x{}", "ab".repeat(15_000)),
        "<|im_end|>".repeat(5_000),
        " 1".repeat(10_000),
    ] {
        let want: Vec<u32> = hf.encode(text.as_str(), false).unwrap().get_ids().to_vec();
        let got = ours.encode(&text, true);
        assert!(
            got == want,
            "a run of {} bytes: {} tokens vs {}",
            text.len(),
            got.len(),
            want.len()
        );
    }
}

/// Every token of the vocabulary, written out as text and encoded again (49,152 more texts,
/// among them every byte sequence the vocabulary names), as Hugging Face encodes it.
#[test]
fn every_tokens_text_encodes_as_hugging_face_encodes_it() {
    let (ours, hf) = both();
    for id in 0..ours.vocab_size() as u32 {
        if ours.is_special(id) {
            continue;
        }
        let text = ours.decode(&[id]);
        let want: Vec<u32> = hf.encode(text.as_str(), false).unwrap().get_ids().to_vec();
        assert_eq!(ours.encode(&text, false), want, "token {id} {text:?}");
    }
}
