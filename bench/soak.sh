#!/bin/sh
# The soak of a 3-node cluster (issue 13, item 7): see bench/soak.py.
#   BENCH_SOAK_MINUTES=30 bench/soak.sh      (BENCH_SOAK_OUT: where the CSV and PNG go)
# Run ./build.sh build first.
exec /usr/bin/python3 "$(dirname "$0")/soak.py" "$@"
