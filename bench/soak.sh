#!/usr/bin/env bash
# Soak of vip-bridge: a long open-loop run of mixed logins (codes, bad codes, blocking pushes,
# two-round challenges, retransmits) against `vip-bridge serve` in front of `vip-sim`, every
# reply verified, the bridge's RSS and open fds sampled. Writes the "Soak" section of
# bench/RESULTS.md (and nothing else in it).
#
#   bash bench/soak.sh                  1,000,000 logins at 2000/s (about 8.5 minutes): release
#                                       build, then the run, then the Soak section
#   bash bench/soak.sh --smoke          20,000 logins at 1000/s (about 25 s in all), on existing
#                                       binaries when they are there (release, else debug);
#                                       memory and fd limits coarse (+100%, +32 fds: too short
#                                       for the caches to fill); writes nothing. For CI.
#
# Options: --logins N, --rate R (logins per second), --mix code=70,bad=10,... (see
#          `vip-load soak --help`), --users N (default: enough for 45 s between two logins of a
#          user), --warmup-pct P, --warmup-secs S (the warm-up ends when both are reached),
#          --rss-tolerance-pct P (10; smoke 100), --fd-slack N (8; smoke 32),
#          --push-delay-ms MS (1000),
#          --debug / --release (binaries to use), --no-build, --keep (keep the work directory),
#          --no-write (do not touch RESULTS.md).
# Exit status: 0 when every check passed (no unanswered request, every reply verified, every
# answer as expected, retransmits answered byte-identically, RSS at the end within the
# tolerance of RSS after the warm-up, fds at the end within the slack), 1 otherwise.
# Environment: CARGO_TARGET_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SMOKE=0
PROFILE=""
BUILD=1
KEEP=0
WRITE=1
LOGINS=""
RATE=""
MIX="code=70,bad=10,push=5,challenge=10,retransmit=5"
USERS=""
WARMUP_PCT=""
WARMUP_SECS=""
RSS_TOL=10
RSS_TOL_SET=""
FD_SLACK=8
FD_SLACK_SET=""
PUSH_DELAY_MS=1000
ARGS="$*"
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --debug) PROFILE=debug ;;
    --release) PROFILE=release ;;
    --no-build) BUILD=0 ;;
    --keep) KEEP=1 ;;
    --no-write) WRITE=0 ;;
    --logins) LOGINS=$2; shift ;;
    --rate) RATE=$2; shift ;;
    --mix) MIX=$2; shift ;;
    --users) USERS=$2; shift ;;
    --warmup-pct) WARMUP_PCT=$2; shift ;;
    --warmup-secs) WARMUP_SECS=$2; shift ;;
    --rss-tolerance-pct) RSS_TOL=$2; RSS_TOL_SET=$2; shift ;;
    --fd-slack) FD_SLACK=$2; FD_SLACK_SET=$2; shift ;;
    --push-delay-ms) PUSH_DELAY_MS=$2; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

if [ "$SMOKE" = 1 ]; then
  LOGINS=${LOGINS:-20000}
  RATE=${RATE:-1000}
  WRITE=0
  # Too short for the bridge's time-bounded stores (response cache 15 s, State nonces 3 min)
  # to reach their steady size: the smoke only catches gross growth.
  [ -z "$RSS_TOL_SET" ] && RSS_TOL=100
  [ -z "$FD_SLACK_SET" ] && FD_SLACK=32
else
  LOGINS=${LOGINS:-1000000}
  RATE=${RATE:-2000}
fi
# The warm-up: 5% of the logins, and long enough for every time-bounded store of the bridge to
# have reached its steady size (see bench/README.md, "Soak"): used State nonces are kept for
# state_ttl + 5 s (3 min 5 s by default), the getUserInfo cache for 1 min.
WARMUP_PCT=${WARMUP_PCT:-5}
if [ -z "$WARMUP_SECS" ]; then
  if [ "$SMOKE" = 1 ]; then WARMUP_SECS=0; else WARMUP_SECS=200; fi
fi
# A user's next login must come in a later 30 s TOTP step: 45 s between two logins of a user.
if [ -z "$USERS" ]; then
  USERS=$(python3 -c 'import math,sys; l,r=int(sys.argv[1]),float(sys.argv[2]); print(max(1, min(l, math.ceil(r*45))))' "$LOGINS" "$RATE")
fi

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -z "$PROFILE" ]; then
  if [ "$SMOKE" = 1 ] && [ ! -x "$TARGET/release/vip-bridge" ]; then PROFILE=debug; else PROFILE=release; fi
fi
BIN=$TARGET/$PROFILE
SECRET=soak-secret-0123456789
TOTP_SECRET=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ
log() { printf '\n== %s\n' "$*" >&2; }

if [ "$BUILD" = 1 ]; then
  if [ "$PROFILE" = release ]; then flag=--release; else flag=; fi
  if [ "$SMOKE" = 0 ] || [ ! -x "$BIN/vip-load" ] || [ ! -x "$BIN/vip-bridge" ] || [ ! -x "$BIN/vip-sim" ]; then
    log "cargo build $flag -p vip-bench -p vip-bridge -p vip-sim"
    (cd "$ROOT" && cargo build $flag -p vip-bench -p vip-bridge -p vip-sim)
  fi
fi
for b in vip-load vip-bridge vip-sim; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b (build it, or pass --debug/--release)" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/vip-soak.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
  if [ "$KEEP" = 0 ]; then rm -rf "$WORK"; else echo "work directory kept: $WORK" >&2; fi
}
trap cleanup EXIT

# Waits until FILE holds one JSON line; prints the value of KEY (the first, for a list).
json_key() { # file key timeout_s
  local file=$1 key=$2 t=$3 i=0
  while [ "$i" -lt $((t * 10)) ]; do
    if [ -s "$file" ] && python3 -c 'import json,sys; v=json.loads(open(sys.argv[1]).readline())[sys.argv[2]]; print(v if not isinstance(v,list) else v[0]); ' "$file" "$key" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
    i=$((i + 1))
  done
  echo "timed out waiting for $key in $file" >&2
  return 1
}

stop_pid() {
  local p=$1
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
}

# Challenge logins come from a second source address (a second RADIUS client whose policy is
# mode = "challenge"). Linux answers for all of 127.0.0.0/8 on lo.
CH_SOURCE=127.0.0.2
# The bridge's default (vip.max_in_flight): its pool to VIP holds at most this many connections,
# plus one for the health check.
VIP_MAX_IN_FLIGHT=64
python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1],0))' "$CH_SOURCE" ||
  { echo "cannot bind $CH_SOURCE (challenge logins need a second loopback address)" >&2; exit 1; }

"$BIN/vip-sim" gen-certs "$WORK/certs" >/dev/null

# Simulated users: every one has the shared TOTP secret and a phone that approves pushes after
# PUSH_DELAY_MS. VIP's own lockout (10 bad codes in a row) stays on: a user's bad codes are
# spread among its good ones.
{
  cat <<EOF
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
max_connections = 4096

[tls]
cert = "$WORK/certs/server.pem"
key = "$WORK/certs/server.key"
client_ca = "$WORK/certs/ca.pem"

[policy]
number_challenge = false
push_timeout_secs = 120
EOF
  awk -v n="$USERS" -v s="$TOTP_SECRET" -v d="$PUSH_DELAY_MS" 'BEGIN {
    for (i = 0; i < n; i++) {
      printf "\n[[users]]\nid = \"user%d\"\npush = { action = \"approve\", delay_ms = %d }\n", i, d
      printf "[[users.credentials]]\nid = \"VSMT%08d\"\ntype = \"STANDARD_OTP\"\ntotp_secret = \"%s\"\npush = true\n", i, s
    }
  }'
} >"$WORK/sim.toml"

log "starting vip-sim ($USERS users) and vip-bridge ($PROFILE)"
"$BIN/vip-sim" --config "$WORK/sim.toml" >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIM_PID=$!
PIDS+=("$SIM_PID")
SIM_ADDR=$(json_key "$WORK/sim.out" listen 120)
SIM_ADMIN=$(json_key "$WORK/sim.out" admin 5)

# The bridge: the packaged defaults except where the soak needs otherwise (marked).
BASE="https://$SIM_ADDR/vipuserservices"
python3 -c 'import secrets; print(secrets.token_hex(32))' >"$WORK/state.key"
chmod 600 "$WORK/state.key"
cat >"$WORK/bridge.toml" <<EOF
[vip]
auth_url = "$BASE/AuthenticationService_1_10"
query_url = "$BASE/QueryService_1_10"
management_url = "$BASE/ManagementService_1_10"
cert_file = "$WORK/certs/client.pem"
key_file = "$WORK/certs/client.key"
ca_file = "$WORK/certs/ca.pem"

[engine]
state_key_file = "$WORK/state.key"

[engine.throttle]
# soak: pushes are 5% of the logins of a user seen every 45 s; the default (3 per 5 min) would
# throttle the odd user who draws four pushes in a row.
push_per_user = { count = 20, per = "5m" }
# soak: each user types a code about every 45 s, some of them wrong; the default (5 per 10 min)
# would throttle them after a few minutes. 10 per 5 min is what the 1M soak was measured with.
codes_per_user = { count = 10, per = "5m" }
# soak: every login comes from one of two clients (default 2000/s per client).
requests_per_client = { count = 100000000, per = "1s" }

[policies.default]
mode = "code"
push_mode = "blocking"
push_timeout = "60s"
# soak: the simulated account does not require number challenge.
number_challenge = false

[policies.menu]
mode = "challenge"

[radius]
listen = ["127.0.0.1:0"]

[[radius.clients]]
name = "soak"
address = "127.0.0.1"
secret = "$SECRET"

[[radius.clients]]
name = "soak-challenge"
address = "$CH_SOURCE"
secret = "$SECRET"
policy = "menu"

[metrics]
listen = "127.0.0.1:0"

[log]
level = "warn"
EOF
"$BIN/vip-bridge" serve --config "$WORK/bridge.toml" --ready-file "$WORK/ready.json" \
  >"$WORK/bridge.out" 2>"$WORK/bridge.err" &
BRIDGE_PID=$!
PIDS+=("$BRIDGE_PID")
RADIUS_ADDR=$(json_key "$WORK/ready.json" radius 60) || {
  echo "vip-bridge did not start; its stderr:" >&2
  tail -20 "$WORK/bridge.err" >&2
  exit 1
}
METRICS_ADDR=$(json_key "$WORK/ready.json" metrics 5)

LOAD_ARGS=(soak --server "$RADIUS_ADDR" --secret "$SECRET" --mix "$MIX" --rate "$RATE"
  --logins "$LOGINS" --user 'user{n}' --user-count "$USERS" --totp-secret "$TOTP_SECRET"
  --challenge-source "$CH_SOURCE" --server-pid "$BRIDGE_PID" --upstream-pid "$SIM_PID"
  --upstream-port "${SIM_ADDR##*:}" --upstream-conn-limit "$((VIP_MAX_IN_FLIGHT + 1))"
  --warmup-pct "$WARMUP_PCT" --warmup-secs "$WARMUP_SECS" --rss-tolerance-pct "$RSS_TOL"
  --fd-slack "$FD_SLACK" --label soak --out "$WORK/soak.json")
[ "$SMOKE" = 1 ] && LOAD_ARGS+=(--progress-secs 0)

LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "vip-load soak: $LOGINS logins at $RATE/s ($MIX), $USERS users"
STARTED=$(date -Iseconds)
T0=$SECONDS
rc=0
RUST_BACKTRACE=0 RUST_LIB_BACKTRACE=0 "$BIN/vip-load" "${LOAD_ARGS[@]}" >/dev/null || rc=$?
DUR=$((SECONDS - T0))
LOADAVG_END=$(cut -d' ' -f1-3 /proc/loadavg)

curl -fsS "http://$METRICS_ADDR/metrics" >"$WORK/metrics.txt" 2>/dev/null || true
curl -fsS "http://$SIM_ADMIN/counters" >"$WORK/sim-counters.json" 2>/dev/null || true
ALIVE=1
kill -0 "$BRIDGE_PID" 2>/dev/null || ALIVE=0
stop_pid "$BRIDGE_PID"
stop_pid "$SIM_PID"

if [ ! -s "$WORK/soak.json" ]; then
  echo "vip-load wrote no report (exit $rc)" >&2
  exit 1
fi
if [ "$ALIVE" = 0 ]; then
  echo "vip-bridge exited during the soak; its stderr:" >&2
  tail -20 "$WORK/bridge.err" >&2
  rc=1
fi
warns=$(grep -c . "$WORK/bridge.err" || true)
if [ "$warns" -gt 0 ]; then
  echo "vip-bridge logged $warns lines (level warn); the first:" >&2
  head -5 "$WORK/bridge.err" >&2
fi

if [ "$WRITE" = 1 ]; then
  export SOAK_JSON=$WORK/soak.json SOAK_METRICS=$WORK/metrics.txt SOAK_SIM=$WORK/sim-counters.json \
    SOAK_BRIDGE_ERR=$WORK/bridge.err SOAK_STARTED=$STARTED SOAK_DUR=$DUR SOAK_ARGS=$ARGS \
    SOAK_LOADAVG_START=$LOADAVG_START SOAK_LOADAVG_END=$LOADAVG_END SOAK_USERS=$USERS \
    SOAK_PUSH_DELAY_MS=$PUSH_DELAY_MS SOAK_BIN=$BIN SOAK_RC=$rc SOAK_ALIVE=$ALIVE \
    SOAK_RESULTS=$ROOT/bench/RESULTS.md
  python3 - <<'PY'
import json, os, re

r = json.load(open(os.environ["SOAK_JSON"]))
e = os.environ
def n(v, d=0):
    return "–" if v is None else f"{v:,.{d}f}"
def mib(k):
    return "–" if k is None else f"{k / 1024:.1f} MiB"

metrics = {}
try:
    for line in open(e["SOAK_METRICS"]):
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.strip().rpartition(" ")
        metrics[name] = value
except OSError:
    pass
def series(prefix):
    return {k: v for k, v in metrics.items() if k.startswith(prefix) and float(v or 0) != 0}
try:
    sim = json.load(open(e["SOAK_SIM"])).get("calls", {})
except (OSError, ValueError):
    sim = {}
try:
    err_lines = sum(1 for _ in open(e["SOAK_BRIDGE_ERR"]))
except OSError:
    err_lines = 0

cmd = "bash bench/soak.sh" + (" " + e["SOAK_ARGS"] if e["SOAK_ARGS"] else "")
out = []
w = out.append
w("## Soak")
w("")
w(f"Generated by `{cmd}`, started {e['SOAK_STARTED']}, {int(e['SOAK_DUR'])} s in all. "
  f"Result: **{'passed' if r['passed'] and e['SOAK_RC'] == '0' else 'FAILED'}**.")
w("")
w(f"{r['logins']:,} logins ({r['mix']}) offered on a clock at {r['target_rate']:,.0f}/s by "
  f"`vip-load soak` to `vip-bridge serve` ({e['SOAK_BIN']}) in front of `vip-sim` "
  f"({int(e['SOAK_USERS']):,} users, phones approving pushes after {e['SOAK_PUSH_DELAY_MS']} ms), "
  "all on this machine's two cores, which other builds were also using "
  f"(load average {e['SOAK_LOADAVG_START']} at the start, {e['SOAK_LOADAVG_END']} at the end). "
  "Bridge configuration: the packaged defaults (state_ttl 3m, user_info_ttl 1m, poll_interval 3s, "
  "response cache 15 s / 65,536 entries) except codes_per_user 10 per 5m, push_per_user "
  "20 per 5m and requests_per_client unlimited; challenge logins come from 127.0.0.2, a second "
  "client whose policy has mode = \"challenge\".")
w("")
w(f"- rate: offered {r['offered_rate']:,.0f}/s, achieved {r['achieved_rate']:,.0f} logins/s "
  f"over {r['elapsed_s']:,.1f} s; the generator's send lag p99 {r['send_lag']['p99_ms']:.2f} ms, "
  f"max {r['send_lag']['max_ms']:.1f} ms")
w(f"- requests: {r['sent']:,} sent (second rounds and retransmit repeats included), "
  f"{r['answered']:,} answered ({r['accept']:,} accept, {r['reject']:,} reject, "
  f"{r['challenge']:,} challenge), **{r['unanswered_requests']} unanswered**, "
  f"{r['retransmits']} timeout retransmits, {r['bad_authenticator']} bad authenticators, "
  f"{r['missing_message_authenticator']} replies without Message-Authenticator, "
  f"{r['message_authenticator_not_first']} with it not first, {r['late_or_duplicate']} late")
w(f"- retransmits after the answer: {r['repeat_identical']:,} answered byte-identically, "
  f"{r['repeat_different']} differently" +
  (f" (p50 {r['repeat_latency']['p50_ms']:.2f} ms, p99 {r['repeat_latency']['p99_ms']:.2f} ms)"
   if r.get("repeat_latency") else ""))
w("")
w("| kind | expected | share | logins | as expected | otherwise | unanswered | p50 ms | p99 ms | p99.9 ms | max ms |")
w("|---|---|---|---|---|---|---|---|---|---|---|")
expect = {"code": "Accept", "bad": "Reject", "push": "Accept (blocking push)",
          "challenge": "Challenge with State, then Accept", "retransmit": "Accept, then the same bytes"}
for k in r["kinds"]:
    l = k["latency"]
    w(f"| {k['kind']} | {expect.get(k['kind'], '')} | {k['weight']} | {k['logins']:,} | {k['expected']:,} | "
      f"{k['unexpected']} | {k['unanswered']} | {l['p50_ms']:.2f} | {l['p99_ms']:.2f} | "
      f"{l['p999_ms']:.2f} | {l['max_ms']:.1f} |")
w("")
w("Latency is per login, from its first request to its final answer (both rounds of a "
  "challenge login; a push login includes the phone's delay and up to one poll interval).")
w("")
srv = r.get("server") or {}
ups = r.get("upstream") or {}
wl = r["warmup_logins"]
w(f"Memory and file descriptors of vip-bridge (sampled every 2 s from /proc/PID/status VmRSS "
  f"and /proc/PID/fd; the warm-up ends after {wl:,} logins ({wl / r['logins'] * 100:.0f}%) and "
  f"{r['warmup_secs']:.0f} s). The connections to VIP are the bridge's HTTPS pool, which grows "
  "with the load's peaks (at most vip.max_in_flight + 1) and drops idle connections after 50 s: "
  "they are bounded apart from the other fds.")
w("")
w("| | after warm-up | at the end | max after warm-up | limit |")
w("|---|---|---|---|---|")
rw, re_ = r.get("rss_warm_kib"), r.get("rss_end_kib")
delta = f" ({(re_ / rw - 1) * 100:+.1f}%)" if rw and re_ else ""
w(f"| RSS | {mib(rw)} | {mib(re_)}{delta} | {mib(r.get('rss_max_after_warm_kib'))} | "
  f"+{r['limits']['rss_tolerance_pct']:g}% |")
w(f"| open fds | {n(r.get('fds_warm'))} | {n(r.get('fds_end'))} | "
  f"{n(r.get('fds_max_after_warm'))} | |")
cw, ce, cm = r.get("upstream_conns_warm"), r.get("upstream_conns_end"), r.get("upstream_conns_max")
if cw is not None and ce is not None:
    fw, fe = r.get("fds_warm"), r.get("fds_end")
    w(f"| of which connections to VIP | {cw} | {ce} | {n(cm)} (whole run) | "
      f"{r['limits'].get('upstream_conn_limit') or '–'} + {r['limits']['fd_slack']} |")
    if fw is not None and fe is not None:
        w(f"| other fds | {fw - cw} | {fe - ce} | | +{r['limits']['fd_slack']} |")
w("")
samples = r["samples"]["series"]
if samples:
    first = samples[0]
    slope = r.get("rss_slope_kib_per_100k")
    w(f"- RSS at the start {mib(first.get('rss_kib'))}, peak (VmHWM) {mib(srv.get('peak_rss_kib'))}; "
      f"trend after the warm-up: {'–' if slope is None else f'{slope:+.0f} KiB per 100,000 logins'} "
      "(least squares over the samples)")
    # The curve, every ~10% of the run.
    step = max(1, len(samples) // 10)
    pts = samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else [])
    w("- curve (seconds: logins done, RSS, fds): " + "; ".join(
        f"{s['t_s']:.0f}: {s['done']:,}, {mib(s.get('rss_kib'))}, {n(s.get('fds'))}" for s in pts))
if srv.get("cpu_seconds") is not None:
    w(f"- vip-bridge CPU {srv['cpu_seconds']:.0f} s ({srv['cpu_cores']:.2f} cores, "
      f"{srv['cpu_seconds'] / max(r['logins'], 1) * 1e6:.0f} µs per login); vip-sim "
      f"{ups.get('cpu_seconds') or 0:.0f} s, RSS at the end {mib(ups.get('rss_kib_end'))}")
if sim:
    w(f"- VIP calls: {json.dumps(sim, sort_keys=True)}")
drops = series("vip_bridge_radius_dropped_total")
w(f"- bridge counters at the end: radius_dropped_total {json.dumps(drops) if drops else '0'}; "
  f"pending_pushes {metrics.get('vip_bridge_pending_pushes', '?')}; "
  f"retransmits answered from cache "
  f"{metrics.get('vip_bridge_radius_retransmits_answered_from_cache_total', '?')}; "
  f"{err_lines} log lines at level warn")
if e["SOAK_ALIVE"] != "1":
    w("- **vip-bridge was no longer running at the end**")
w("")
w("Checks:")
w("")
for c in r["checks"]:
    w(f"- {'ok' if c['ok'] else '**FAILED**'}: {c['name']}: {c['detail']}")
if r["unexpected_samples"]:
    w("")
    w("First unexpected answers or unanswered requests:")
    w("")
    for s in r["unexpected_samples"][:10]:
        w(f"- {s}")
w("")
section = "\n".join(out)

path = e["SOAK_RESULTS"]
try:
    text = open(path).read()
except OSError:
    text = "# vip-bridge benchmarks\n"
m = re.search(r"^## Soak\n.*?(?=^## |\Z)", text, flags=re.S | re.M)
if m:
    text = text[:m.start()] + section + ("\n" if m.end() < len(text) else "") + text[m.end():]
else:
    text = text.rstrip("\n") + "\n\n" + section
open(path, "w").write(text.rstrip("\n") + "\n")
print(f"wrote the Soak section of {path}", file=__import__("sys").stderr)
PY
fi

if [ "$rc" != 0 ]; then
  echo "soak FAILED (see the checks above)" >&2
  exit 1
fi
echo "soak passed" >&2
