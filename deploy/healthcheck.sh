#!/bin/sh
# The health check of the long-running services of both Python images (webserver, daemon, code server, Bento),
# and the watchdog that makes an unhealthy container restart: Docker marks a container unhealthy but never
# restarts it for that, so after KILL_AFTER failed checks in a row this kills the container's main process;
# the container then exits (137) and its `restart: unless-stopped` policy starts it again.
#
#   mlops-healthcheck KILL_AFTER GRACE_S http://127.0.0.1:3000/livez     # an HTTP probe: an answer, not an error
#   mlops-healthcheck KILL_AFTER GRACE_S dagster-daemon liveness-check  # or any command: exit 0 is healthy
#
# The probe has PROBE_TIMEOUT_S to answer (a frozen server accepts connections and never replies), less than the
# compose file's healthcheck timeout, so this script always gets to count the failure.
# A check fails when the probe fails or when the main process is stopped (SIGSTOP, state T: a server whose
# workers still answer while their supervisor is frozen is not healthy). The probe runs through the images'
# entrypoint, so it has the secrets as the main process has them (the daemon's liveness check reads
# PostgreSQL). Failures in the first GRACE_S seconds after the main process started do not count (a start
# that loads a model or waits for the database). The compose file runs the containers with `init: true`:
# the main process is then a child of Docker's init, which can be killed from here (PID 1 itself cannot be
# signalled from inside its own container); the entrypoint writes its PID to $MAIN_PID_FILE.
set -u

MAIN_PID_FILE=/tmp/mlops-main.pid
FAILURES_FILE=/tmp/mlops-health-failures
PROBE_TIMEOUT_S=20

kill_after=$1 grace_s=$2
shift 2

main_pid=$(cat "$MAIN_PID_FILE" 2>/dev/null || true)
state=
if [ -n "$main_pid" ] && [ -r "/proc/$main_pid/stat" ]; then
    state=$(sed 's/^.*) //' "/proc/$main_pid/stat" | cut -d' ' -f1)
fi

healthy=1
case "$state" in
    T|t) echo "the main process $main_pid is stopped"; healthy=0 ;;
esac
if [ "$healthy" = 1 ]; then
    case "$1" in
        http://*|https://*)
            probe="
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=10).close()
except Exception as exc:
    sys.exit(f'{sys.argv[1]}: {exc}')"
            MLOPS_SHARE_SECRETS_TO= timeout "$PROBE_TIMEOUT_S" /usr/local/bin/mlops-entrypoint \
                python3 -c "$probe" "$1" || healthy=0 ;;
        *)
            MLOPS_SHARE_SECRETS_TO= timeout "$PROBE_TIMEOUT_S" /usr/local/bin/mlops-entrypoint "$@" || healthy=0 ;;
    esac
fi
if [ "$healthy" = 1 ]; then
    rm -f "$FAILURES_FILE"
    exit 0
fi

if [ -z "$main_pid" ]; then
    echo "no $MAIN_PID_FILE: cannot restart the container (run it with init: true)"
    exit 1
fi
started=$(stat -c %Y "$MAIN_PID_FILE")
if [ $(( $(date +%s) - started )) -lt "$grace_s" ]; then
    echo "starting (grace ${grace_s} s): this failure does not count"
    exit 1
fi
failures=$(( $(cat "$FAILURES_FILE" 2>/dev/null || echo 0) + 1 ))
echo "$failures" > "$FAILURES_FILE"
if [ "$failures" -ge "$kill_after" ]; then
    echo "unhealthy $failures times in a row: killing the main process $main_pid, the restart policy starts it again"
    kill -KILL "$main_pid"
fi
exit 1
