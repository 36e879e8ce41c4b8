#!/usr/bin/env bash
# Make sure Redis and RabbitMQ answer, starting the local Debian-packaged servers if needed.
#
#   Redis:    the host/port of CLS_REDIS_URL (default redis://localhost:6379/0)
#   RabbitMQ: the host/port of CLS_AMQP_URL  (default amqp://localhost:5672/)
#
# Quiet and exit 0 when both already answer. A server that does not answer is started only when
# its URL points at this machine and its binary is installed; then we wait (Redis up to
# CLS_REDIS_WAIT s, default 15; RabbitMQ up to CLS_AMQP_WAIT s, default 90) until it answers.
# Exit status: 0 all answer, 1 a server did not come up or cannot be started here.
# Uses only bash, coreutils, redis-cli and rabbitmq-diagnostics (bash /dev/tcp as a fallback).
set -euo pipefail

REDIS_URL="${CLS_REDIS_URL:-redis://localhost:6379/0}"
AMQP_URL="${CLS_AMQP_URL:-amqp://localhost:5672/}"
REDIS_WAIT="${CLS_REDIS_WAIT:-15}"
AMQP_WAIT="${CLS_AMQP_WAIT:-90}"
APT_HINT="apt-get install redis-server rabbitmq-server"

say() { printf 'ensure_services: %s\n' "$*"; }
err() { printf 'ensure_services: ERROR: %s\n' "$*" >&2; }

# url_host_port URL DEFAULT_PORT -> prints "host port" (IPv6 brackets removed).
url_host_port() {
    local url="$1" default_port="$2" rest hostport host port
    rest="${url#*://}"          # drop scheme
    rest="${rest%%/*}"          # drop path (/db, /vhost)
    rest="${rest%%\?*}"         # drop query
    hostport="${rest##*@}"      # drop user:password@
    if [[ "$hostport" == \[* ]]; then                 # [v6addr]:port
        host="${hostport#\[}"
        host="${host%%\]*}"
        port="${hostport##*\]}"
        port="${port#:}"
    elif [[ "$hostport" == *:* ]]; then
        host="${hostport%:*}"
        port="${hostport##*:}"
    else
        host="$hostport"
        port=""
    fi
    printf '%s %s\n' "${host:-localhost}" "${port:-$default_port}"
}

is_local_host() {
    case "$1" in
        localhost | 127.* | ::1 | 0.0.0.0 | "$(hostname 2>/dev/null || echo localhost)") return 0 ;;
        *) return 1 ;;
    esac
}

# bash /dev/tcp wants a bare address; map localhost to 127.0.0.1 to skip resolver surprises.
tcp_host() { if [[ "$1" == localhost ]]; then echo 127.0.0.1; else echo "$1"; fi; }

redis_answers() {
    local host="$1" port="$2"
    if command -v redis-cli >/dev/null 2>&1; then
        # Any reply (PONG, or NOAUTH from a password-protected server) means it answers.
        local reply
        reply="$(timeout 3 redis-cli -h "$host" -p "$port" ping 2>/dev/null || true)"
        [[ "$reply" == PONG || "$reply" == *NOAUTH* ]] && return 0
        return 1
    fi
    # Fallback: inline PING over bash /dev/tcp, expecting "+PONG" (or "-NOAUTH ...").
    timeout 3 bash -c '
        exec 3<>"/dev/tcp/$1/$2" || exit 1
        printf "PING\r\n" >&3
        IFS= read -r line <&3 || exit 1
        [[ "$line" == +PONG* || "$line" == -NOAUTH* ]]
    ' _ "$(tcp_host "$host")" "$port" 2>/dev/null
}

# A real AMQP check: send the 0-9-1 protocol header; a broker that is up answers with a
# Connection.Start method frame, whose first byte is the frame type 1. RabbitMQ opens its AMQP
# listener only at the end of its boot, so this also tells "ready", not just "process exists".
amqp_answers() {
    local host="$1" port="$2" first
    first="$(timeout 5 bash -c '
        exec 3<>"/dev/tcp/$1/$2" || exit 1
        printf "AMQP\x00\x00\x09\x01" >&3
        head -c 1 <&3 | od -An -tx1
    ' _ "$(tcp_host "$host")" "$port" 2>/dev/null || true)"
    [[ "${first// /}" == 01 ]]
}

# The local RabbitMQ node is running (maybe still booting). Bounded: the CLI can hang on a
# cookie or name-resolution problem.
rabbit_node_running() {
    command -v rabbitmq-diagnostics >/dev/null 2>&1 || return 1
    timeout 15 rabbitmq-diagnostics -q ping >/dev/null 2>&1
}

wait_until() { # wait_until SECONDS CHECK ARGS... -> 0 when CHECK succeeds in time
    local limit="$1" start
    shift
    start=$SECONDS
    while ((SECONDS - start < limit)); do
        "$@" && return 0
        sleep 1
    done
    "$@"
}

ensure_redis() {
    local host port
    read -r host port < <(url_host_port "$REDIS_URL" 6379)
    redis_answers "$host" "$port" && return 0

    say "Redis does not answer on $host:$port."
    if ! is_local_host "$host"; then
        err "Redis at $host:$port ($REDIS_URL) is not on this machine; start it there."
        return 1
    fi
    if ! command -v redis-server >/dev/null 2>&1; then
        err "redis-server is not installed. Install the Debian packages: $APT_HINT"
        return 1
    fi
    if [[ "$port" != 6379 ]]; then
        say "note: starting the local Redis on port $port (from CLS_REDIS_URL)."
    fi
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    local cmd=(redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$port" --save ""
        --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log)
    say "starting: $(printf '%q ' "${cmd[@]}")"
    if ! "${cmd[@]}"; then
        err "redis-server failed to start; see /var/log/redis/ci.log"
        return 1
    fi
    say "waiting up to ${REDIS_WAIT}s for Redis on $host:$port ..."
    if wait_until "$REDIS_WAIT" redis_answers "$host" "$port"; then
        say "Redis is up on $host:$port."
        return 0
    fi
    err "Redis did not answer on $host:$port within ${REDIS_WAIT}s."
    tail -n 20 /var/log/redis/ci.log >&2 2>/dev/null || true
    return 1
}

ensure_rabbitmq() {
    local host port
    read -r host port < <(url_host_port "$AMQP_URL" 5672)
    amqp_answers "$host" "$port" && return 0

    say "RabbitMQ does not answer on $host:$port."
    if ! is_local_host "$host"; then
        err "RabbitMQ at $host:$port is not on this machine; start it there."
        return 1
    fi
    if ! command -v rabbitmq-server >/dev/null 2>&1; then
        err "rabbitmq-server is not installed. Install the Debian packages: $APT_HINT"
        return 1
    fi
    if [[ "$port" != 5672 ]]; then
        say "warning: the local RabbitMQ listens on 5672 by default, CLS_AMQP_URL says $port."
    fi
    if rabbit_node_running; then
        say "the RabbitMQ node is running but its AMQP listener is not up yet (still booting?)."
    else
        say "starting: rabbitmq-server -detached"
        if ! rabbitmq-server -detached; then
            err "rabbitmq-server -detached failed; see /var/log/rabbitmq/"
            return 1
        fi
    fi
    say "waiting up to ${AMQP_WAIT}s for RabbitMQ on $host:$port ..."
    if wait_until "$AMQP_WAIT" amqp_answers "$host" "$port"; then
        say "RabbitMQ is up on $host:$port."
        return 0
    fi
    err "RabbitMQ did not answer on $host:$port within ${AMQP_WAIT}s; see /var/log/rabbitmq/"
    if command -v rabbitmq-diagnostics >/dev/null 2>&1; then
        timeout 15 rabbitmq-diagnostics -q status 2>&1 | tail -n 20 >&2 || true
    fi
    return 1
}

status=0
ensure_redis || status=1
ensure_rabbitmq || status=1
exit "$status"
