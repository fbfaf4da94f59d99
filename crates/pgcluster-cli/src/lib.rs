//! The pgcluster CLI: argument parsing, output and wiring only.
