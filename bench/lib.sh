# Helpers shared by the relay benchmarks bench/relay, bench/clamav and bench/cluster (sourced, not run).
#
# The sourcing script runs from the repository root, sets T (its scratch directory, mode 755),
# DELIVERY_DEADLINE (seconds to wait for the sink to count one run) and MOAT_BIN, and cleans up
# in its own EXIT trap (SINK_PID and every moat it started).

note() { printf '%s\n' "$*" >&2; }
die() { note "bench/${0##*/}: $*"; exit 1; }

free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 20000))
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
    done
}

wait_port() { # port seconds [pid that must stay alive]
    local i
    for ((i = 0; i < $2 * 20; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        [[ -n ${3:-} ]] && ! kill -0 "$3" 2>/dev/null && return 1
        sleep 0.05
    done
    return 1
}

now() { date +%s.%N; }

# --- the sink every path ends in -------------------------------------------------------------------
start_sink() { # sets SINK_PORT and SINK_PID
    SINK_PORT=$(free_port)
    # -c prints "sess=N quit=N mesg=N" after every event; the last mesg= is the number delivered.
    smtp-sink -u root -c -m 1000 "127.0.0.1:$SINK_PORT" 1024 >"$T/sink.out" 2>"$T/sink.err" &
    SINK_PID=$!
    wait_port "$SINK_PORT" 10 || die "smtp-sink did not start: $(cat "$T/sink.err")"
}
sink_count() {
    local last
    last=$(tail -c 300 "$T/sink.out" | tr '\r' '\n' | grep -o 'mesg=[0-9]*' | tail -1)
    echo "${last#mesg=}"
}

# --- moat ---------------------------------------------------------------------------------------
moat_config() { # port max_connections: moat relaying example.test into the sink, no network filters
    cat <<EOF
hostname = "mx.bench.test"
state_dir = "state"

[[listen]]
address = "127.0.0.1:$1"
starttls = false

[limits]
max_connections = $2
max_connections_per_ip = $2

[downstream]
host = "127.0.0.1"
port = $SINK_PORT
tls = "none"

[[domain]]
name = "example.test"

# The relay alone: no network filters (smtp-source's sender domains do not exist, and the
# benchmark measures the front door, spool and queue, like Postfix's row). bench/scan measures
# the filters.
[auth]
enabled = false

[reputation]
rdns = false
helo_checks = false
EOF
}
launch_moat() { # dir port: serve $dir/moat.toml; sets MOAT_PID, or returns 1 (and MOAT_PID empty)
    "$MOAT_BIN" serve -c "$1/moat.toml" </dev/null >>"$1/moat.log" 2>&1 &   # appended: a restart keeps the earlier log
    MOAT_PID=$!
    if ! wait_port "$2" 20 "$MOAT_PID"; then
        note "moat did not start; its log:"; tail -5 "$1/moat.log" >&2 || true
        kill -KILL "$MOAT_PID" 2>/dev/null; wait "$MOAT_PID" 2>/dev/null || true; MOAT_PID=
        return 1
    fi
}
stop_pid() { # pid: SIGTERM, up to 10 s to exit, then SIGKILL; reaped
    [[ -n $1 ]] || return 0
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# --- one run: send, then wait until the sink counted every message ---------------------------------
# measure port sessions count SMTP-SOURCE-ARGS... (e.g. -l 4096, or -F message.eml)
# Sets MEASURE_T0 (start), MEASURE_T1 (smtp-source finished: all accepted), MEASURE_T2 (the sink
# counted them all) and MEASURE_STATUS ("ok" or what went wrong).
measure() {
    local port=$1 sessions=$2 count=$3 base got deadline
    shift 3
    MEASURE_STATUS=ok
    base=$(sink_count); base=${base:-0}
    MEASURE_T0=$(now)
    if ! timeout 600 smtp-source -s "$sessions" -m "$count" "$@" \
            -f bench@remote.bench.test -t user@example.test "127.0.0.1:$port" >"$T/source.out" 2>&1; then
        MEASURE_STATUS="smtp-source failed: $(head -c 120 "$T/source.out" | tr '\n' ' ')"
    fi
    MEASURE_T1=$(now)
    deadline=$((SECONDS + DELIVERY_DEADLINE))
    while :; do
        got=$(sink_count); got=${got:-0}
        ((got - base >= count)) && break
        if ((SECONDS > deadline)); then MEASURE_STATUS="only $((got - base)) of $count delivered"; break; fi
        sleep 0.01
    done
    MEASURE_T2=$(now)
}
