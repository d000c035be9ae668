#!/usr/bin/env bash
# The gateway's performance targets (issue 12) measured in one run against a bare nginx proxy
# and the gateway's own paths, ending with one table of PASS and MISS: see bench/bench.py.
#   bench/run.sh                      (BENCH_DURATION=10s BENCH_LATENCY_DURATION=20s
#                                      BENCH_SOAK=300 ..., see bench/README.md)
# Builds first when the module or the control plane is missing (BENCH_BUILD=0 to refuse).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f build/nginx/ngx_http_vmx_module.so ] || [ ! -x build/vmx-control-plane ]; then
    if [ "${BENCH_BUILD:-1}" = 1 ] && [ -x ./build.sh ]; then
        ./build.sh build
    fi
fi

pid=
stop() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
}
trap stop EXIT
trap 'stop; exit 130' INT TERM HUP

/usr/bin/python3 bench/bench.py &
pid=$!
rc=0
wait "$pid" || rc=$?
pid=
exit "$rc"
