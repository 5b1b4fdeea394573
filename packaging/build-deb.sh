#!/usr/bin/env bash
# Builds the Debian package of vip-bridge: the daemon, pam_vip.so (into the multiarch PAM
# directory of the architecture being built, /usr/lib/<triple>/security/), the systemd unit,
# the packaged configuration, the pam.d and sshd_config recipes, the pam-auth-update profile,
# the man pages and the documentation. One command, from the repository root:
#
#   bash packaging/build-deb.sh          # prints the path of the .deb (target/debian/...)
#
# Needs what the README's "Prerequisites" names (Rust, a C compiler, libpam0g-dev) and
# cargo-deb (installed with `cargo install cargo-deb --locked` when missing, unless
# VIP_BRIDGE_NO_INSTALL=1). Release profile (cargo-deb's default); set CARGO_TARGET_DIR as
# usual to build elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

say() { printf '==> %s\n' "$*" >&2; }

if ! cargo deb --version >/dev/null 2>&1; then
    if [ "${VIP_BRIDGE_NO_INSTALL:-0}" = 1 ]; then
        echo "build-deb.sh: cargo-deb is missing: cargo install cargo-deb --locked" >&2
        exit 2
    fi
    say "cargo install cargo-deb --locked"
    cargo install cargo-deb --locked >&2
fi

target_dir=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

# --no-default-features: without the `demo` feature, so the packaged daemon does not link the
# VIP simulator (`vip-bridge demo` from the package says how to get it). A later
# `cargo run --release -p vip-bridge -- demo` rebuilds target/release/vip-bridge with it.
say "cargo build --release --no-default-features -p vip-bridge -p pam_vip"
cargo build --release --no-default-features -p vip-bridge -p pam_vip >&2

# The man pages ship from packaging/man/ (a test keeps them equal to `vip-bridge man`).
# --multiarch=foreign: assets under usr/lib/ go to usr/lib/<triple>/ of the target (the PAM
# module's security/ directory); the daemon's interface does not depend on the architecture.
# cargo-deb then warns that a multiarch package holds both a library and binaries: that rule
# is for Multi-Arch: same (co-installable) packages; this one is foreign, and pam_vip.so is a
# plug-in for this machine's PAM, not a library other packages link.
say "cargo deb"
deb=$(cargo deb -p vip-bridge --no-build --multiarch=foreign --output "$target_dir/debian/" \
    | tail -n 1)
test -f "$deb"
say "built $deb"
echo "$deb"
