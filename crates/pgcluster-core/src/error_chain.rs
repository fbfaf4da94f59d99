//! One line for an error and its causes, for logs, status and the CLI.

/// `error` and its sources, `: `-separated (the messages never repeat their
/// source, so nothing is said twice).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("failed to start the server")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn every_cause_on_one_line() {
        let e = Outer(std::io::Error::other("port 5432 in use"));
        assert_eq!(
            error_chain(&e),
            "failed to start the server: port 5432 in use"
        );
    }
}
