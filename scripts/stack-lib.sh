# Sourced by the bench scripts: a local stack of the release build in a
# temporary directory, stopped and removed when the script exits, and
# psql on its database. Run from the repository root.

# start_stack HTTP_PORT PG_PORT KAFKA_PORT PROMETHEUS_PORT RATE: starts it
# (RATE: the generator's events/s, 0 for none); $stack_dir holds its files.
start_stack() {
    stack_dir=$(mktemp -d)
    chmod 755 "$stack_dir"
    stack_pg_port=$2
    ./target/release/streamstats stack --fresh --dir "$stack_dir" --http-port "$1" \
        --pg-port "$2" --kafka-port "$3" --prometheus-port "$4" --rate "$5" \
        >"$stack_dir/stack.out" 2>"$stack_dir/stack.err" &
    stack_pid=$!
    trap 'kill -INT $stack_pid 2>/dev/null; wait $stack_pid 2>/dev/null; rm -rf "$stack_dir"' EXIT
}

# wait_until CMD...: runs CMD every second until it succeeds, at most 120
# times; fails (with CMD's error) if it never does.
wait_until() {
    for _ in $(seq 1 120); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 1
    done
    "$@" >/dev/null
}

stack_psql=$(ls -d /usr/lib/postgresql/*/bin/psql 2>/dev/null | sort -V | tail -n 1)
[ -x "$stack_psql" ] || stack_psql=$(command -v psql)

# sql ARGS...: psql on the stack's database, stopping at the first error.
sql() {
    "$stack_psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$stack_pg_port" \
        -U streamstats -d streamstats "$@"
}
