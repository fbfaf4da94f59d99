//! One module per subcommand, each with `Args` and `exec()`.

pub mod access;
pub mod crd;
pub mod render;
pub mod init;
pub mod validate;
