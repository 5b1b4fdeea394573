//! The daemon's configuration file: `vip_bridge::config::parse`, which `load` runs on the
//! file's contents (TOML -> typed sections -> every validation: core, policies, PAM door,
//! log filter, RADIUS settings and clients, metrics). It must return errors, never panic.
//! What loads is then used as the daemon uses it (policy warnings, the client table).
//!
//! Input: the file's text (non-UTF-8 input is skipped: `read_to_string` refuses it first).
//!
//! The config path is in a directory that does not exist, so relative `secret_file`s are
//! never found; absolute ones are read from this machine (run the fuzzer unprivileged).
//!
//! Inputs whose `log.level` holds a span field-value pattern (`[span{field=value}]`) are
//! skipped: tracing-subscriber compiles such a pattern into a DFA, and in the first campaign
//! that determinization (in regex-automata, not our code) took ~90% of all executions
//! (perf), cutting the target from ~4,000 to ~150-400 executions a second. `log.level`
//! itself is still fuzzed (directives, targets, levels, malformed filters); only the value
//! patterns, which our code never looks into, are left out.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if log_level_has_value_pattern(text) {
        return;
    }
    let path = Path::new("/nonexistent/vip-fuzz/vip-bridge.toml");
    match vip_bridge::config::parse(path, text) {
        Ok(loaded) => {
            let _ = loaded.core.warnings();
            let _ = format!("{loaded:?}");
            if let Some(r) = &loaded.radius {
                for c in r.clients.iter() {
                    let _ = (c.net.prefix_len(), c.secret().len());
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});

/// Whether the input's `[log] level` (when it parses as TOML at all) has a `{`.
fn log_level_has_value_pattern(text: &str) -> bool {
    let Ok(doc) = text.parse::<toml::Table>() else {
        return false;
    };
    doc.get("log")
        .and_then(|log| log.get("level"))
        .and_then(|level| level.as_str())
        .is_some_and(|level| level.contains('{'))
}
