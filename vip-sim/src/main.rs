//! `vip-sim`: run the VIP User Services simulator, or generate its test certificates.

use std::process::ExitCode;

// The simulator stands in for a remote service but shares the benchmark machine's cores with
// vip-bridge: keep its allocation cost low.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Errors are one line on stderr, `vip-sim: what: why`, and exit status 1 (never a Rust
/// `Debug` dump or a backtrace, whatever `RUST_BACKTRACE` says).
fn main() -> ExitCode {
    vip_sim::cli::main(
        "vip-sim",
        "A faithful Symantec VIP User Services simulator (SOAP over mutual TLS)",
        |path, overrides| async move {
            let mut cfg = vip_sim::SimConfig::load(&path)?;
            overrides.apply(&mut cfg.server);
            let sim = vip_sim::Sim::start(cfg).await?;
            Ok(vip_sim::cli::Started {
                listen: sim.addr(),
                admin: sim.admin_addr(),
                stop: Box::pin(sim.shutdown()),
            })
        },
    )
}
