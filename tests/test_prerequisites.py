"""The README's first command (`cargo run --release -p vip-bridge -- demo`) must build on a
fresh Debian 12 with only Rust and a C compiler: the daemon neither links libpam nor builds
anything that needs its headers (libpam0g-dev is only for pam_vip.so)."""

import os
import subprocess

import harness


def test_the_daemon_does_not_link_libpam():
    exe = harness.find_binary("vip-bridge")
    out = subprocess.run(["ldd", exe], capture_output=True, text=True, timeout=30).stdout
    assert "libpam" not in out, out


def test_the_daemon_builds_no_pam_crate():
    p = subprocess.run(["cargo", "tree", "--offline", "-p", "vip-bridge", "-e", "normal,build",
                        "--prefix", "none"], capture_output=True, text=True, timeout=300,
                       cwd=harness.REPO)
    assert p.returncode == 0, p.stderr
    crates = {line.split()[0] for line in p.stdout.splitlines() if line.strip()}
    assert "vip-core" in crates, crates  # the tree is the real one
    assert not {c for c in crates if c.startswith("pam")}, sorted(crates)


def test_pam_vip_is_what_needs_libpam():
    # The other side of the claim: the module does link libpam (so the test above would see it).
    p = subprocess.run(["cargo", "tree", "--offline", "-p", "pam_vip", "-e", "normal,build",
                        "--prefix", "none"], capture_output=True, text=True, timeout=300,
                       cwd=harness.REPO)
    assert p.returncode == 0, p.stderr
    assert any(line.startswith("pam") for line in p.stdout.splitlines()
               if not line.startswith("pam_vip")), p.stdout
    module = os.path.join(os.path.dirname(harness.find_binary("vip-bridge")), "libpam_vip.so")
    out = subprocess.run(["ldd", module], capture_output=True, text=True, timeout=30).stdout
    assert "libpam.so" in out, out


def test_the_demo_is_a_visible_choice():
    """The simulator is linked only for `vip-bridge demo` (cargo feature `demo`, on by default);
    the Debian package builds without it."""
    def crates(*extra):
        p = subprocess.run(["cargo", "tree", "--offline", "-p", "vip-bridge", "-e", "normal",
                            "--prefix", "none", *extra], capture_output=True, text=True,
                           timeout=300, cwd=harness.REPO)
        assert p.returncode == 0, p.stderr
        return {line.split()[0] for line in p.stdout.splitlines() if line.strip()}

    assert "vip-sim" in crates()
    assert "vip-sim" not in crates("--no-default-features")
    with open(os.path.join(harness.REPO, "packaging", "build-deb.sh")) as f:
        assert "--no-default-features -p vip-bridge" in f.read()
