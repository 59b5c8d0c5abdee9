//! Errors shown with their causes.
//!
//! Library errors keep what caused them as their `source` (so `{:#}` and
//! anyhow chains show it) instead of folding it into their own message.
//! Where one line of text is all there is room for (a log field, the sync
//! state `hashfed peer list` prints), [`Chain`] writes the whole chain.

use std::fmt;

/// Displays an error and its sources as `error: cause: cause`.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(cause) = next {
            write!(f, ": {cause}")?;
            next = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Chain;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn every_cause_is_written() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(Chain(&e).to_string(), "outer: inner");
    }
}
