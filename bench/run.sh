#!/usr/bin/env bash
# Side-by-side RADIUS benchmarks on this machine: the UDP echo limit, FreeRADIUS, and
# vip-bridge (`vip-bridge serve` in front of `vip-sim`). Writes bench/RESULTS.md.
#
#   bench/run.sh            full run: release builds, ~20 s per scenario (about 6-8 minutes;
#                           it takes every core: do not run it on a shared machine during work)
#   bench/run.sh --smoke    every scenario for ~1.5 s on existing debug or release binaries;
#                           never writes RESULTS.md; exits non-zero when a scenario had no
#                           expected answers (accepts, or rejects for the throttle scenario) or
#                           any bad authenticator. For CI.
#
# Options: --debug / --release (binaries to use), --only a,b,... (scenario names, see below;
#          writes bench/RESULTS.partial.md instead of RESULTS.md),
#          --no-build (use the binaries as they are), --keep (keep the work directory).
# Environment: VB_DURATION (s), VB_USERS, VB_CONCURRENCY, VB_OPEN_RATE, VB_SOCKETS,
#              VB_PUSHES, VB_PUSH_DELAY_MS, VB_VIP_MAX_IN_FLIGHT, VB_LDAP_POOL (the directory's
#              pool_size, default 4), VB_LDAP_THREADS (slapd's threads, default 16),
#              VB_PROBE_DURATION (s, the sequential probes), CARGO_TARGET_DIR.
#
# Scenarios: echo, freeradius, a0 (code logins, sim latency 0 ms), a50 (50 ms), ldap (as a0
# with an LDAP first factor: User-Password "password,code", the password checked by a search
# and a bind over LDAPS against a private slapd, bench/ldap/setup.sh), open (open loop at
# VB_OPEN_RATE against echo, FreeRADIUS and vip-bridge), b (throttled), c (retransmits answered
# from the response cache), d (VB_PUSHES blocking pushes at once), e (PAM), rest (FreeRADIUS +
# rlm_rest: one mutual-TLS SOAP checkOtp POST per Access-Request to a vip-sim configured as a0's,
# the same logins as a0; needs the freeradius-rest package: skipped with a note without it, a
# failure under CI=true). With a0 in the same run, open also offers half of a0's rate.
# a0r and br: a0 and b again, right after them, with [cluster] store = "redis" against a
# private redis-server on a free loopback port (the Debian package; skipped with a note without
# it, a failure under CI=true); its CPU and commands per login are recorded. a0, a0r, b and br
# each end with a sequential probe (concurrency 1, label NAME-seq, VB_PROBE_DURATION s): the
# latency of one login without queueing, which the store's latency goal is about.
# a0t: a0's code logins with backend = "trustbuilder" in front of tb-sim (the TrustBuilder MFA
# simulator: same users, same TOTP secret, one mobile app each), run right after a0 and reported
# beside it, with its own sequential probe.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SMOKE=0
PROFILE=""
ONLY=""
BUILD=1
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --debug) PROFILE=debug ;;
    --release) PROFILE=release ;;
    --only) ONLY=",$2,"; shift ;;
    --no-build) BUILD=0 ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -z "$PROFILE" ]; then
  if [ "$SMOKE" = 1 ] && [ ! -x "$TARGET/release/vip-bridge" ]; then PROFILE=debug; else PROFILE=release; fi
fi
BIN=$TARGET/$PROFILE
SECRET=bench-secret-0123456789
TOTP_SECRET=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ

if [ "$SMOKE" = 1 ]; then
  DUR=${VB_DURATION:-1.5}
  USERS=${VB_USERS:-20000}
  PUSHES=${VB_PUSHES:-200}
  PUSH_DELAY_MS=${VB_PUSH_DELAY_MS:-1000}
  OPEN_RATE=${VB_OPEN_RATE:-500}
  PROBE_DUR=${VB_PROBE_DURATION:-0.5}
  PROBE_USERS=2000
else
  DUR=${VB_DURATION:-20}
  USERS=${VB_USERS:-200000}
  PUSHES=${VB_PUSHES:-10000}
  PUSH_DELAY_MS=${VB_PUSH_DELAY_MS:-20000}
  OPEN_RATE=${VB_OPEN_RATE:-2000}
  PROBE_DUR=${VB_PROBE_DURATION:-3}
  PROBE_USERS=20000
fi
CONC=${VB_CONCURRENCY:-256}
SOCKETS=${VB_SOCKETS:-16}
VIP_MAX_IN_FLIGHT=${VB_VIP_MAX_IN_FLIGHT:-64}
LDAP_POOL=${VB_LDAP_POOL:-4}
LDAP_THREADS=${VB_LDAP_THREADS:-16}
LDAP_PASSWORD=bench-ldap-pw-0123

LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
want() { [ -z "$ONLY" ] || [[ "$ONLY" == *",$1,"* ]]; }
log() { printf '\n== %s\n' "$*" >&2; }

# ------------------------------------------------------------------------------------------
# Build
# ------------------------------------------------------------------------------------------
if [ "$BUILD" = 1 ]; then
  if [ "$PROFILE" = release ]; then flag=--release; else flag=; fi
  if [ "$SMOKE" = 0 ] || [ ! -x "$BIN/vip-load" ] || [ ! -x "$BIN/vip-bridge" ] || [ ! -x "$BIN/vip-sim" ] ||
    [ "$BIN/vip-bridge" -ot "$ROOT/radius-server/src/main.rs" ]; then
    log "cargo build $flag -p vip-bench -p vip-bridge -p vip-sim (vip-sim and tb-sim)"
    (cd "$ROOT" && cargo build $flag -p vip-bench -p vip-bridge -p vip-sim)
  fi
fi
NEED_BRIDGE=0
for s in a0 a0r a0t a50 ldap open b br c d e rest; do want "$s" && NEED_BRIDGE=1; done
NEEDED=(vip-load)
[ "$NEED_BRIDGE" = 1 ] && NEEDED+=(vip-bridge vip-sim)
want a0t && NEEDED+=(tb-sim)
for b in "${NEEDED[@]}"; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b (build it, or pass --debug/--release)" >&2; exit 1; }
done
LOAD=$BIN/vip-load

WORK=$(mktemp -d /tmp/vip-bench.XXXXXX)
RES=$WORK/results
mkdir -p "$RES"
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
  if [ "$KEEP" = 0 ]; then rm -rf "$WORK"; else echo "work directory kept: $WORK" >&2; fi
}
trap cleanup EXIT

FAILED=()
NOTES=()

free_port() {
  python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
free_tcp_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits until FILE holds one JSON line; prints the value of KEY.
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

# Cumulative utime+stime of a process, in clock ticks.
proc_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

stop_pid() {
  local p=$1
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
}

# run_load LABEL EXPECT(accept|reject|none) vip-load-args...
run_load() {
  local label=$1 expect=$2
  shift 2
  if "$LOAD" "$@" --label "$label" --out "$RES/$label.json" >/dev/null 2>"$RES/$label.err"; then
    cat "$RES/$label.err" >&2
  else
    cat "$RES/$label.err" >&2
    FAILED+=("$label: vip-load failed")
    return 0
  fi
  python3 - "$RES/$label.json" "$expect" <<'PY' || FAILED+=("$label: $(cat "$RES/$label.check")")
import json, sys
r = json.load(open(sys.argv[1]))
exp = sys.argv[2]
msg = []
if r["bad_authenticator"]:
    msg.append(f'{r["bad_authenticator"]} bad authenticators')
if exp != "none" and r[exp] == 0:
    msg.append(f"no {exp}s")
open(sys.argv[1].replace(".json", ".check"), "w").write("; ".join(msg))
sys.exit(1 if msg else 0)
PY
}

# ------------------------------------------------------------------------------------------
# Machine limit: the bare UDP echo
# ------------------------------------------------------------------------------------------
ECHO_ADDR=""
if want echo || want open; then
  log "echo limit"
  "$LOAD" echo --listen 127.0.0.1:0 >"$WORK/echo.out" 2>&1 &
  ECHO_PID=$!
  PIDS+=("$ECHO_PID")
  ECHO_ADDR=$(json_key "$WORK/echo.out" listen 10)
  if want echo; then
    run_load echo-bare accept run --server "$ECHO_ADDR" --secret "$SECRET" --no-verify \
      --sockets "$SOCKETS" --concurrency "$CONC" --duration "$DUR" --server-pid "$ECHO_PID"
  fi
  if want open; then
    run_load open-echo accept run --server "$ECHO_ADDR" --secret "$SECRET" --no-verify \
      --sockets "$SOCKETS" --rate "$OPEN_RATE" --duration "$DUR" --server-pid "$ECHO_PID"
  fi
  stop_pid "$ECHO_PID"
  # (Started only when it is used: a forked job killed before its exec runs this script's
  # EXIT trap, which removed the work directory under --only open.)
  if want echo; then
    "$LOAD" echo --listen 127.0.0.1:0 --secret "$SECRET" >"$WORK/echo2.out" 2>&1 &
    ECHO_PID=$!
    PIDS+=("$ECHO_PID")
    ECHO_ADDR=$(json_key "$WORK/echo2.out" listen 10)
    run_load echo-signed accept run --server "$ECHO_ADDR" --secret "$SECRET" \
      --sockets "$SOCKETS" --concurrency "$CONC" --duration "$DUR" --server-pid "$ECHO_PID"
    stop_pid "$ECHO_PID"
  fi
fi

# ------------------------------------------------------------------------------------------
# FreeRADIUS
# ------------------------------------------------------------------------------------------
if want freeradius || want open; then
  if command -v freeradius >/dev/null; then
    log "FreeRADIUS baseline"
    FR_PORT=$(free_port)
    FR_USERS=$USERS
    [ "$FR_USERS" -gt 100000 ] && FR_USERS=100000
    "$ROOT/bench/freeradius/setup.sh" --dir "$WORK/freeradius" --port "$FR_PORT" \
      --secret "$SECRET" --users "$FR_USERS" --password 123456 >/dev/null
    freeradius -f -d "$WORK/freeradius" >"$WORK/freeradius.out" 2>&1 &
    FR_PID=$!
    PIDS+=("$FR_PID")
    ok=0
    for _ in $(seq 1 50); do
      if printf 'User-Name = "user0", User-Password = "123456", Message-Authenticator = 0x00\n' |
        radclient -q -r 1 -t 1 "127.0.0.1:$FR_PORT" auth "$SECRET" >/dev/null 2>&1; then ok=1; break; fi
      sleep 0.2
    done
    if [ "$ok" = 1 ]; then
      want freeradius && run_load freeradius accept run --server "127.0.0.1:$FR_PORT" \
        --secret "$SECRET" --sockets "$SOCKETS" --concurrency "$CONC" --duration "$DUR" \
        --user 'user{n}' --user-count "$FR_USERS" --password 123456 --server-pid "$FR_PID"
      want open && run_load open-freeradius accept run --server "127.0.0.1:$FR_PORT" \
        --secret "$SECRET" --sockets "$SOCKETS" --rate "$OPEN_RATE" --duration "$DUR" \
        --user 'user{n}' --user-count "$FR_USERS" --password 123456 --server-pid "$FR_PID"
    else
      FAILED+=("freeradius: did not answer radclient (see $WORK/freeradius/log)")
    fi
    stop_pid "$FR_PID"
  else
    NOTES+=("FreeRADIUS is not installed: baseline skipped")
  fi
fi

# ------------------------------------------------------------------------------------------
# vip-bridge + vip-sim
# ------------------------------------------------------------------------------------------
[ "$NEED_BRIDGE" = 1 ] && "$BIN/vip-sim" gen-certs "$WORK/certs" >/dev/null

# sim_config FILE USERS LATENCY_MS PUSH_DELAY_MS
sim_config() {
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

[faults]
latency_ms = $3
EOF
    awk -v n="$2" -v s="$TOTP_SECRET" -v d="$4" 'BEGIN {
      for (i = 0; i < n; i++) {
        printf "\n[[users]]\nid = \"user%d\"\npush = { action = \"approve\", delay_ms = %d }\n", i, d
        printf "[[users.credentials]]\nid = \"VSMT%08d\"\ntype = \"STANDARD_OTP\"\ntotp_secret = \"%s\"\npush = true\n", i, s
      }
    }'
  } >"$1"
}

# tb_sim_config FILE USERS: tb-sim with a0's users (user0..), each with one mobile app ("ma")
# whose TOTP seed is TOTP_SECRET's bytes, so vip-load's codes are right for both simulators.
TB_SERVICE_ID=4242
tb_sim_config() {
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

[service]
id = $TB_SERVICE_ID
max_users = $(($2 + 1))
EOF
    awk -v n="$2" -v seed="$(python3 -c 'import base64,sys; print(base64.b32decode(sys.argv[1]).hex())' "$TOTP_SECRET")" 'BEGIN {
      for (i = 0; i < n; i++) {
        printf "\n[[users]]\nlogin = \"user%d\"\n[[users.tools]]\nkind = \"ma\"\nid = %d\nalias = \"a%08d\"\nseed = \"%s\"\npush_enabled = true\n", i, i + 1, i, seed
      }
    }'
  } >"$1"
}

# The MFA section of the bridge's configuration: VIP's, or TrustBuilder's with BACKEND=trustbuilder.
BACKEND=vip
mfa_config() {
  if [ "$BACKEND" = trustbuilder ]; then
    cat <<EOF
backend = "trustbuilder"

[trustbuilder]
service_id = $TB_SERVICE_ID
api_url = "https://$1"
pkcs12_file = "$WORK/certs/client.p12"
pkcs12_password_file = "$WORK/certs/client.p12.password"
ca_file = "$WORK/certs/ca.pem"
timeout = "10s"
max_in_flight = $VIP_MAX_IN_FLIGHT
EOF
  else
    local base="https://$1/vipuserservices"
    cat <<EOF
[vip]
auth_url = "$base/AuthenticationService_1_10"
query_url = "$base/QueryService_1_10"
management_url = "$base/ManagementService_1_10"
cert_file = "$WORK/certs/client.pem"
key_file = "$WORK/certs/client.key"
ca_file = "$WORK/certs/ca.pem"
timeout = "10s"
max_in_flight = $VIP_MAX_IN_FLIGHT
EOF
  fi
}

# bridge_config FILE SIM_ADDR CODES_PER_USER_COUNT WITH_PAM(0|1)
bridge_config() {
  local client_policy=""
  [ -z "$CLIENT_POLICY" ] || client_policy="policy = \"$CLIENT_POLICY\""
  mfa_config "$2" >"$1"
  cat >>"$1" <<EOF

[engine]
poll_interval = "3s"

[engine.throttle]
push_per_user = { count = 3, per = "5m" }
codes_per_user = { count = $3, per = "1h" }
requests_per_client = { count = 100000000, per = "1s" }

[policies.default]
mode = "code"
push_mode = "blocking"
push_timeout = "60s"
number_challenge = false

[radius]
listen = ["127.0.0.1:0"]
max_in_flight = 20000
response_cache_ttl = "15s"

[[radius.clients]]
name = "bench"
address = "127.0.0.1"
secret = "$SECRET"
$client_policy

[log]
level = "$BRIDGE_LOG"
EOF
  if [ "$4" = 1 ]; then
    printf '\n[pam]\nsocket = "%s"\n' "$WORK/pam.sock" >>"$1"
  fi
  [ -z "$BRIDGE_EXTRA" ] || printf '\n%s\n' "$BRIDGE_EXTRA" >>"$1"
}
# More of the bridge's configuration for the next start_stack (the ldap scenario's directory
# and policy), and the policy of its one RADIUS client ("" = [policies.default]).
BRIDGE_EXTRA=""
CLIENT_POLICY=""
# The bridge's log filter (the store scenarios add the store's "connected" line).
BRIDGE_LOG=warn

SIM_PID=""
BRIDGE_PID=""
SIM_ADMIN=""
SIM_ADDR=""
RADIUS_ADDR=""
# start_sim NAME USERS LATENCY_MS PUSH_DELAY_MS: vip-sim alone (SIM_PID, SIM_ADDR, SIM_ADMIN);
# with BACKEND=trustbuilder, tb-sim (no latency, no pushes).
start_sim() {
  local name=$1 sim=vip-sim
  if [ "$BACKEND" = trustbuilder ]; then
    sim=tb-sim
    tb_sim_config "$WORK/$name-sim.toml" "$2"
  else
    sim_config "$WORK/$name-sim.toml" "$2" "$3" "$4"
  fi
  "$BIN/$sim" --config "$WORK/$name-sim.toml" >"$WORK/$name-sim.out" 2>"$WORK/$name-sim.err" &
  SIM_PID=$!
  PIDS+=("$SIM_PID")
  SIM_ADDR=$(json_key "$WORK/$name-sim.out" listen 60) || return 1
  SIM_ADMIN=$(json_key "$WORK/$name-sim.out" admin 5) || return 1
}
# start_stack NAME USERS LATENCY_MS PUSH_DELAY_MS CODES_PER_USER WITH_PAM
start_stack() {
  local name=$1
  start_sim "$name" "$2" "$3" "$4" || return 1
  bridge_config "$WORK/$name-bridge.toml" "$SIM_ADDR" "$5" "$6"
  rm -f "$WORK/$name-ready.json" "$WORK/pam.sock"
  "$BIN/vip-bridge" serve --config "$WORK/$name-bridge.toml" --ready-file "$WORK/$name-ready.json" \
    >"$WORK/$name-bridge.out" 2>"$WORK/$name-bridge.err" &
  BRIDGE_PID=$!
  PIDS+=("$BRIDGE_PID")
  RADIUS_ADDR=$(json_key "$WORK/$name-ready.json" radius 30) || {
    echo "vip-bridge did not start; its stderr:" >&2
    tail -20 "$WORK/$name-bridge.err" >&2
    return 1
  }
}

stop_stack() {
  [ -n "$BRIDGE_PID" ] && stop_pid "$BRIDGE_PID"
  [ -n "$SIM_PID" ] && stop_pid "$SIM_PID"
  BRIDGE_PID=""
  SIM_PID=""
}

sim_counters() { curl -fsS "http://$SIM_ADMIN/counters"; }
sim_reset() { curl -fsS -X POST "http://$SIM_ADMIN/counters/reset" >/dev/null; }

BRIDGE_COMMON=(--secret "$SECRET" --sockets "$SOCKETS" --user 'user{n}' --user-count "$USERS"
  --totp-secret "$TOTP_SECRET")

# The shared store of a0r and br: a redis-server of the scenario's own on a free loopback port,
# without persistence, started before the stack and stopped after it.
REDIS_PID=""
REDIS_PORT=""
REDIS_T0=0
# redis_usable SCENARIO: redis-server (and redis-cli, same Debian package family) installed?
# Without them the scenario is skipped with a note, a failure under CI=true.
redis_usable() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
  if [ "${CI:-}" = true ]; then
    FAILED+=("$1: redis-server is not installed (apt-get install redis-server)")
  else
    NOTES+=("redis-server is not installed: scenario $1 was skipped (apt-get install redis-server)")
  fi
  return 1
}
# start_redis NAME: REDIS_PID, REDIS_PORT; the next start_stack gets [cluster] store = "redis"
# and logs the store's "connected" line.
start_redis() {
  local name=$1 i
  REDIS_PORT=$(free_tcp_port)
  mkdir -p "$WORK/$name-redis"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$WORK/$name-redis" >"$WORK/$name-redis.out" 2>&1 &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  for i in $(seq 1 100); do
    [ "$(redis-cli -p "$REDIS_PORT" PING 2>/dev/null)" = PONG ] && break
    kill -0 "$REDIS_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ "$(redis-cli -p "$REDIS_PORT" PING 2>/dev/null)" != PONG ]; then
    echo "redis-server did not start: $(tail -3 "$WORK/$name-redis.out" | tr '\n' ' ')" >&2
    return 1
  fi
  BRIDGE_EXTRA="[cluster]
store = \"redis\"

[cluster.redis]
urls = [\"redis://127.0.0.1:$REDIS_PORT\"]
timeout = \"250ms\""
  BRIDGE_LOG="warn,vip_core::store=info"
}
stop_redis() {
  [ -z "$REDIS_PID" ] || stop_pid "$REDIS_PID"
  REDIS_PID=""
  BRIDGE_EXTRA=""
  BRIDGE_LOG=warn
}
# store_connected NAME: the bridge of stack NAME logged its connection to Redis (within 10 s).
store_connected() {
  local i
  for i in $(seq 1 100); do
    grep -q "connected to the shared store" "$WORK/$1-bridge.err" 2>/dev/null && return 0
    kill -0 "$BRIDGE_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
# Around a load: redis-server's CPU ticks and command counts (reset first), into
# RES/NAME.redis.json, with the bridge's fallbacks (store calls unanswered: logged at most once
# a second with the number suppressed). No-ops without a redis-server.
redis_begin() {
  [ -n "$REDIS_PID" ] || return 0
  redis-cli -p "$REDIS_PORT" CONFIG RESETSTAT >/dev/null 2>&1 || true
  REDIS_T0=$(proc_ticks "$REDIS_PID")
}
redis_end() { # NAME
  [ -n "$REDIS_PID" ] || return 0
  local t1 stats keys rc=0
  t1=$(proc_ticks "$REDIS_PID")
  stats=$(redis-cli -p "$REDIS_PORT" INFO commandstats 2>/dev/null | tr -d '\r' || true)
  keys=$(redis-cli -p "$REDIS_PORT" DBSIZE 2>/dev/null || echo "")
  python3 - "$RES/$1.redis.json" "$RES/$1.json" "$(getconf CLK_TCK)" "$REDIS_T0" "$t1" \
    "$stats" "$keys" "$REDIS_PID" "$WORK/$1-bridge.err" "$SMOKE" <<'PY' >&2 || rc=$?
import json, os, re, sys
out, load, hz, t0, t1, stats, keys, pid, log, smoke = sys.argv[1:]
r = {"cpu_seconds": (int(t1) - int(t0)) / int(hz), "commands": {}, "usec_per_call": {}}
for line in stats.splitlines():
    m = re.match(r"cmdstat_([^:]+):calls=(\d+),usec=\d+,usec_per_call=([\d.]+)", line)
    # (The statistics' own CONFIG RESETSTAT and INFO are not the bridge's.)
    if m and not m.group(1).startswith(("config", "info")):
        r["commands"][m.group(1)] = int(m.group(2))
        r["usec_per_call"][m.group(1)] = float(m.group(3))
if keys.strip().isdigit():
    r["keys"] = int(keys)
try:
    r["peak_rss_kib"] = int(next(l.split()[1] for l in open(f"/proc/{pid}/status")
                                 if l.startswith("VmHWM:")))
except (OSError, StopIteration):
    pass
fallbacks = 0
if os.path.exists(log):
    for line in open(log, errors="replace"):
        if "the shared store (Redis) did not answer" in line:
            m = re.search(r"suppressed=(\d+)", line)
            fallbacks += 1 + (int(m.group(1)) if m else 0)
r["fallbacks"] = fallbacks
json.dump(r, open(out, "w"))
n = json.load(open(load))["answered"] if os.path.exists(load) else 0
total = sum(r["commands"].values())
per = ", ".join(f"{k} {v / max(n, 1):.2f}" for k, v in sorted(r["commands"].items()))
print(f"redis-server: {r['cpu_seconds']:.2f} s CPU ({r['cpu_seconds'] * 1e6 / max(n, 1):.1f} µs per "
      f"answer), {total} commands ({total / max(n, 1):.2f} per answer: {per}), "
      f"{r.get('keys', '?')} keys; store calls unanswered (fallbacks): {fallbacks}")
msg = []
if n and total == 0:
    msg.append("the bridge sent no command to Redis")
if fallbacks:
    msg.append(f"{fallbacks} store calls fell back to memory (Redis did not answer within 250 ms)")
open(out.replace(".redis.json", ".redis.check"), "w").write("; ".join(msg))
# Fallbacks make a measurement wrong (those logins were decided without Redis): a failure in a
# real run, a note in a smoke run on a busy machine. No command at all is a failure always.
sys.exit(0 if not msg else 3 if smoke == "1" and total else 1)
PY
  case $rc in
    0) ;;
    3) NOTES+=("$1: $(cat "$RES/$1.redis.check" 2>/dev/null)") ;;
    *) FAILED+=("$1: $(cat "$RES/$1.redis.check" 2>/dev/null)") ;;
  esac
}

# (a) code logins, all distinct users, sim latency 0 and 50 ms; a0r is a0 with the shared
# store, a0t a0 against TrustBuilder's simulator. a0, a0r and a0t end with the sequential probe
# on PROBE_USERS users of their own.
for sc in a0 a0r a0t a50; do
  want "$sc" || continue
  lat=0
  [ "$sc" = a50 ] && lat=50
  BACKEND=vip
  if [ "$sc" = a0t ]; then
    log "(a0t) code logins as a0, with backend = \"trustbuilder\" in front of tb-sim"
    BACKEND=trustbuilder
  elif [ "$sc" = a0r ]; then
    log "(a0r) code logins as a0, with [cluster] store = \"redis\" (a private redis-server)"
    redis_usable a0r || continue
    if ! start_redis a0r; then
      FAILED+=("a0r: redis-server did not start")
      stop_redis
      continue
    fi
  else
    log "(a) code logins, distinct users, VIP latency $lat ms"
  fi
  sim_users=$USERS
  [ "$lat" = 0 ] && sim_users=$((USERS + PROBE_USERS))
  if ! start_stack "$sc" "$sim_users" "$lat" 0 10 0; then
    FAILED+=("$sc: stack did not start")
  elif [ -n "$REDIS_PID" ] && ! store_connected "$sc"; then
    FAILED+=("$sc: vip-bridge did not connect to the shared store (see $sc-bridge.err, --keep)")
  else
    sim_reset
    redis_begin
    run_load "$sc" accept run --server "$RADIUS_ADDR" "${BRIDGE_COMMON[@]}" \
      --concurrency "$CONC" --duration "$DUR" --max-requests "$USERS" --timeout-ms 5000 \
      --retries 1 --server-pid "$BRIDGE_PID" --upstream-pid "$SIM_PID"
    redis_end "$sc"
    sim_counters >"$RES/$sc.sim.json" || true
    if [ "$lat" = 0 ]; then
      run_load "$sc-seq" accept run --server "$RADIUS_ADDR" --secret "$SECRET" --sockets 1 \
        --user 'user{n}' --user-start "$USERS" --user-count "$PROBE_USERS" \
        --totp-secret "$TOTP_SECRET" --concurrency 1 --duration "$PROBE_DUR" \
        --max-requests "$PROBE_USERS" --timeout-ms 5000 --retries 1 \
        --server-pid "$BRIDGE_PID" --upstream-pid "$SIM_PID"
    fi
  fi
  stop_stack
  stop_redis
  BACKEND=vip
done

# (rest) FreeRADIUS + rlm_rest, the HTTP-upstream anchor: what one would build without
# vip-bridge. FreeRADIUS 3.2 makes one mutual-TLS HTTPS POST (a SOAP CheckOtpRequest) per
# Access-Request to a vip-sim configured exactly as a0's (same users, TOTP secret, latency
# 0 ms), over kept-alive connections, and accepts only on HTTP 200 with status 0000
# (bench/freeradius/setup.sh --rest-uri). vip-load sends the same logins as to a0.
if want rest; then
  log "(rest) FreeRADIUS + rlm_rest: a SOAP checkOtp POST per login to vip-sim (VIP latency 0 ms)"
  if ! command -v freeradius >/dev/null || [ ! -e /usr/lib/freeradius/rlm_rest.so ]; then
    if [ "${CI:-}" = true ]; then
      FAILED+=("rest: FreeRADIUS's rlm_rest is not installed (apt-get install freeradius freeradius-rest)")
    else
      NOTES+=("FreeRADIUS's rlm_rest is not installed: the rest scenario was skipped (apt-get install freeradius-rest)")
    fi
  elif ! start_sim rest "$USERS" 0 0; then
    FAILED+=("rest: vip-sim did not start")
  elif ! REST_PORT=$(free_port) ||
    ! "$ROOT/bench/freeradius/setup.sh" --dir "$WORK/rest-freeradius" --port "$REST_PORT" \
      --secret "$SECRET" --rest-uri "https://$SIM_ADDR/vipuserservices/AuthenticationService_1_8" \
      --rest-ca "$WORK/certs/ca.pem" --rest-cert "$WORK/certs/client.pem" \
      --rest-key "$WORK/certs/client.key" >"$WORK/rest-setup.out" 2>"$WORK/rest-setup.err"; then
    cat "$WORK/rest-setup.err" >&2
    FAILED+=("rest: bench/freeradius/setup.sh --rest-uri failed")
  else
    freeradius -f -d "$WORK/rest-freeradius" >"$WORK/rest-freeradius.out" 2>&1 &
    REST_FR_PID=$!
    PIDS+=("$REST_FR_PID")
    # Up when it answers; a wrong code (for the last user, whom the run does not reach) must
    # be rejected: the decision is VIP's status, not HTTP 200 (VIP answers 200 to it too).
    # FreeRADIUS holds every Access-Reject for reject_delay (1 s): the probe waits 3 s.
    rest_probe() { # vip-load password options...; prints "ACCEPTS REJECTS"
      "$LOAD" run --server "127.0.0.1:$REST_PORT" --secret "$SECRET" --sockets 1 --concurrency 1 \
        --max-requests 1 --user 'user{n}' --user-start "$((USERS - 1))" --user-count 1 \
        --timeout-ms 3000 --retries 0 "$@" --label rest-probe 2>/dev/null |
        python3 -c 'import json,sys; r=json.loads(sys.stdin.readline()); print(r["accept"], r["reject"])' \
          2>/dev/null || true
    }
    probe=""
    for _ in $(seq 1 20); do
      probe=$(rest_probe --password 000000)
      [ -n "$probe" ] && [ "$probe" != "0 0" ] && break
      kill -0 "$REST_FR_PID" 2>/dev/null || break
      sleep 0.2
    done
    if [ "$probe" != "0 1" ]; then
      FAILED+=("rest: a wrong code was not rejected by FreeRADIUS + rlm_rest (accepts rejects: '$probe'; see --keep and rest-freeradius/log)")
    elif [ "$(rest_probe --totp-secret "$TOTP_SECRET")" != "1 0" ]; then
      FAILED+=("rest: the right code was not accepted by FreeRADIUS + rlm_rest (see --keep and rest-freeradius/log)")
    else
      sim_reset
      run_load rest accept run --server "127.0.0.1:$REST_PORT" --secret "$SECRET" \
        --sockets "$SOCKETS" --user 'user{n}' --user-count "$((USERS - 1))" \
        --totp-secret "$TOTP_SECRET" --concurrency "$CONC" --duration "$DUR" \
        --max-requests "$((USERS - 1))" --timeout-ms 5000 --retries 1 \
        --server-pid "$REST_FR_PID" --upstream-pid "$SIM_PID"
      sim_counters >"$RES/rest.sim.json" || true
      [ -s "$RES/rest.sim.json" ] && python3 - "$RES/rest.sim.json" <<'PY' >&2 || true
import json, sys
c = json.load(open(sys.argv[1]))
print(f"vip-sim during rest: {json.dumps(c.get('calls', {}))}, {c.get('http_requests')} HTTP "
      f"requests on {c.get('tls_handshakes')} TLS handshakes")
PY
    fi
    stop_pid "$REST_FR_PID"
  fi
  stop_stack
fi

# (ldap) as (a) at 0 ms, with an LDAP first factor: User-Password "password,code"; the bridge
# finds the user with the service account (one search) and binds as them (one bind) over
# LDAPS to a private slapd, then checks the code with VIP.
# slapd's cn=Monitor counters "connections binds searches" (connections accepted, operations
# completed); "" without ldapsearch. Between two readings, each count is one too many: the
# second reading's connection and bind, and the first reading's search (completed after it
# was counted).
ldap_counters() {
  command -v ldapsearch >/dev/null || return 0
  LDAPTLS_CACERT="$WORK/ldap/ca.pem" ldapsearch -LLL -o ldif-wrap=no -H "$LDAP_URL" -x \
    -D "cn=admin,dc=example,dc=org" -y "$WORK/ldap/root.pass" -b cn=Monitor -s sub \
    '(|(cn=Total)(cn=Bind)(cn=Search))' monitorCounter monitorOpCompleted 2>/dev/null |
    awk '/^dn: cn=Total,cn=Connections/ { w = "c" } /^dn: cn=Bind,/ { w = "b" }
      /^dn: cn=Search,/ { w = "s" } /^monitorCounter:/ && w == "c" { c = $2 }
      /^monitorOpCompleted:/ && w == "b" { b = $2 } /^monitorOpCompleted:/ && w == "s" { s = $2 }
      END { if (c != "") print c, b, s }'
}
if want ldap; then
  log "(ldap) LDAP password + code logins, distinct users, VIP latency 0 ms"
  if [ ! -x /usr/sbin/slapd ] || [ ! -x /usr/sbin/slapadd ]; then
    if [ "${CI:-}" = true ]; then
      FAILED+=("ldap: slapd is not installed (apt-get install slapd ldap-utils)")
    else
      NOTES+=("slapd is not installed: the ldap scenario was skipped (apt-get install slapd ldap-utils)")
    fi
  elif ! LDAP_PORT=$(free_tcp_port) ||
    ! "$ROOT/bench/ldap/setup.sh" --dir "$WORK/ldap" --port "$LDAP_PORT" --users "$USERS" \
      --password "$LDAP_PASSWORD" --threads "$LDAP_THREADS" >"$WORK/ldap-setup.out" 2>"$WORK/ldap-setup.err"; then
    cat "$WORK/ldap-setup.err" >&2
    FAILED+=("ldap: bench/ldap/setup.sh failed")
  else
    LDAP_URL="ldaps://127.0.0.1:$LDAP_PORT"
    echo "slapd: $USERS users loaded in $(sed -n 's/^seconds=//p' "$WORK/ldap-setup.out") s" >&2
    /usr/sbin/slapd -f "$WORK/ldap/slapd.conf" -h "$LDAP_URL/" -d 0 >"$WORK/slapd.out" 2>&1 &
    SLAPD_PID=$!
    PIDS+=("$SLAPD_PID")
    ok=0
    for _ in $(seq 1 100); do
      if python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.5)' \
        "$LDAP_PORT" 2>/dev/null; then ok=1; break; fi
      kill -0 "$SLAPD_PID" 2>/dev/null || break
      sleep 0.1
    done
    if [ "$ok" = 0 ]; then
      FAILED+=("ldap: slapd did not listen on $LDAP_URL: $(tail -3 "$WORK/slapd.out" | tr '\n' ' ')")
    else
      BRIDGE_EXTRA="[directories.corp]
kind = \"ldap\"
urls = [\"$LDAP_URL\"]
ca_file = \"$WORK/ldap/ca.pem\"
bind_dn = \"cn=vip-bridge,ou=services,dc=example,dc=org\"
bind_password_file = \"$WORK/ldap/bind.pass\"
base_dn = \"ou=people,dc=example,dc=org\"
user_filter = \"(uid={user})\"
pool_size = $LDAP_POOL

[policies.ldap]
first_factor = \"ldap\"
directory = \"corp\"
mode = \"code\"
push_mode = \"blocking\"
push_timeout = \"60s\"
number_challenge = false"
      CLIENT_POLICY=ldap
      if start_stack ldap "$USERS" 0 0 10 0; then
        # The first factor is really checked: a wrong directory password with the right code
        # is refused (the last user, whom the run does not reach).
        if ! "$LOAD" run --server "$RADIUS_ADDR" --secret "$SECRET" --sockets 1 --concurrency 1 \
          --max-requests 1 --user 'user{n}' --user-start "$((USERS - 1))" --user-count 1 \
          --totp-secret "$TOTP_SECRET" --password-prefix "not-$LDAP_PASSWORD," \
          --timeout-ms 5000 --label ldap-wrong 2>/dev/null |
          python3 -c 'import json,sys; r=json.loads(sys.stdin.readline()); sys.exit(0 if r["reject"] == 1 else 1)'; then
          FAILED+=("ldap: a wrong directory password with the right code was not rejected")
        fi
        sim_reset
        ldap_before=$(ldap_counters || true)
        slapd_t0=$(proc_ticks "$SLAPD_PID")
        run_load ldap accept run --server "$RADIUS_ADDR" "${BRIDGE_COMMON[@]}" \
          --password-prefix "$LDAP_PASSWORD," \
          --concurrency "$CONC" --duration "$DUR" --max-requests "$((USERS - 1))" --timeout-ms 5000 \
          --retries 1 --server-pid "$BRIDGE_PID" --upstream-pid "$SIM_PID"
        slapd_t1=$(proc_ticks "$SLAPD_PID")
        ldap_after=$(ldap_counters || true)
        sim_counters >"$RES/ldap.sim.json" || true
        python3 - "$RES/ldap.slapd.json" "$(getconf CLK_TCK)" "$slapd_t0" "$slapd_t1" \
          "$ldap_before" "$ldap_after" "$LDAP_POOL" "$LDAP_THREADS" "$SLAPD_PID" <<'PY'
import json, sys
out, hz, t0, t1, before, after, pool, threads, pid = sys.argv[1:]
r = {"cpu_seconds": (int(t1) - int(t0)) / int(hz), "pool_size": int(pool),
     "threads": int(threads)}
try:
    r["peak_rss_kib"] = int(next(l.split()[1] for l in open(f"/proc/{pid}/status")
                                 if l.startswith("VmHWM:")))
except (OSError, StopIteration):
    pass
if before and after:
    b, a = [int(x) for x in before.split()], [int(x) for x in after.split()]
    r["connections"], r["binds"], r["searches"] = (a[i] - b[i] - 1 for i in range(3))
json.dump(r, open(out, "w"))
PY
        [ -s "$RES/ldap.json" ] && python3 - "$RES/ldap.json" "$RES/ldap.slapd.json" <<'PY' >&2 || true
import json, sys
r, s = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
n = r["answered"] or 1
ops = (f"; {s['connections']} new connections, {s['binds']} binds, {s['searches']} searches"
       if "binds" in s else "")
print(f"slapd: {s['cpu_seconds']:.2f} s CPU ({s['cpu_seconds'] * 1e6 / n:.0f} µs per login){ops}")
PY
      else
        FAILED+=("ldap: stack did not start")
      fi
      stop_stack
      BRIDGE_EXTRA=""
      CLIENT_POLICY=""
    fi
    stop_pid "$SLAPD_PID"
  fi
fi

if want open; then
  log "open loop at $OPEN_RATE/s against vip-bridge (VIP latency 0 ms)"
  if start_stack open "$USERS" 0 0 10 0; then
    run_load open-bridge accept run --server "$RADIUS_ADDR" "${BRIDGE_COMMON[@]}" \
      --rate "$OPEN_RATE" --duration "$DUR" --max-requests "$USERS" --timeout-ms 5000 \
      --retries 1 --server-pid "$BRIDGE_PID" --upstream-pid "$SIM_PID"
  else
    FAILED+=("open: stack did not start")
  fi
  stop_stack
  # The latency target is stated at half of FreeRADIUS's rate: offer exactly that load.
  HALF_FR=""
  [ -s "$RES/freeradius.json" ] && HALF_FR=$(python3 -c \
    'import json,sys; print(int(json.load(open(sys.argv[1]))["throughput_per_s"] / 2))' \
    "$RES/freeradius.json" 2>/dev/null || true)
  if [ -n "$HALF_FR" ] && [ "$HALF_FR" -gt 0 ]; then
    log "open loop at $HALF_FR/s (half FreeRADIUS's rate) against vip-bridge (VIP latency 0 ms)"
    if start_stack open-half "$USERS" 0 0 10 0; then
      run_load open-half-bridge accept run --server "$RADIUS_ADDR" "${BRIDGE_COMMON[@]}" \
        --rate "$HALF_FR" --duration "$DUR" --max-requests "$USERS" --timeout-ms 5000 \
        --retries 1 --server-pid "$BRIDGE_PID" --upstream-pid "$SIM_PID"
    else
      FAILED+=("open-half: stack did not start")
    fi
    stop_stack
  fi
  # And at half of vip-bridge's own closed-loop maximum (a0 of this run), the load the
  # project's latency goal names.
  HALF_A0=""
  [ -s "$RES/a0.json" ] && HALF_A0=$(python3 -c \
    'import json,sys; print(int(json.load(open(sys.argv[1]))["throughput_per_s"] / 2))' \
    "$RES/a0.json" 2>/dev/null || true)
  if [ -n "$HALF_A0" ] && [ "$HALF_A0" -gt 0 ]; then
    log "open loop at $HALF_A0/s (half vip-bridge's a0 rate) against vip-bridge (VIP latency 0 ms)"
    if start_stack open-half-a0 "$USERS" 0 0 10 0; then
      run_load open-half-a0-bridge accept run --server "$RADIUS_ADDR" "${BRIDGE_COMMON[@]}" \
        --rate "$HALF_A0" --duration "$DUR" --max-requests "$USERS" --timeout-ms 5000 \
        --retries 1 --server-pid "$BRIDGE_PID" --upstream-pid "$SIM_PID"
    else
      FAILED+=("open-half-a0: stack did not start")
    fi
    stop_stack
  fi
fi

# (b) rejected by throttling: one user, one code attempt allowed per hour; br is b with the
# shared store. Both end with the sequential probe (the same throttled user).
for sc in b br; do
  want "$sc" || continue
  if [ "$sc" = br ]; then
    log "(br) throttled requests as b, with [cluster] store = \"redis\" (a private redis-server)"
    redis_usable br || continue
    if ! start_redis br; then
      FAILED+=("br: redis-server did not start")
      stop_redis
      continue
    fi
  else
    log "(b) throttled requests (no VIP call)"
  fi
  if ! start_stack "$sc" 10 0 0 1 0; then
    FAILED+=("$sc: stack did not start")
  elif [ -n "$REDIS_PID" ] && ! store_connected "$sc"; then
    FAILED+=("$sc: vip-bridge did not connect to the shared store (see $sc-bridge.err, --keep)")
  else
    # The one allowed attempt, so that everything after it is throttled.
    "$LOAD" run --server "$RADIUS_ADDR" --secret "$SECRET" --sockets 1 --concurrency 1 \
      --max-requests 1 --user user0 --password 000000 --label "$sc-first" >/dev/null 2>&1 || true
    sim_reset
    redis_begin
    run_load "$sc" reject run --server "$RADIUS_ADDR" --secret "$SECRET" --sockets "$SOCKETS" \
      --concurrency "$CONC" --duration "$DUR" --user user0 --password 000000 \
      --timeout-ms 5000 --retries 1 --server-pid "$BRIDGE_PID" --upstream-pid "$SIM_PID"
    redis_end "$sc"
    sim_counters >"$RES/$sc.sim.json" || true
    run_load "$sc-seq" reject run --server "$RADIUS_ADDR" --secret "$SECRET" --sockets 1 \
      --concurrency 1 --duration "$PROBE_DUR" --user user0 --password 000000 \
      --timeout-ms 5000 --retries 1 --server-pid "$BRIDGE_PID" --upstream-pid "$SIM_PID"
  fi
  stop_stack
  stop_redis
done

# (c) retransmits answered from the response cache: each request repeated 9 times after its answer
if want c; then
  log "(c) retransmits answered from the cache"
  if start_stack c "$USERS" 0 0 10 0; then
    sim_reset
    run_load c accept run --server "$RADIUS_ADDR" "${BRIDGE_COMMON[@]}" \
      --concurrency "$CONC" --duration "$DUR" --max-requests "$USERS" --repeat 9 \
      --timeout-ms 5000 --retries 1 --server-pid "$BRIDGE_PID" --upstream-pid "$SIM_PID"
    sim_counters >"$RES/c.sim.json" || true
  else
    FAILED+=("c: stack did not start")
  fi
  stop_stack
fi

# (d) VB_PUSHES logins waiting on pushes at once (the phone approves after VB_PUSH_DELAY_MS)
if want d; then
  log "(d) $PUSHES blocking pushes at once (approve after $PUSH_DELAY_MS ms)"
  if start_stack d "$PUSHES" 0 "$PUSH_DELAY_MS" 10 0; then
    sim_reset
    d_sockets=$(((PUSHES + 255) / 256))
    [ "$d_sockets" -lt "$SOCKETS" ] && d_sockets=$SOCKETS
    wait_ms=$((PUSH_DELAY_MS + 15000))
    run_load d accept run --server "$RADIUS_ADDR" --secret "$SECRET" --sockets "$d_sockets" \
      --user 'user{n}' --user-count "$PUSHES" --password push \
      --concurrency "$PUSHES" --max-requests "$PUSHES" --duration 1 \
      --timeout-ms "$wait_ms" --retries 0 --drain-ms "$wait_ms" --server-pid "$BRIDGE_PID" --upstream-pid "$SIM_PID"
    sim_counters >"$RES/d.sim.json" || true
  else
    FAILED+=("d: stack did not start")
  fi
  stop_stack
fi

# (e) PAM logins through the daemon socket
if want e; then
  log "(e) PAM logins through the daemon socket"
  if start_stack e "$USERS" 0 0 10 1; then
    pam_sock=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("pam") or "")' "$WORK/e-ready.json")
    if [ -n "$pam_sock" ] && [ -S "$pam_sock" ] &&
      "$LOAD" pam --socket "$pam_sock" --concurrency 1 --max-requests 1 --duration 5 \
        --user 'user{n}' --user-start "$((USERS - 1))" --user-count 1 \
        --totp-secret "$TOTP_SECRET" --timeout-ms 5000 --label e-probe 2>/dev/null |
      python3 -c 'import json,sys; r=json.loads(sys.stdin.readline()); sys.exit(0 if r["answered"] else 1)'; then
      run_load e accept pam --socket "$pam_sock" --concurrency 16 --duration "$DUR" \
        --max-requests "$((USERS - 1))" --user 'user{n}' --user-count "$((USERS - 1))" \
        --totp-secret "$TOTP_SECRET" --server-pid "$BRIDGE_PID" --upstream-pid "$SIM_PID"
    else
      NOTES+=("(e) PAM: the daemon's PAM door did not answer a login on its socket; scenario skipped (see the bridge log in the work directory, --keep)")
    fi
  else
    NOTES+=("(e) PAM: vip-bridge did not start with a [pam] section; scenario skipped (see its log in the work directory, --keep)")
  fi
  stop_stack
fi

# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------
# The "LDAP password + code" section of RESULTS.md: a0 and ldap from this run side by side.
ldap_section() {
  python3 - "$RES" "$LDAP_POOL" "$LDAP_THREADS" "$CONC" "$USERS" "$PROFILE" "$DUR" <<'PY'
import datetime, json, os, sys
res, pool, threads, conc, users, profile, dur = sys.argv[1:]
def load(name):
    p = os.path.join(res, name + ".json")
    return json.load(open(p)) if os.path.exists(p) else None
a0, ld, sl = load("a0"), load("ldap"), load("ldap.slapd") or {}
def us(r, who):
    cpu = ((r or {}).get(who) or {}).get("cpu_seconds")
    return cpu * 1e6 / r["answered"] if cpu is not None and r["answered"] else None
def f(v, d=0):
    return "-" if v is None else f"{v:,.{d}f}"
def calls(name):
    p = os.path.join(res, name + ".sim.json")
    return json.dumps(json.load(open(p)).get("calls", {})) if os.path.exists(p) else "?"
w = print
w("## LDAP password + code (first factor)")
w("")
w("Scenario `ldap`: as (a) at VIP 0 ms (closed loop, concurrency " + conc + ", each user once),")
w("through a policy with `first_factor = \"ldap\"`: User-Password is `password,code`; for each login")
w("the bridge searches `(uid=USER)` under ou=people as its service account, binds as the entry")
w("found with the password, then checks the code with VIP. The directory is Debian's slapd 2.5")
w(f"(back_mdb, {users} users seeded with slapadd, one {{SSHA}} password, {threads} threads,")
w("loglevel 0) on loopback over LDAPS (`bench/ldap/setup.sh`), on the same two cores;")
w(f"`pool_size = {pool}` (connections per server for the service account's searches, and as many")
w("for users' binds). CPU is per answered login, each process's utime+stime during the run.")
w(f"Both rows come from one run ({datetime.datetime.now().isoformat(timespec='seconds')}, {profile} "
  f"build, up to {dur} s each, load average {' '.join(open('/proc/loadavg').read().split()[:3])} "
  "at the end): compare them with each other rather than with the tables above.")
w("")
w("| scenario | logins/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | accept | reject | lost | vip-bridge µs/login | vip-sim µs | slapd µs | vip-load µs | vip-bridge cores | peak RSS MiB |")
w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for title, r, sl_us in (("(a) code only, VIP 0 ms", a0, None),
                        ("ldap: LDAPS password + code, VIP 0 ms", ld,
                         sl.get("cpu_seconds", 0) * 1e6 / ld["answered"] if ld and ld["answered"] and "cpu_seconds" in sl else None)):
    if r is None:
        continue
    l, s = r["latency"], r.get("server") or {}
    rss = s.get("peak_rss_kib")
    w(f"| {title} | {f(r['throughput_per_s'])} | {l['p50_ms']:.2f} | {l['p90_ms']:.2f} | "
      f"{l['p99_ms']:.2f} | {l['p999_ms']:.2f} | {l['max_ms']:.1f} | {r['accept']} | {r['reject']} | "
      f"{r['lost']} | {f(us(r, 'server'))} | {f(us(r, 'upstream'))} | {f(sl_us)} | "
      f"{f(us(r, 'generator'))} | {f(s.get('cpu_cores'), 2)} | {f(rss / 1024 if rss else None, 1)} |")
w("")
if a0 and ld and a0["throughput_per_s"]:
    w(f"- ldap / a0: {ld['throughput_per_s'] / a0['throughput_per_s']:.0%} of the throughput; "
      f"vip-bridge CPU per login {f(us(ld, 'server'))} µs vs {f(us(a0, 'server'))} µs "
      f"(+{f((us(ld, 'server') or 0) - (us(a0, 'server') or 0))} µs for the search and the bind)")
if "binds" in sl and ld:
    n = ld["answered"] or 1
    w(f"- slapd (cn=Monitor) during the run: {sl['connections']} connections opened, "
      f"{sl['binds']} binds, {sl['searches']} searches for {ld['answered']} logins "
      f"({sl['binds'] / n:.2f} binds and {sl['searches'] / n:.2f} searches per login): " +
      ("the pooled connections are reused, no TLS handshake per login"
       if sl["connections"] <= 4 * int(pool) else
       f"{n / max(sl['connections'], 1):.1f} logins per connection: connections are not kept"))
w(f"- VIP calls during ldap: {calls('ldap')}; during a0: {calls('a0')}")
PY
}

# The "FreeRADIUS + rlm_rest" section of RESULTS.md: freeradius (files/PAP), rest and a0 from
# this run side by side, the ratios and the project's goals against the anchor.
rest_section() {
  python3 - "$RES" "$CONC" "$USERS" "$PROFILE" "$DUR" "$LOADAVG_START" <<'PY'
import datetime, json, os, sys
res, conc, users, profile, dur, load_start = sys.argv[1:]
def load(name):
    p = os.path.join(res, name + ".json")
    return json.load(open(p)) if os.path.exists(p) else None
fr, rest, a0, oh = load("freeradius"), load("rest"), load("a0"), load("open-half-a0-bridge")
def us(r, who):
    cpu = ((r or {}).get(who) or {}).get("cpu_seconds")
    return cpu * 1e6 / r["answered"] if cpu is not None and r and r["answered"] else None
def f(v, d=0):
    return "-" if v is None else f"{v:,.{d}f}"
def sim(name):
    p = os.path.join(res, name + ".sim.json")
    return json.load(open(p)) if os.path.exists(p) else {}
def verdict(ok):
    return "**met**" if ok else "**not met**"
w = print
w("## FreeRADIUS + rlm_rest (the HTTP-upstream anchor)")
w("")
w("Scenario `rest`: what one would build without vip-bridge. FreeRADIUS 3.2.1 with rlm_rest")
w("(`bench/freeradius/setup.sh --rest-uri`) makes one mutual-TLS HTTPS POST per Access-Request,")
w("a SOAP CheckOtpRequest (userId = User-Name, otp = User-Password), to a vip-sim configured as")
w("a0's (same users and TOTP secret, latency 0 ms), over kept-alive HTTP/1.1 connections (a pool")
w("of 32, the thread pool's maximum); it checks the name and code charset first, sends")
w("`SOAPAction: \"\"`, and accepts only on HTTP 200 with `<status>0000</status>` (a wrong code")
w("must be rejected before the run). vip-load sends the same logins as to a0 (closed loop,")
w(f"concurrency {conc}, each of {users} users once with its TOTP code). files/PAP is the")
w("`freeradius` scenario (no upstream call at all). CPU is utime+stime per answered request of")
w("each process during its run; all three servers, vip-sim and vip-load share the same two cores.")
w(f"All rows come from one run ({datetime.datetime.now().isoformat(timespec='seconds')}, {profile} "
  f"build, up to {dur} s each, load average {load_start} at the start and "
  f"{' '.join(open('/proc/loadavg').read().split()[:3])} at the end).")
w("")
w("| scenario | answered/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | accept | reject | lost | server µs/req | vip-sim µs/req | vip-load µs/req | server cores | peak RSS MiB |")
w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for title, r in (("FreeRADIUS 3.2.1 files/PAP", fr),
                 ("FreeRADIUS 3.2.1 + rlm_rest (SOAP checkOtp), VIP 0 ms", rest),
                 ("(a) vip-bridge code logins, VIP 0 ms", a0)):
    if r is None:
        continue
    l, s = r["latency"], r.get("server") or {}
    rss = s.get("peak_rss_kib")
    w(f"| {title} | {f(r['throughput_per_s'])} | {l['p50_ms']:.2f} | {l['p90_ms']:.2f} | "
      f"{l['p99_ms']:.2f} | {l['p999_ms']:.2f} | {l['max_ms']:.1f} | {r['accept']} | {r['reject']} | "
      f"{r['lost']} | {f(us(r, 'server'))} | {f(us(r, 'upstream'))} | {f(us(r, 'generator'))} | "
      f"{f(s.get('cpu_cores'), 2)} | {f(rss / 1024 if rss else None, 1)} |")
w("")
for name in ("rest", "a0"):
    c = sim(name)
    if c:
        w(f"- vip-sim during {name}: {json.dumps(c.get('calls', {}))}, {c.get('http_requests')} HTTP "
          f"requests on {c.get('tls_handshakes')} TLS handshakes")
tp = lambda r: r["throughput_per_s"] if r else None
if a0 and rest and tp(rest):
    x = tp(a0) / tp(rest)
    b, rr = us(a0, "server"), us(rest, "server")
    w(f"- vip-bridge / (FreeRADIUS + rlm_rest): **{x:.2f}×** ({f(tp(a0))}/s vs {f(tp(rest))}/s); "
      f"server CPU per login {f(b)} µs vs {f(rr)} µs"
      + (f" ({rr / b:.2f}× as much for FreeRADIUS + rlm_rest)" if b and rr else ""))
if a0 and fr and tp(fr):
    w(f"- vip-bridge / (FreeRADIUS files/PAP): **{tp(a0) / tp(fr):.2f}×** ({f(tp(a0))}/s vs "
      f"{f(tp(fr))}/s); server CPU per request {f(us(a0, 'server'))} µs vs {f(us(fr, 'server'))} µs")
w("")
w("Goals of the project's issue, against these figures:")
w("")
def total(r):
    parts = [us(r, k) for k in ("server", "upstream", "generator")]
    return sum(p for p in parts if p is not None)
if a0 and rest and tp(rest):
    x = tp(a0) / tp(rest)
    w(f"- Code logins ≥ 2× FreeRADIUS + rlm_rest: {x:.2f}×: {verdict(x >= 2)}.")
    if x < 2:
        bs, bsim, bgen = us(a0, "server"), us(a0, "upstream"), us(a0, "generator")
        rs, rsim, rgen = us(rest, "server"), us(rest, "upstream"), us(rest, "generator")
        w(f"  What limits it: both are bound by the same two cores and pay for the same upstream "
          f"call. Per login, all processes together: a0 {f(total(a0))} µs (vip-bridge {f(bs)}, vip-sim "
          f"{f(bsim)}, vip-load {f(bgen)}), rest {f(total(rest))} µs (FreeRADIUS {f(rs)}, vip-sim "
          f"{f(rsim)}, vip-load {f(rgen)}).")
        if bsim is not None and bgen is not None and tp(rest):
            goal = 2 * tp(rest)
            budget = 2e6 / goal
            left = budget - bsim - bgen
            used = total(a0) * tp(a0) / 1e6
            if left >= (bs or 0):
                w(f"  The CPU cost does not explain it: 2× is {f(goal)}/s, {budget:.0f} µs of the two "
                  f"cores per login for every process, and a0's stack spends {f(total(a0))} µs. It "
                  f"used only {used:.2f} of the two cores during a0: the rest went to other work on "
                  "the machine (see the load average) or to waiting. By CPU per login of the whole "
                  f"stack, FreeRADIUS + rlm_rest's costs {total(rest) / total(a0):.2f}× vip-bridge's; a "
                  "quieter machine is needed to turn that into throughput.")
            else:
                w(f"  2× is {f(goal)}/s: {budget:.0f} µs of the two cores per login for every process, "
                  f"which leaves vip-bridge {left:.0f} µs with vip-sim and vip-load as they are"
                  + (f" ({left / bs:.0%} of what it spends now)." if bs else ".")
                  + " The simulator's own cost per call is part of both stacks: the ratio measures "
                  "the whole stack, not vip-bridge alone.")
else:
    w("- Code logins ≥ 2× FreeRADIUS + rlm_rest: not measured in this run (needs rest and a0).")
if a0 and fr and tp(fr):
    y = tp(a0) / tp(fr)
    w(f"- Code logins ≥ 0.7× FreeRADIUS files/PAP: {y:.2f}×: {verdict(y >= 0.7)}.")
    if y < 0.7:
        w(f"  What limits it: files/PAP makes no upstream call; each code login costs the HTTPS "
          f"SOAP round trip on the same cores (a0 {f(total(a0))} µs of CPU per login for all "
          f"processes, files/PAP {f(total(fr))} µs per request; at equal cores that alone allows "
          f"a0 at most {total(fr) / total(a0):.2f}× FreeRADIUS files/PAP).")
else:
    w("- Code logins ≥ 0.7× FreeRADIUS files/PAP: not measured in this run (needs freeradius and a0).")
if oh and a0:
    ok = oh["latency"]["p99_ms"] < 5 and oh["lost"] == 0
    w(f"- p99 < 5 ms at half of vip-bridge's closed-loop maximum, open loop "
      f"({f(oh.get('target_rate'))}/s offered = half of a0's {f(tp(a0))}/s): p99 "
      f"{oh['latency']['p99_ms']:.2f} ms (p50 {oh['latency']['p50_ms']:.2f}, p99.9 "
      f"{oh['latency']['p999_ms']:.2f}), {oh['answered']} of {oh['sent']} answered, {oh['lost']} lost: "
      f"{verdict(ok)}.")
    if not ok:
        l = oh["latency"]
        w(f"  What limits it: most logins are fast (p50 {l['p50_ms']:.2f} ms, p90 {l['p90_ms']:.2f} ms); "
          "the tail is queueing when the two cores are taken at once (by vip-sim, vip-load and "
          "whatever else runs on the machine), which an open-loop clock does not back off from.")
else:
    w("- p99 < 5 ms at half of vip-bridge's closed-loop maximum (open loop): not measured in this "
      "run (scenario `open` with a0 in the same run offers half of a0's rate).")
PY
}

log "summary"
for n in "${NOTES[@]:-}"; do [ -n "$n" ] && echo "note: $n" >&2; done

if [ "$SMOKE" = 0 ]; then
  export VB_NOTES
  VB_NOTES=$(printf '%s\n' "${NOTES[@]:-}")
  export VB_FAILED
  VB_FAILED=$(printf '%s\n' "${FAILED[@]:-}")
  # A partial run (--only) must not replace the full results.
  OUT_MD=$ROOT/bench/RESULTS.md
  [ -n "$ONLY" ] && OUT_MD=$ROOT/bench/RESULTS.partial.md
  # Into a temporary file first: report.py reads the old RESULTS.md for its Soak section.
  python3 "$ROOT/bench/report.py" "$RES" "$BIN" "$DUR" "$CONC" "$OPEN_RATE" "$PUSHES" \
    "$PUSH_DELAY_MS" "$VIP_MAX_IN_FLIGHT" >"$OUT_MD.tmp"
  # The ldap scenario's section (report.py does not know it), before "Raw JSON reports".
  if [ -s "$RES/ldap.json" ]; then
    ldap_section >"$RES/ldap.md"
    python3 - "$OUT_MD.tmp" "$RES/ldap.md" <<'PY'
import sys
path, section = sys.argv[1], open(sys.argv[2]).read()
text = open(path).read()
for mark in ("\nRaw JSON reports:", "\n## Soak"):
    at = text.find(mark)
    if at >= 0:
        text = text[:at + 1] + section + "\n" + text[at + 1:]
        break
else:
    text = text.rstrip("\n") + "\n\n" + section
open(path, "w").write(text)
PY
  fi
  # The rest scenario's section (report.py does not know it either), before "Raw JSON reports".
  if [ -s "$RES/rest.json" ]; then
    rest_section >"$RES/rest.md"
    python3 - "$OUT_MD.tmp" "$RES/rest.md" <<'PY'
import sys
path, section = sys.argv[1], open(sys.argv[2]).read()
text = open(path).read()
for mark in ("\nRaw JSON reports:", "\n## Soak"):
    at = text.find(mark)
    if at >= 0:
        text = text[:at + 1] + section + "\n" + text[at + 1:]
        break
else:
    text = text.rstrip("\n") + "\n\n" + section
open(path, "w").write(text)
PY
  fi
  mv "$OUT_MD.tmp" "$OUT_MD"
  echo "wrote $OUT_MD" >&2
fi

if [ "${#FAILED[@]}" -gt 0 ]; then
  printf 'FAILED: %s\n' "${FAILED[@]}" >&2
  exit 1
fi
echo "all scenarios passed their checks" >&2
