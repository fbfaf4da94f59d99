//! A deterministic, seeded simulator of a whole cluster (work in progress).
