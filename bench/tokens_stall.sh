#!/usr/bin/env bash
# Small requests' p50/p99 alone, then beside 10 MB bodies whose prompt tokens are counted in
# the tokenizer's thread pool, then beside the same counted inline: see bench/tokens_stall.py.
#   bench/tokens_stall.sh             (TOKENS_STALL_DURATION=10s TOKENS_STALL_INLINE=1)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f build/nginx/ngx_http_vmx_module.so ] || [ ! -x build/vmx-control-plane ]; then
    ./build.sh build
fi

exec /usr/bin/python3 bench/tokens_stall.py
