#!/usr/bin/env bash
# Runs fuzz targets for SECONDS each on idle CPU (nice 19, one process each) and prints one
# summary line per target: executions, coverage (cov / ft) and corpus size from libFuzzer's
# final stats. New corpus entries go to corpus-run/<target>/ (the committed seeds in corpus/
# are only read), findings to artifacts/<target>/, logs to logs/<target>.log.
# Usage: fuzz/run.sh SECONDS TARGET...   Exit status: 1 if any target found a crash.
set -uo pipefail
cd "$(dirname "$0")"
seconds=$1
shift
status=0
mkdir -p logs
for t in "$@"; do
    case $t in
        route_*) extra=(-dict=dict/request.dict -max_len=65536 -rss_limit_mb=4096) ;;
        decode_image) extra=(-dict=dict/image.dict -max_len=65536) ;;
        *) extra=(-max_len=4096) ;;
    esac
    mkdir -p "corpus-run/$t"
    nice -n 19 cargo +nightly fuzz run "$t" "corpus-run/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "${extra[@]}" \
        >"logs/$t.log" 2>&1
    rc=$?
    last=$(grep -E '^#[0-9]+' "logs/$t.log" | tail -n 1)
    execs=$(grep -oE 'stat::number_of_executed_units: [0-9]+' "logs/$t.log" | grep -oE '[0-9]+$')
    rss=$(grep -oE 'stat::peak_rss_mb: [0-9]+' "logs/$t.log" | grep -oE '[0-9]+$')
    printf '%-15s rc=%s execs=%s peak_rss_mb=%s | %s\n' "$t" "$rc" "${execs:-?}" "${rss:-?}" "$last"
    if [ "$rc" -ne 0 ]; then
        status=1
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written' "logs/$t.log" | head -n 5
    fi
done
exit $status
