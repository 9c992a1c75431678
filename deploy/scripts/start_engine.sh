#!/usr/bin/env bash
# Make a Docker engine and docker-compose (1.29) available on this Debian machine, idempotently:
# installs Debian's docker.io, debootstrap and docker-compose when missing (root only) and starts
# dockerd in the background when nothing answers on /var/run/docker.sock. Used by .ci/run; safe
# to run again (an engine that answers is left alone).
set -euo pipefail

if ! command -v dockerd >/dev/null || ! command -v docker-compose >/dev/null || ! command -v debootstrap >/dev/null; then
    if [ "$(id -u)" != 0 ]; then
        echo "start_engine: docker.io, docker-compose and debootstrap are missing and this is not root" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        docker.io docker-compose debootstrap >/dev/null
fi

if docker info >/dev/null 2>&1; then
    echo "start_engine: the Docker engine answers"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "start_engine: no Docker engine answers and this is not root: start dockerd yourself" >&2
    exit 1
fi
log=/var/log/dockerd.log
echo "start_engine: starting dockerd (log: $log)"
setsid nohup dockerd --storage-driver=overlay2 >>"$log" 2>&1 < /dev/null &
for _ in $(seq 60); do
    if docker info >/dev/null 2>&1; then
        echo "start_engine: the Docker engine answers"
        exit 0
    fi
    sleep 1
done
echo "start_engine: dockerd did not answer within 60 s; the end of $log:" >&2
tail -20 "$log" >&2
exit 1
