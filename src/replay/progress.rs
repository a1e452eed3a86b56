//! The progress bar `replay` draws on stderr while it reads an input: the reader
//! tells how far it is ([`ReadProgress`]); this draws it, only on a terminal, for a
//! file of known size that is not followed.

use crate::source::file::input::ReadProgress;

/// The bar of one input (or nothing, when off).
#[derive(Debug)]
pub struct ProgressBar {
    on: bool,
    bar: Option<indicatif::ProgressBar>,
}

impl ProgressBar {
    /// A bar that draws only when `on` (stderr is a terminal and the input is not
    /// followed).
    pub fn new(on: bool) -> Self {
        Self { on, bar: None }
    }
}

impl ReadProgress for ProgressBar {
    fn begin(&mut self, name: &str, size: Option<u64>) {
        self.bar = size.filter(|n| self.on && *n > 0).map(|n| {
            let bar = indicatif::ProgressBar::new(n);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_message(name.to_owned());
            bar
        });
    }

    fn advance(&mut self, offset: u64) {
        if let Some(b) = &self.bar {
            b.set_position(offset);
        }
    }

    fn end(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
