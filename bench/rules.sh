#!/bin/sh
# Routing rules benchmark (bench/rules.c): evaluations per second of a
# realistic rule set against a plain vmx_json_parse of the same request,
# measured in the same run.  First argument: seconds per measure (default 2).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
make -s lib
mkdir -p build/bench
cc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter -Ilib -o build/bench/rules \
    bench/rules.c build/libvmx.a -lpcre2-8
exec build/bench/rules "${1:-2}"
