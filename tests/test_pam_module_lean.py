"""pam_vip.so carries only its protocol: what runs inside sshd and sudo is the vip-ipc crate,
serde and libc, never the daemon's runtime, HTTP client, TLS or engine. The release module
links nothing but libc, libpam and libgcc, and exports only the PAM entry points."""

import os
import subprocess

import harness

# What must never be linked into a PAM module (the daemon's side).
DAEMON_ONLY = {"vip-core", "tokio", "reqwest", "hyper", "rustls", "ring", "quick-xml", "moka",
               "governor", "ldap3", "prometheus-client", "tracing"}
ALLOWED_LIBS = {"libc.so.6", "libpam.so.0", "libgcc_s.so.1", "ld-linux-x86-64.so.2",
                "ld-linux-aarch64.so.1"}
PAM_ENTRY_POINTS = {"pam_sm_authenticate", "pam_sm_setcred", "pam_sm_acct_mgmt",
                    "pam_sm_open_session", "pam_sm_close_session", "pam_sm_chauthtok"}


def tree(package):
    p = subprocess.run(["cargo", "tree", "--offline", "-p", package, "-e", "normal",
                        "--prefix", "none"], capture_output=True, text=True, timeout=300,
                       cwd=harness.REPO)
    assert p.returncode == 0, p.stderr
    return {line.split()[0] for line in p.stdout.splitlines() if line.strip()}


def test_the_module_depends_on_the_protocol_crate_alone():
    crates = tree("pam_vip")
    assert {"vip-ipc", "pam-bindings", "libc"} <= crates, sorted(crates)
    assert not crates & DAEMON_ONLY, sorted(crates & DAEMON_ONLY)
    # The check sees the daemon's crates where they are.
    assert {"vip-core", "tokio", "rustls"} <= tree("vip-bridge")


def test_the_release_module_links_and_exports_only_what_pam_needs():
    p = subprocess.run(["cargo", "build", "--offline", "--release", "-p", "pam_vip"],
                       capture_output=True, text=True, timeout=900, cwd=harness.REPO)
    assert p.returncode == 0, p.stderr[-3000:]
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(harness.REPO, "target"))
    module = os.path.join(target, "release", "libpam_vip.so")
    dyn = subprocess.run(["readelf", "-d", module], capture_output=True, text=True,
                         timeout=30).stdout
    needed = {line.split("[", 1)[1].rstrip("]") for line in dyn.splitlines() if "(NEEDED)" in line}
    assert "libpam.so.0" in needed and "libc.so.6" in needed, dyn
    assert needed <= ALLOWED_LIBS, sorted(needed - ALLOWED_LIBS)
    syms = subprocess.run(["nm", "-D", "--defined-only", module], capture_output=True,
                          text=True, timeout=30).stdout
    functions = {line.split()[-1] for line in syms.splitlines()
                 if len(line.split()) == 3 and line.split()[1] in ("T", "t", "W", "i")}
    assert functions == PAM_ENTRY_POINTS, sorted(functions ^ PAM_ENTRY_POINTS)
    # Small, as a protocol client should be (the daemon's engine would be megabytes).
    assert os.path.getsize(module) < 4 * 1024 * 1024, os.path.getsize(module)
