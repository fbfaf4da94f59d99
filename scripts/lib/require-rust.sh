# shellcheck shell=bash
# Sourced by scripts/up and scripts/test-all. require_rust REPO: returns 0
# when cargo and a rustc at least as new as the workspace's rust-version are
# on PATH (after adding rustup's ~/.cargo/bin if needed); otherwise says how
# to get a current toolchain and returns 2. Debian 12's own cargo/rustc
# (1.63) are far older than the workspace needs, so it never suggests them.
require_rust() {
  local repo=$1 need have
  need=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' "$repo/Cargo.toml" | head -n 1)
  # rustup installs into ~/.cargo/bin, which a shell started before the
  # installation (or sudo's secure_path) does not have.
  if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null || ! command -v rustc >/dev/null; then
    cat >&2 <<MSG
cargo not found. pgcluster needs Rust $need or newer; Debian 12's cargo and
rustc (1.63) are too old. Install a current toolchain with rustup, as the user
who builds (no root needed):
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  . "\$HOME/.cargo/env"
then run this script again.
MSG
    return 2
  fi
  have=$(rustc --version | awk '{print $2}')
  have=${have%%-*}
  if ! printf '%s\n%s\n' "$need" "$have" | sort -V -C; then
    cat >&2 <<MSG
rustc $have ($(command -v rustc)) is older than the workspace's rust-version $need
(Debian 12's packaged Rust is 1.63). With rustup: \`rustup update stable\`;
otherwise install rustup (https://rustup.rs) and put ~/.cargo/bin first on PATH.
MSG
    return 2
  fi
}
