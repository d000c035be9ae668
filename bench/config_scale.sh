#!/bin/sh
# Configuration at scale (issue 13, item 8): see bench/config_scale.py.
# Run ./build.sh build first.
exec /usr/bin/python3 "$(dirname "$0")/config_scale.py" "$@"
