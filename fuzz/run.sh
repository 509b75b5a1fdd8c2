#!/usr/bin/env bash
# Runs built fuzz targets (`cargo +nightly fuzz build` first; `make fuzz` does both) for
# SECONDS each on idle CPU (nice 19, one process each: libFuzzer's default single-process
# mode, the same as -jobs=1 -workers=1) and prints one summary line per target: executions,
# peak RSS and libFuzzer's final coverage line (cov = edges, ft = features, corp = corpus).
# The binaries run directly, so a tree that is mid-edit elsewhere does not stop a campaign.
# New corpus entries go to corpus-run/<target>/ (the committed seeds in corpus/ are only read),
# findings to artifacts/<target>/, logs to logs/<target>.log.
# Usage: fuzz/run.sh SECONDS TARGET...   Exit status: 1 if any target found a crash.
set -uo pipefail
cd "$(dirname "$0")"
seconds=$1
shift
bin=target/x86_64-unknown-linux-gnu/release
status=0
mkdir -p logs
for t in "$@"; do
    case $t in
        route_*) extra=(-dict=dict/request.dict -max_len=65536 -rss_limit_mb=6144) ;;
        decode_image) extra=(-dict=dict/image.dict -max_len=65536) ;;
        *) extra=(-max_len=4096) ;;
    esac
    mkdir -p "corpus-run/$t" "artifacts/$t"
    nice -n 19 "$bin/$t" "corpus-run/$t" "corpus/$t" -artifact_prefix="artifacts/$t/" \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "${extra[@]}" \
        >"logs/$t.log" 2>&1
    rc=$?
    last=$(grep -E '^#[0-9]+' "logs/$t.log" | tail -n 1)
    execs=$(grep -oE 'stat::number_of_executed_units: +[0-9]+' "logs/$t.log" | grep -oE '[0-9]+$')
    rss=$(grep -oE 'stat::peak_rss_mb: +[0-9]+' "logs/$t.log" | grep -oE '[0-9]+$')
    printf '%-15s rc=%s execs=%s peak_rss_mb=%s | %s\n' "$t" "$rc" "${execs:-?}" "${rss:-?}" "$last"
    if [ "$rc" -ne 0 ]; then
        status=1
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written' "logs/$t.log" | head -n 5
    fi
done
exit $status
