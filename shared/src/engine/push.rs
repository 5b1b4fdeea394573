//! Pending pushes: coalescing and one shared poller.
//!
//! While a push is being sent for a user at a client, further requests for the same login join
//! it instead of sending a second push. Blocking-mode pushes stay joined until they finish and
//! are polled by one background task that batches up to 20 transactions per poll call every
//! `poll_interval`: no task or thread per login, and VIP sees at most `pending / 20` polls per
//! interval.
//!
//! Challenge-mode pushes are not polled in the background: VIP reports a transaction's final
//! state once (afterwards it answers 7005 "not found"), so whichever instance serves the next
//! round must be the one that asks, or a NAS failing over between instances would lose the
//! approval. They leave the board once sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::backend::{
    transaction_key, Backend, BackendError, PushStart, PushState, MAX_POLL_BATCH,
};

/// Where one coalesced push stands, as seen by the requests waiting on it.
#[derive(Debug, Clone)]
pub(crate) enum Phase {
    Starting,
    Sent {
        transaction_id: String,
        number: Option<String>,
    },
    Done(PushState),
    /// The push could not be sent; carries the service request id and error.
    StartFailed(Option<String>, BackendError),
}

struct Pending {
    key: String,
    /// Requests that joined and are still waiting: bounded, so one login session's
    /// retransmits cannot hold every front-door slot.
    joiners: std::sync::atomic::AtomicUsize,
    /// Blocking mode: poll in the background until final.
    poll: bool,
    transaction_id: Mutex<Option<String>>,
    /// VIP's requestId of the push call, for every login that started or joined it.
    request_id: Mutex<Option<String>>,
    deadline: Instant,
    phase: watch::Sender<Phase>,
}

#[derive(Default)]
struct Maps {
    /// Coalescing key (user + client) → the push in flight for it.
    by_key: HashMap<String, Arc<Pending>>,
    /// Transaction id ([`transaction_key`]) → the push being polled.
    by_txn: HashMap<String, Arc<Pending>>,
}

pub(crate) struct PushBoard {
    backend: Arc<dyn Backend>,
    maps: Mutex<Maps>,
    /// Final states of challenge-mode pushes a later round polled (VIP reports a final state
    /// once), for the rounds after it.
    finished: moka::sync::Cache<String, PushState>,
    wake: Arc<Notify>,
}

/// At most this many requests wait on one push besides the one that started it.
pub(crate) const MAX_JOINERS: usize = 4;

/// What `join_or_start` did.
pub(crate) enum Join {
    Joined(Joined),
    /// No push to join and the throttle refused a new one.
    Refused,
    /// The push has [`MAX_JOINERS`] waiting already.
    Crowded,
}

/// A handle on a push: wait on it for its phase to change.
pub(crate) struct Joined {
    pub rx: watch::Receiver<Phase>,
    /// True for the request that started the push, false for requests that joined it.
    pub started: bool,
    pending: Arc<Pending>,
}

impl Drop for Joined {
    fn drop(&mut self) {
        if !self.started {
            self.pending
                .joiners
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl Joined {
    /// The push call's requestId, once it was sent.
    pub fn request_id(&self) -> Option<String> {
        self.pending.request_id.lock().ok().and_then(|r| r.clone())
    }

    /// The push's transaction id, once it was sent.
    pub fn transaction_id(&self) -> Option<String> {
        self.pending
            .transaction_id
            .lock()
            .ok()
            .and_then(|t| t.clone())
    }
}

impl PushBoard {
    pub fn new(
        backend: Arc<dyn Backend>,
        poll_interval: Duration,
        keep_finished: Duration,
    ) -> Arc<Self> {
        let board = Arc::new(PushBoard {
            backend,
            maps: Mutex::new(Maps::default()),
            finished: moka::sync::Cache::builder()
                .time_to_live(keep_finished)
                .max_capacity(1_000_000)
                .build(),
            wake: Arc::new(Notify::new()),
        });
        tokio::spawn(poller(
            Arc::downgrade(&board),
            board.wake.clone(),
            poll_interval,
        ));
        board
    }

    /// Pushes being started or polled.
    pub fn pending(&self) -> usize {
        self.lock().by_key.len()
    }

    /// Whether a push is pending under `key` (a request would join it).
    pub fn is_pending(&self, key: &str) -> bool {
        self.lock().by_key.contains_key(key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Maps> {
        // A poisoned map only means another thread panicked mid-update of plain maps; the
        // data is still consistent enough to serve (entries are inserted/removed atomically).
        self.maps.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Joins the push pending under `key` (the same login session), or starts one when there
    /// is none and `may_start` allows it (the throttle check).
    pub fn join_or_start(
        self: &Arc<Self>,
        key: &str,
        push: PushStart,
        poll: bool,
        may_start: impl FnOnce() -> bool,
    ) -> Join {
        let pending = {
            let mut maps = self.lock();
            if let Some(p) = maps.by_key.get(key) {
                return join(p);
            }
            if !may_start() {
                return Join::Refused;
            }
            let (tx, _) = watch::channel(Phase::Starting);
            let p = Arc::new(Pending {
                key: key.to_owned(),
                joiners: std::sync::atomic::AtomicUsize::new(0),
                poll,
                transaction_id: Mutex::new(None),
                request_id: Mutex::new(None),
                deadline: Instant::now() + push.timeout,
                phase: tx,
            });
            maps.by_key.insert(key.to_owned(), p.clone());
            p
        };
        let rx = pending.phase.subscribe();
        // Sending runs on its own task so a cancelled request cannot strand the entry.
        let board = self.clone();
        let handle = Joined {
            rx,
            started: true,
            pending: pending.clone(),
        };
        tokio::spawn(async move { board.start(pending, push).await });
        Join::Joined(handle)
    }

    /// Joins a push another instance sent for the same login session (learnt from the shared
    /// store): polled here like one of ours until `deadline`, never sent again.
    pub fn adopt(self: &Arc<Self>, key: &str, transaction_id: &str, deadline: Instant) -> Join {
        let pending = {
            let mut maps = self.lock();
            let known = maps
                .by_key
                .get(key)
                .or_else(|| maps.by_txn.get(&transaction_key(transaction_id)));
            if let Some(p) = known {
                return join(p);
            }
            let (tx, _) = watch::channel(Phase::Sent {
                transaction_id: transaction_id.to_owned(),
                number: None,
            });
            let p = Arc::new(Pending {
                key: key.to_owned(),
                // This request is its first joiner (its handle gives the place back).
                joiners: std::sync::atomic::AtomicUsize::new(1),
                poll: true,
                transaction_id: Mutex::new(Some(transaction_id.to_owned())),
                request_id: Mutex::new(None),
                deadline,
                phase: tx,
            });
            maps.by_key.insert(key.to_owned(), p.clone());
            maps.by_txn
                .insert(transaction_key(transaction_id), p.clone());
            p
        };
        self.wake.notify_one();
        Join::Joined(Joined {
            rx: pending.phase.subscribe(),
            started: false,
            pending,
        })
    }

    async fn start(self: Arc<Self>, pending: Arc<Pending>, push: PushStart) {
        let (request_id, result) = self.backend.start_push(&push).await;
        match result {
            Ok(ticket) => {
                if let Ok(mut r) = pending.request_id.lock() {
                    r.clone_from(&request_id);
                }
                if let Ok(mut t) = pending.transaction_id.lock() {
                    *t = Some(ticket.transaction_id.clone());
                }
                {
                    let mut maps = self.lock();
                    if pending.poll {
                        maps.by_txn
                            .insert(transaction_key(&ticket.transaction_id), pending.clone());
                    } else {
                        maps.by_key.remove(&pending.key);
                    }
                }
                pending.phase.send_replace(Phase::Sent {
                    transaction_id: ticket.transaction_id,
                    number: ticket.number,
                });
                if pending.poll {
                    self.wake.notify_one();
                }
            }
            Err(e) => {
                self.lock().by_key.remove(&pending.key);
                pending
                    .phase
                    .send_replace(Phase::StartFailed(request_id, e));
            }
        }
    }

    /// The final state of a push this instance saw finish, if any.
    pub fn finished(&self, transaction_id: &str) -> Option<PushState> {
        self.finished.get(&transaction_key(transaction_id))
    }

    /// Records a final state learned outside the poller (a direct poll by a second round).
    pub fn remember(&self, transaction_id: &str, state: PushState) {
        self.finished.insert(transaction_key(transaction_id), state);
    }

    fn finish(&self, pending: &Arc<Pending>, state: PushState) {
        {
            let mut maps = self.lock();
            // Only polled (blocking) pushes finish here, and nothing asks for their final
            // state later (no State names them): it is not kept.
            if let Some(txn) = pending.transaction_id.lock().ok().and_then(|t| t.clone()) {
                maps.by_txn.remove(&transaction_key(&txn));
            }
            // Only remove the key if it still points at this push.
            if maps
                .by_key
                .get(&pending.key)
                .is_some_and(|p| Arc::ptr_eq(p, pending))
            {
                maps.by_key.remove(&pending.key);
            }
        }
        pending.phase.send_replace(Phase::Done(state));
    }

    /// One polling pass over every sent push.
    async fn poll_once(&self) {
        let now = Instant::now();
        let sent: Vec<(String, Arc<Pending>)> = self
            .lock()
            .by_txn
            .iter()
            .map(|(t, p)| (t.clone(), p.clone()))
            .collect();
        let mut live = Vec::with_capacity(sent.len());
        for (txn, p) in sent {
            if p.deadline <= now {
                self.finish(&p, PushState::Expired);
            } else {
                live.push(txn);
            }
        }
        let mut calls = tokio::task::JoinSet::new();
        for chunk in live.chunks(MAX_POLL_BATCH) {
            let ids = chunk.to_vec();
            let backend = self.backend.clone();
            calls.spawn(async move { backend.poll_pushes(&ids).await });
        }
        while let Some(joined) = calls.join_next().await {
            match joined {
                Ok((_, Ok(states))) => {
                    for (txn, state) in states {
                        if state.is_final() {
                            let p = self.lock().by_txn.get(&transaction_key(&txn)).cloned();
                            if let Some(p) = p {
                                self.finish(&p, state);
                            }
                        }
                    }
                }
                // Unreachable or garbage: keep the pushes pending; their deadline still holds.
                Ok((request_id, Err(e))) => {
                    warn!(request_id = request_id.as_deref().unwrap_or(""), error = %e, "push poll failed; will retry")
                }
                Err(e) => warn!(error = %e, "push poll task failed"),
            }
        }
    }
}

/// Joins `p` as one more waiting request, unless [`MAX_JOINERS`] wait already.
fn join(p: &Arc<Pending>) -> Join {
    use std::sync::atomic::Ordering;
    if p.joiners.fetch_add(1, Ordering::Relaxed) >= MAX_JOINERS {
        p.joiners.fetch_sub(1, Ordering::Relaxed);
        return Join::Crowded;
    }
    Join::Joined(Joined {
        rx: p.phase.subscribe(),
        started: false,
        pending: p.clone(),
    })
}

async fn poller(board: Weak<PushBoard>, wake: Arc<Notify>, interval: Duration) {
    loop {
        // Register for a wake-up before looking, so a push sent in between is not missed.
        let woken = wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let idle = match board.upgrade() {
            Some(b) => b.lock().by_txn.is_empty(),
            None => return,
        };
        if idle {
            // No strong reference is held while idle: dropping the engine ends this task.
            let _ = tokio::time::timeout(Duration::from_secs(1), woken).await;
            continue;
        }
        tokio::time::sleep(interval).await;
        let Some(b) = board.upgrade() else { return };
        debug!(pending = b.lock().by_txn.len(), "polling pushes");
        b.poll_once().await;
    }
}
