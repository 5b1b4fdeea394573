#!/usr/bin/env bash
# Smoke test of the Debian package: build it with cargo-deb (dev profile: fast to build; the
# package layout is what is tested, not the optimiser), install it, run the installed binary,
# check the packaged example configuration offline, remove the package. Run as root on Debian
# (CI does). Prints how long each step took.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never DEBIAN_FRONTEND=noninteractive
started=$SECONDS
step() { printf '\n==> %s (%ss)\n' "$*" "$((SECONDS - started))"; }

PROFILE=${VIP_BRIDGE_DEB_PROFILE:-dev}
target_dir=$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

if ! cargo deb --version >/dev/null 2>&1; then
  step "cargo install cargo-deb"
  cargo install cargo-deb --locked
fi

step "cargo build --profile $PROFILE (vip-bridge, pam_vip)"
cargo build --profile "$PROFILE" -p vip-bridge -p pam_vip

step "cargo deb --profile $PROFILE"
deb=$(cargo deb -p vip-bridge --profile "$PROFILE" --no-build --output "$target_dir/debian/" \
  --strip | tail -n 1)
test -f "$deb"
dpkg-deb --info "$deb" | sed -n '1,20p'
dpkg-deb --contents "$deb"

cleanup() { dpkg -r vip-bridge >/dev/null 2>&1 || true; }
trap cleanup EXIT

step "dpkg -i"
dpkg -i "$deb"

step "installed files"
test -x /usr/bin/vip-bridge
test -f /usr/lib/x86_64-linux-gnu/security/pam_vip.so
test -f /usr/lib/systemd/system/vip-bridge.service
test -f /usr/share/doc/vip-bridge/README.md
test -f /usr/share/doc/vip-bridge/pam.d/sshd
ls /usr/share/man/man1/vip-bridge.1*
getent passwd vip-bridge
test "$(stat -c '%U:%G %a' /etc/vip-bridge/vip-bridge.toml)" = "root:vip-bridge 640"
dpkg-query -W -f='${Conffiles}\n' vip-bridge | grep -q /etc/vip-bridge/vip-bridge.toml

step "vip-bridge --version"
/usr/bin/vip-bridge --version

step "vip-bridge check-config --offline (the packaged example)"
/usr/bin/vip-bridge check-config --offline --config /etc/vip-bridge/vip-bridge.toml
# As the service runs it (ExecStartPre), as the vip-bridge user.
runuser -u vip-bridge -- /usr/bin/vip-bridge check-config --offline \
  --config /etc/vip-bridge/vip-bridge.toml >/dev/null

step "dpkg -r"
trap - EXIT
dpkg -r vip-bridge
test ! -e /usr/bin/vip-bridge
# The conffile stays until purge.
test -f /etc/vip-bridge/vip-bridge.toml
dpkg -P vip-bridge
test ! -e /etc/vip-bridge/vip-bridge.toml

step "deb smoke test passed"
