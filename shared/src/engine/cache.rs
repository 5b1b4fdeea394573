//! Short-lived caches the engine keeps (moka).
//!
//! Only facts about users are cached (which factors they have), briefly, so a challenge menu or
//! an SMS send does not cost a getUserInfo each time. No authentication result is ever cached:
//! a success cache is how other bridges let a bare request in without the phone.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::backend::{Answer, Backend, BackendError, UserFactors};

/// getUserInfo answers per user (case-folded), concurrent look-ups coalesced into one call.
pub struct UserFactorsCache {
    cache: moka::future::Cache<String, UserFactors>,
}

impl UserFactorsCache {
    pub fn new(ttl: Duration) -> Self {
        UserFactorsCache {
            cache: moka::future::Cache::builder()
                .time_to_live(ttl)
                .max_capacity(100_000)
                .build(),
        }
    }

    /// Drops what is known of `user` (a credential was just added).
    pub async fn forget(&self, user: &str) {
        self.cache.invalidate(&user.to_lowercase()).await;
    }

    /// The user's factors, from the cache or the backend. Failures are not cached.
    pub async fn get(&self, backend: &Arc<dyn Backend>, user: &str) -> Answer<UserFactors> {
        let key = user.to_lowercase();
        if let Some(hit) = self.cache.get(&key).await {
            return (None, Ok(hit));
        }
        let mut request_id = None;
        let result = self
            .cache
            .try_get_with(key, async {
                let (id, r) = backend.user_factors(user).await;
                request_id = id;
                r
            })
            .await
            .map_err(|e: Arc<BackendError>| (*e).clone());
        (request_id, result)
    }
}
