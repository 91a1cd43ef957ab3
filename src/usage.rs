//! Failures that are the caller's to fix: a value no run could accept, found
//! only once the library looks (a capacity under the formatter's minimum, a
//! memory the guest cannot boot in, a malformed plan). The binary exits 2
//! for them, as for clap's usage errors, and 1 for every other failure.

/// A request no run could satisfy; the message says what to pass instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub String);

/// Whether `err`, or anything under its context, is a [`UsageError`].
pub(crate) fn is_usage(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| cause.is::<UsageError>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn a_usage_error_stays_one_under_context() {
        let err: anyhow::Error = UsageError("pass --capacity 300M".into()).into();
        let wrapped = Err::<(), _>(err).context("failed to build").unwrap_err();
        assert!(is_usage(&wrapped));
        assert!(!is_usage(&anyhow::anyhow!("pass --capacity 300M")));
    }
}
