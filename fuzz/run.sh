#!/usr/bin/env bash
# Builds and runs vip-bridge's cargo-fuzz targets (see fuzz/README.md).
#
#   bash fuzz/run.sh --smoke [--seconds S]     build, then S seconds per target (default 10);
#                                              non-zero exit on any crash, timeout, OOM or leak
#   bash fuzz/run.sh --runs [N]                campaign: N executions per target (default
#                                              10000000), then fuzz/RESULTS.md is written
#   options: --jobs J       run J targets at once (default 1; the machine has to have the cores)
#            --targets "a b"  only these targets
#
# Needs the nightly toolchain and cargo-fuzz (installed with `cargo install cargo-fuzz --locked`
# when missing, unless FUZZ_NO_INSTALL=1). New corpus entries go to fuzz/work/corpus/<target>
# (gitignored); the committed seeds in fuzz/corpus/<target> are only read. Crash, timeout and
# OOM reproducers land in fuzz/artifacts/<target>/ (gitignored); replay one with
#   cargo +nightly fuzz run -O -a <target> fuzz/artifacts/<target>/<file>
# All targets are built once, then the built binaries are run directly (what `cargo fuzz run`
# does, minus its rebuild check), so every target of a run fuzzes the same code.
set -euo pipefail

FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$FUZZ_DIR"

ALL_TARGETS=(radius_packet soap_response ipc_frame state_unseal config_load)
# Longest input per target: a RADIUS datagram is at most 4096 octets (the receive buffer);
# SOAP bodies and IPC streams are kept to 8 KiB for speed (the parsers have no size-dependent
# limits below that); a State token is at most 253 octets; the packaged config is ~11 KiB.
declare -A MAX_LEN=(
    [radius_packet]=4096
    [soap_response]=8192
    [ipc_frame]=8192
    [state_unseal]=512
    [config_load]=16384
)
# Per-target libFuzzer flags. state_unseal keeps every opened State's nonce in the sealer's
# replay cache, by design: libFuzzer would see that as a possible leak after each such input
# and run a full LeakSanitizer scan (10x slower); its memory is bounded by -rss_limit_mb.
declare -A EXTRA=(
    [state_unseal]="-detect_leaks=0"
)
# Optimised, with debug assertions and overflow checks, AddressSanitizer (cargo-fuzz's default).
BUILD_FLAGS=(-O -a)
BIN_DIR="target/x86_64-unknown-linux-gnu/release"
# Per-input limits: a hang is an input taking over 10 s; an OOM is RSS over 2 GiB or a single
# allocation over 512 MiB.
LIMITS=(-rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10)
TOOLCHAIN="+nightly"

mode=""
seconds=10
runs=10000000
jobs=1
targets=("${ALL_TARGETS[@]}")
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) mode=smoke ;;
        --runs)
            mode=runs
            if [[ "${2:-}" =~ ^[0-9]+$ ]]; then runs=$2; shift; fi
            ;;
        --seconds) seconds="${2:?--seconds needs a number}"; shift ;;
        --jobs) jobs="${2:?--jobs needs a number}"; shift ;;
        --targets) read -r -a targets <<<"${2:?--targets needs names}"; shift ;;
        -h|--help) sed -n '2,18p' "$FUZZ_DIR/run.sh"; exit 0 ;;
        *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ -z "$mode" ]; then
    echo "run.sh: give --smoke or --runs N (see --help)" >&2
    exit 2
fi
for t in "${targets[@]}"; do
    if [ -z "${MAX_LEN[$t]:-}" ]; then
        echo "run.sh: unknown target $t (known: ${ALL_TARGETS[*]})" >&2
        exit 2
    fi
done

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "run.sh: the nightly toolchain is missing: rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    if [ "${FUZZ_NO_INSTALL:-0}" = 1 ]; then
        echo "run.sh: cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
        exit 2
    fi
    echo "run.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

now() { date +%s; }

start_all=$(now)
echo "== build: cargo $TOOLCHAIN fuzz build ${BUILD_FLAGS[*]}"
build_start=$(now)
cargo "$TOOLCHAIN" fuzz build "${BUILD_FLAGS[@]}"
build_secs=$(( $(now) - build_start ))
echo "== built in ${build_secs}s"

mkdir -p work/logs
# The libFuzzer arguments of one target (after the binary).
args_for() {
    local t=$1 budget
    if [ "$mode" = smoke ]; then budget="-max_total_time=$seconds"; else budget="-runs=$runs"; fi
    echo "-artifact_prefix=fuzz/artifacts/$t/ $budget -max_len=${MAX_LEN[$t]} ${LIMITS[*]}" \
        "${EXTRA[$t]:-}" "-print_final_stats=1 fuzz/work/corpus/$t fuzz/corpus/$t" | tr -s ' '
}
# The command for one target, from the repository root (printed and recorded in RESULTS.md).
command_for() {
    echo "ASAN_OPTIONS=detect_odr_violation=0 fuzz/$BIN_DIR/$1 $(args_for "$1")"
}

run_one() {
    local t=$1
    local log="work/logs/$t.log"
    mkdir -p "work/corpus/$t" "artifacts/$t"
    local before
    before=$(ls "artifacts/$t" | sort)
    local s rc=0 args
    s=$(now)
    read -r -a args <<<"$(args_for "$t")"
    # From the repository root, so that the relative paths of args_for hold.
    (cd .. && ASAN_OPTIONS=detect_odr_violation=0 "fuzz/$BIN_DIR/$t" "${args[@]}") \
        >"$log" 2>&1 || rc=$?
    local secs=$(( $(now) - s ))
    local new
    new=$(comm -13 <(echo "$before") <(ls "artifacts/$t" | sort) | tr '\n' ' ')
    {
        echo "rc=$rc"
        echo "secs=$secs"
        echo "new_artifacts=$new"
    } >"work/logs/$t.status"
}

stat_of() { # stat_of target name: a libFuzzer final stat
    sed -n "s/^stat::$2: *//p" "work/logs/$1.log" | tail -1
}
corp_of() { # the in-memory corpus at the end: "N/SIZE"
    grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "work/logs/$1.log" | tail -1 | sed 's/corp: //'
}
status_of() { sed -n "s/^$2=//p" "work/logs/$1.status"; }

for t in "${targets[@]}"; do
    echo "== $t: $(command_for "$t")"
    run_one "$t" &
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
        wait -n || true
    done
done
wait || true
total_secs=$(( $(now) - start_all ))

failed=0
summary=""
for t in "${targets[@]}"; do
    rc=$(status_of "$t" rc)
    new=$(status_of "$t" new_artifacts)
    crashes=$(echo "$new" | tr ' ' '\n' | grep -c '^crash-' || true)
    timeouts=$(echo "$new" | tr ' ' '\n' | grep -c '^timeout-' || true)
    ooms=$(echo "$new" | tr ' ' '\n' | grep -c '^oom-' || true)
    leaks=$(echo "$new" | tr ' ' '\n' | grep -c '^leak-' || true)
    line="$t: rc=$rc execs=$(stat_of "$t" number_of_executed_units) exec/s=$(stat_of "$t" average_exec_per_sec)"
    line+=" time=$(status_of "$t" secs)s corpus=$(corp_of "$t") new_units=$(stat_of "$t" new_units_added)"
    line+=" peak_rss=$(stat_of "$t" peak_rss_mb)MB crashes=$crashes timeouts=$timeouts ooms=$ooms leaks=$leaks"
    summary+="$line"$'\n'
    if [ "$rc" != 0 ] || [ -n "${new// /}" ]; then
        failed=1
        echo "== FAILED $t (rc=$rc, new artifacts: ${new:-none}); log: fuzz/work/logs/$t.log" >&2
        grep -E 'panicked|ERROR: |SUMMARY|Test unit written' "work/logs/$t.log" | head -20 >&2 || true
    fi
done
echo "== summary (build ${build_secs}s, total ${total_secs}s)"
printf '%s' "$summary"

if [ "$mode" = runs ]; then
    {
        echo "# Fuzzing results"
        echo
        echo "Written by \`bash fuzz/run.sh --runs $runs --jobs $jobs\` (see fuzz/README.md)."
        echo
        echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "- commit: $(git -C "$FUZZ_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$FUZZ_DIR" diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
        echo "- toolchain: $(rustup run nightly rustc --version), $(cargo fuzz --version)"
        echo "- machine: $(nproc) cores, $(uname -sm); $jobs target(s) at a time"
        echo "- build: \`cargo $TOOLCHAIN fuzz build ${BUILD_FLAGS[*]}\` (release, debug assertions and overflow checks, AddressSanitizer), ${build_secs}s"
        echo "- limits: \`${LIMITS[*]}\`"
        echo "- total wall time: ${total_secs}s"
        echo
        echo "| target | executions | exec/s | time | corpus (units/bytes) | new units | peak RSS | crashes | timeouts | OOMs | leaks |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|"
        for t in "${targets[@]}"; do
            new=$(status_of "$t" new_artifacts)
            c() { echo "$new" | tr ' ' '\n' | grep -c "^$1-" || true; }
            echo "| $t | $(stat_of "$t" number_of_executed_units) | $(stat_of "$t" average_exec_per_sec) | $(status_of "$t" secs)s | $(corp_of "$t") | $(stat_of "$t" new_units_added) | $(stat_of "$t" peak_rss_mb) MB | $(c crash) | $(c timeout) | $(c oom) | $(c leak) |"
        done
        echo
        echo "Commands (from the repository root; build first):"
        echo
        echo "    (cd fuzz && cargo $TOOLCHAIN fuzz build ${BUILD_FLAGS[*]})"
        for t in "${targets[@]}"; do
            echo "    $(command_for "$t")"
        done
        if [ "$failed" = 1 ]; then
            echo
            echo "**Failures**: see fuzz/work/logs/ and the reproducers in fuzz/artifacts/."
        fi
    } >RESULTS.md
    echo "== wrote fuzz/RESULTS.md"
fi

exit "$failed"
