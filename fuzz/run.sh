#!/usr/bin/env bash
# Runs every fuzz target (or those named in FUZZ_TARGETS) for FUZZ_SECONDS each (default
# 60; FUZZ_SECONDS=600 for a long run), one after another, and prints per target what
# libFuzzer's final stats say: executions, executions per second, coverage, corpus size.
#
# The committed seeds in fuzz/corpus/<target>/ are read, never written: what a run finds
# goes to fuzz/work/<target>/ (git-ignored) and crashes to fuzz/artifacts/<target>/.
# Builds into fuzz/target/ (FUZZ_TARGET_DIR to change), never the main workspace's target/.
#
# Exits non-zero when any target found a crash or an invariant failure.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

seconds="${FUZZ_SECONDS:-60}"
targets="${FUZZ_TARGETS:-request_head request_differential response_head chunked scanner host proxy_header}"
sanitizer="${FUZZ_SANITIZER:-address}"
target_dir="${FUZZ_TARGET_DIR:-$here/target}"
# cargo fuzz needs nightly flags; only the stable toolchain is installed.
export RUSTC_BOOTSTRAP=1
# Leave a core for everything else on a 2-core machine.
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# Longest input per target: chunk-size lines may legitimately run past 4 KiB.
max_len() {
    case "$1" in
        chunked) echo 8192 ;;
        host) echo 512 ;;
        *) echo 4096 ;;
    esac
}

# Built once, then the binaries are run directly: `cargo fuzz run` would rebuild before
# every target whenever the tree changed in the meantime.
cargo fuzz build --sanitizer "$sanitizer" --target-dir "$target_dir"
bin="$target_dir/$(rustc -vV | sed -n 's/^host: //p')/release"

mkdir -p work/logs
failed=()
summary="work/summary.txt"
: >"$summary"
printf '%-22s %12s %8s %7s %7s %9s  %s\n' target executions exec/s cov ft corpus result | tee -a "$summary"
for t in $targets; do
    [ -d "corpus/$t" ] || { echo "no seed corpus for $t" >&2; exit 2; }
    mkdir -p "work/$t" "artifacts/$t"
    log="work/logs/$t.log"
    status=ok
    # New inputs go to the first directory (work/), seeds are read from corpus/.
    # `timeout` is a backstop in case libFuzzer hangs past its own limit.
    timeout --signal=INT --kill-after=30 $((seconds + 60)) \
        "$bin/$t" "work/$t" "corpus/$t" \
        -max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout=10 -dict=dict/http.dict \
        -print_final_stats=1 -artifact_prefix="artifacts/$t/" >"$log" 2>&1 || status=FAILED
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | grep 'cov:' | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$last")
    printf '%-22s %12s %8s %7s %7s %9s  %s\n' "$t" "${execs:--}" "${rate:--}" "${cov:--}" "${ft:--}" "${corp:--}" \
        "$status" | tee -a "$summary"
    if [ "$status" != ok ]; then
        failed+=("$t")
        grep -E 'panicked at|^SUMMARY|Test unit written' "$log" | head -5 >&2 || true
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "findings in: ${failed[*]} (logs in fuzz/work/logs/, inputs in fuzz/artifacts/)" >&2
    exit 1
fi
