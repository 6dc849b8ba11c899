//! Progress bars for long work (hidden with `--quiet`).

/// A bar counting `total` `unit`s, with a message slot for a running value.
pub fn bar(total: u64, unit: &str, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "[{{bar:30}}] {{pos}}/{{len}} {unit} {{elapsed}} (eta {{eta}}) {{msg}}"
        ))
        .expect("valid template"),
    );
    bar
}
