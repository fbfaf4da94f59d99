//! One module per subcommand, each with `Args` and `exec()`.

pub mod access;
pub mod agent;
pub mod apply;
pub mod bench;
pub mod crd;
pub mod down;
pub mod failover;
pub mod fence;
pub mod init;
pub mod kube;
pub mod local;
pub mod psql;
pub mod render;
pub mod router;
pub mod status;
pub mod switchover;
pub mod up;
pub mod validate;
