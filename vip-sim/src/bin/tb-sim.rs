//! `tb-sim`: run the TrustBuilder MFA (inWebo) simulator, or generate its test certificates.

use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Errors are one line on stderr, `tb-sim: what: why`, and exit status 1.
fn main() -> ExitCode {
    vip_sim::cli::main(
        "tb-sim",
        "A TrustBuilder MFA (inWebo) simulator: REST authentication and provisioning SOAP over mutual TLS",
        |path, overrides| async move {
            let mut cfg = vip_sim::TbSimConfig::load(&path)?;
            overrides.apply(&mut cfg.server);
            let sim = vip_sim::TbSim::start(cfg).await?;
            Ok(vip_sim::cli::Started {
                listen: sim.addr(),
                admin: sim.admin_addr(),
                stop: Box::pin(sim.shutdown()),
            })
        },
    )
}
