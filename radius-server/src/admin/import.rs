//! `vip-bridge admin import users.csv`: onboarding many VIP users at once.
//!
//! Safe to re-run: a user VIP already has (6002) is counted as present, not as a failure. Every
//! row is checked before anything is sent; malformed rows are reported with their line and
//! never sent, the others still are. Calls run with bounded concurrency (`--concurrency`, at
//! most `vip.max_in_flight`), a progress bar on a terminal.

use std::collections::HashSet;
use std::future::Future;
use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;

/// What creating one user came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Created {
    New {
        request_id: String,
    },
    /// VIP already has the user (status 6002): nothing to do.
    AlreadyPresent {
        request_id: String,
    },
    /// VIP refused, or could not be reached: `why` says which, in words.
    Failed {
        request_id: String,
        why: String,
    },
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The one call an import makes; the VIP client in production, a fake in tests.
pub trait CreatesUsers: Send + Sync + 'static {
    fn create_user<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Created>;
}

/// A row that was not sent, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Malformed {
    pub line: u64,
    pub reason: String,
}

/// A user VIP did not create.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub line: u64,
    pub user_id: String,
    pub request_id: String,
    pub why: String,
}

/// The users a file asks for, each with its line, once checked.
#[derive(Debug, Default)]
pub struct Plan {
    pub rows: Vec<(u64, String)>,
    pub malformed: Vec<Malformed>,
}

#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    pub rows: usize,
    pub created: usize,
    pub already_present: usize,
    pub malformed: Vec<Malformed>,
    pub failed: Vec<Failure>,
    /// Nothing was sent (`--dry-run`).
    pub dry_run: bool,
}

impl ImportReport {
    pub fn ok(&self) -> bool {
        self.malformed.is_empty() && self.failed.is_empty()
    }

    /// The summary an admin reads.
    pub fn human(&self) -> String {
        let mut out = String::new();
        if self.dry_run {
            out.push_str(&format!(
                "dry run: {} rows, {} would be sent to VIP, {} malformed (nothing was sent)\n",
                self.rows,
                self.rows - self.malformed.len(),
                self.malformed.len()
            ));
        } else {
            out.push_str(&format!(
                "{} rows: {} created, {} already present, {} failed, {} malformed\n",
                self.rows,
                self.created,
                self.already_present,
                self.failed.len(),
                self.malformed.len()
            ));
        }
        for m in &self.malformed {
            out.push_str(&format!("line {}: not sent: {}\n", m.line, m.reason));
        }
        for f in &self.failed {
            out.push_str(&format!(
                "line {}: {}: {} (requestId {})\n",
                f.line, f.user_id, f.why, f.request_id
            ));
        }
        if !self.failed.is_empty() {
            out.push_str("Run the same import again to retry the failed rows: users already created are skipped.\n");
        }
        out
    }
}

/// The columns a file may have; `user_id` is required.
const COLUMNS: [&str; 1] = ["user_id"];

/// VIP's user id: 1–128 characters (reference: vip-user-services.md, "Value formats").
const MAX_USER_ID_CHARS: usize = 128;

/// A file larger than this is refused whole (a million users is about 30 MiB).
const MAX_FILE_BYTES: u64 = 256 << 20;

/// Reads and checks the whole file. An unreadable file or a header without `user_id` is an
/// error for the whole import (nothing is sent); a bad row is reported and skipped.
pub fn plan(mut input: impl Read) -> Result<Plan, String> {
    let mut text = Vec::new();
    input
        .by_ref()
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "larger than {} MiB: split it into smaller files",
            MAX_FILE_BYTES >> 20
        ));
    }
    let line_of = |pos: Option<&csv::Position>| pos.map(|p| line_at(&text, p.byte())).unwrap_or(0);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .flexible(false)
        .from_reader(text.as_slice());
    let headers = reader
        .headers()
        .map_err(|e| format!("cannot read the header line: {e}"))?
        .clone();
    let mut user_col = None;
    for (i, h) in headers.iter().enumerate() {
        let name = h.to_ascii_lowercase();
        match name.as_str() {
            "user_id" => user_col = Some(i),
            _ => {
                return Err(format!(
                    "column {h:?} is not known (known: {}); the first line must name the columns, e.g. `user_id`",
                    COLUMNS.join(", ")
                ))
            }
        }
    }
    let user_col = user_col
        .ok_or_else(|| "the first line must name the columns and include `user_id`".to_owned())?;
    let mut plan = Plan::default();
    let mut seen = HashSet::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = line_of(e.position());
                plan.malformed.push(Malformed {
                    line,
                    reason: match e.kind() {
                        csv::ErrorKind::UnequalLengths {
                            expected_len, len, ..
                        } => format!("{len} fields where the header has {expected_len}"),
                        csv::ErrorKind::Utf8 { .. } => "not UTF-8".to_owned(),
                        _ => e.to_string(),
                    },
                });
                continue;
            }
        };
        let line = line_of(record.position());
        let user = record.get(user_col).unwrap_or("");
        if let Err(reason) = check_user_id(user) {
            plan.malformed.push(Malformed { line, reason });
            continue;
        }
        // VIP looks user ids up without regard to case.
        if !seen.insert(user.to_lowercase()) {
            plan.malformed.push(Malformed {
                line,
                reason: format!("{user:?} appears earlier in the file"),
            });
            continue;
        }
        plan.rows.push((line, user.to_owned()));
    }
    Ok(plan)
}

/// The 1-based line of the record starting at byte `at`. (The reader's own line count puts a
/// record after blank lines on the first blank one.)
fn line_at(text: &[u8], at: u64) -> u64 {
    let mut at = (at as usize).min(text.len());
    while at < text.len() && (text[at] == b'\n' || text[at] == b'\r') {
        at += 1;
    }
    1 + text[..at].iter().filter(|&&b| b == b'\n').count() as u64
}

fn check_user_id(user: &str) -> Result<(), String> {
    if user.is_empty() {
        return Err("user_id is empty".into());
    }
    let n = user.chars().count();
    if n > MAX_USER_ID_CHARS {
        return Err(format!(
            "user_id has {n} characters; VIP allows at most {MAX_USER_ID_CHARS}"
        ));
    }
    if user.chars().any(char::is_control) {
        return Err("user_id contains a control character".into());
    }
    Ok(())
}

/// What an import would do, without sending anything.
pub fn dry_run(plan: Plan) -> ImportReport {
    ImportReport {
        rows: plan.rows.len() + plan.malformed.len(),
        malformed: plan.malformed,
        dry_run: true,
        ..ImportReport::default()
    }
}

/// Sends the plan's rows, `concurrency` at a time; `progress` is called after each answer.
pub async fn run(
    vip: Arc<dyn CreatesUsers>,
    plan: Plan,
    concurrency: usize,
    progress: impl Fn() + Send + Sync + 'static,
) -> ImportReport {
    let mut report = ImportReport {
        rows: plan.rows.len() + plan.malformed.len(),
        malformed: plan.malformed,
        ..ImportReport::default()
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<(u64, String)>(concurrency.max(1));
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let progress = Arc::new(progress);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (vip, rx, progress) = (vip.clone(), rx.clone(), progress.clone());
        workers.spawn(async move {
            let mut done = Vec::new();
            loop {
                let next = rx.lock().await.recv().await;
                let Some((line, user)) = next else { break };
                let outcome = vip.create_user(&user).await;
                progress();
                done.push((line, user, outcome));
            }
            done
        });
    }
    for row in plan.rows {
        if tx.send(row).await.is_err() {
            break;
        }
    }
    drop(tx);
    let mut failed = Vec::new();
    while let Some(joined) = workers.join_next().await {
        // A worker that panicked lost its rows: the counts below would not add up, so say so.
        let Ok(done) = joined else {
            failed.push(Failure {
                line: 0,
                user_id: String::new(),
                request_id: String::new(),
                why: "an import worker stopped unexpectedly; re-run the import".into(),
            });
            continue;
        };
        for (line, user_id, outcome) in done {
            match outcome {
                Created::New { .. } => report.created += 1,
                Created::AlreadyPresent { .. } => report.already_present += 1,
                Created::Failed { request_id, why } => failed.push(Failure {
                    line,
                    user_id,
                    request_id,
                    why,
                }),
            }
        }
    }
    failed.sort_by_key(|f| f.line);
    report.failed = failed;
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// VIP as the import sees it: a set of users, some refusals, a limit on calls at once.
    #[derive(Default)]
    struct FakeVip {
        users: Mutex<HashSet<String>>,
        refuse: HashSet<String>,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
        calls: AtomicUsize,
    }

    impl CreatesUsers for FakeVip {
        fn create_user<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Created> {
            Box::pin(async move {
                let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.max_in_flight.fetch_max(now, Ordering::SeqCst);
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                let request_id = format!("rid{n}");
                if self.refuse.contains(user_id) {
                    return Created::Failed {
                        request_id,
                        why: "VIP refused: 601B Operation not allowed in current user status."
                            .into(),
                    };
                }
                if self.users.lock().unwrap().insert(user_id.to_lowercase()) {
                    Created::New { request_id }
                } else {
                    Created::AlreadyPresent { request_id }
                }
            })
        }
    }

    fn file(rows: &[&str]) -> String {
        let mut s = String::from("user_id\n");
        for r in rows {
            s.push_str(r);
            s.push('\n');
        }
        s
    }

    #[test]
    fn malformed_rows_are_named_by_line_and_skipped() {
        let long = "x".repeat(129);
        let text = format!(
            "user_id\nalice\n\n\"\"\n{long}\nbob,extra\nAlice\n# a comment\ncarol\n\"d\u{7}ave\"\n"
        );
        let plan = plan(text.as_bytes()).unwrap();
        let users: Vec<_> = plan.rows.iter().map(|(_, u)| u.as_str()).collect();
        assert_eq!(users, ["alice", "carol"]);
        assert_eq!(plan.rows[0].0, 2, "lines count the header");
        let reasons: Vec<_> = plan
            .malformed
            .iter()
            .map(|m| (m.line, m.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 5, "{reasons:?}");
        assert!(reasons.contains(&(4, "user_id is empty")), "{reasons:?}");
        assert_eq!(line_at(b"a\n\n\nb\n", 2), 4);
        assert!(reasons
            .iter()
            .any(|(l, r)| *l == 5 && r.contains("129 characters")));
        assert!(reasons
            .iter()
            .any(|(l, r)| *l == 6 && r.contains("2 fields")));
        assert!(reasons
            .iter()
            .any(|(l, r)| *l == 7 && r.contains("earlier")));
        assert!(reasons
            .iter()
            .any(|(l, r)| *l == 10 && r.contains("control")));
    }

    #[test]
    fn a_bad_header_stops_the_import_before_anything_is_sent() {
        assert!(plan("usr_id\nalice\n".as_bytes())
            .unwrap_err()
            .contains("\"usr_id\" is not known"));
        assert!(plan("".as_bytes()).unwrap_err().contains("user_id"));
        // Header names are not case-sensitive; spaces around fields are trimmed.
        let p = plan("User_ID\n  alice  \n".as_bytes()).unwrap();
        assert_eq!(p.rows, vec![(2, "alice".to_owned())]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_import_is_bounded_reported_and_safe_to_run_twice() {
        let mut rows: Vec<String> = (0..1000).map(|i| format!("user{i}@example.com")).collect();
        rows.push("\"\"".into());
        rows.push("user7@example.com".into());
        let text = file(&rows.iter().map(String::as_str).collect::<Vec<_>>());
        let vip = Arc::new(FakeVip {
            refuse: ["user500@example.com".to_owned()].into(),
            ..FakeVip::default()
        });
        // Some users exist before the first run.
        for i in 0..100 {
            vip.users
                .lock()
                .unwrap()
                .insert(format!("user{i}@example.com"));
        }
        let ticks = Arc::new(AtomicUsize::new(0));
        let t = ticks.clone();
        let first = run(vip.clone(), plan(text.as_bytes()).unwrap(), 8, move || {
            t.fetch_add(1, Ordering::SeqCst);
        })
        .await;
        assert_eq!(first.rows, 1002);
        assert_eq!(first.created, 899);
        assert_eq!(first.already_present, 100);
        assert_eq!(first.malformed.len(), 2);
        assert_eq!(first.failed.len(), 1);
        assert_eq!(first.failed[0].user_id, "user500@example.com");
        assert_eq!(first.failed[0].line, 502);
        assert!(!first.ok());
        assert_eq!(ticks.load(Ordering::SeqCst), 1000, "one tick per call");
        assert!(vip.max_in_flight.load(Ordering::SeqCst) <= 8);
        assert!(
            vip.max_in_flight.load(Ordering::SeqCst) > 1,
            "calls overlap"
        );
        let human = first.human();
        assert!(human.contains("899 created, 100 already present, 1 failed, 2 malformed"));
        assert!(human.contains("line 502: user500@example.com: VIP refused: 601B"));
        assert!(human.contains("requestId rid"));
        // The second run creates nothing twice.
        let second = run(vip.clone(), plan(text.as_bytes()).unwrap(), 8, || {}).await;
        assert_eq!(second.created, 0);
        assert_eq!(second.already_present, 999);
        assert_eq!(second.failed.len(), 1);
        assert_eq!(vip.users.lock().unwrap().len(), 999);
    }
}
