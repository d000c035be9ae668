#!/bin/sh
# Builds the fuzz targets and runs each for a bounded time (first argument,
# in seconds, default 30) on a temporary copy of its corpus, so the
# committed corpus never changes.  Fails on any crash, leak or timeout; the
# input that caused it is kept in build/fuzz/artifacts/.
set -eu

seconds=${1:-30}
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

cd "$root"
make -s fuzz
mkdir -p build/fuzz/artifacts

for target in build/fuzz/fuzz_*; do
    name=${target#build/fuzz/fuzz_}
    mkdir -p "$tmp/$name"
    if [ -d "fuzz/corpus/$name" ]; then
        cp -R "fuzz/corpus/$name/." "$tmp/$name/"
    fi

    dict=
    if [ -f "fuzz/$name.dict" ]; then
        dict=-dict=fuzz/$name.dict
    fi

    echo "== $target: ${seconds}s"
    "$target" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="build/fuzz/artifacts/$name-" $dict \
        "$tmp/$name" >"$tmp/$name.log" 2>&1 || {
        tail -n 60 "$tmp/$name.log"
        echo "FAIL: $target (see build/fuzz/artifacts/)"
        exit 1
    }
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)|^#[0-9]+.*DONE' \
        "$tmp/$name.log" || true
done

echo "fuzz: all targets passed"
