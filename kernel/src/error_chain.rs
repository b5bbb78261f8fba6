//! One line for an error and its causes, each cause said once.
//!
//! Many errors put their source's text into their own message *and* return it as `source()`
//! (thiserror's `{0}` with `#[from]`), so printing the whole chain repeats it
//! (`No such file or directory (os error 2): No such file or directory (os error 2)`). This
//! prints a cause only when the text so far does not already say it.

/// `error: cause: cause`, skipping causes already contained in what precedes them.
pub fn render(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// [`render`] for an `anyhow::Error` (the binary's edge).
pub fn render_anyhow(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("cannot read key: {0}")]
        Echoing(#[source] std::io::Error),
        #[error("cannot read key")]
        Silent(#[source] std::io::Error),
    }

    fn io() -> std::io::Error {
        std::io::Error::from_raw_os_error(2)
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let text = io().to_string();
        assert_eq!(
            render(&Outer::Echoing(io())),
            format!("cannot read key: {text}")
        );
        assert_eq!(
            render(&Outer::Silent(io())),
            format!("cannot read key: {text}")
        );
        let wrapped = anyhow::Error::new(Outer::Echoing(io())).context("starting the kernel");
        assert_eq!(
            render_anyhow(&wrapped),
            format!("starting the kernel: cannot read key: {text}")
        );
        let plain = anyhow::Error::new(Outer::Silent(io())).context("starting the kernel");
        assert_eq!(
            render_anyhow(&plain),
            format!("starting the kernel: cannot read key: {text}")
        );
    }
}
