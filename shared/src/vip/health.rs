//! Is VIP down? The service-neutral health monitor ([`crate::https::health`]) probing VIP with
//! getServerTime on a slot of its own.

use super::transport::VIP;
use super::VipClient;
use std::future::Future;
use std::pin::Pin;

use crate::https::health::{Probe, ProbeResult};
use crate::https::Service;

pub use crate::https::health::{Health, HealthMonitor};

impl Probe for VipClient {
    fn service(&self) -> &'static Service {
        &VIP
    }

    fn probe(&self) -> Pin<Box<dyn Future<Output = ProbeResult> + Send + '_>> {
        Box::pin(async move {
            self.probe_server_time()
                .await
                .map(|_| ())
                .map_err(|e| (e.class(), e.to_string()))
        })
    }
}
