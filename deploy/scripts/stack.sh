#!/usr/bin/env bash
# Bring the production stack of deploy/docker-compose.yaml up or down with docker-compose 1.29
# (Debian's) or Compose v2 (`docker compose`), whichever is installed.
#
#   deploy/scripts/stack.sh up       # make deploy-up: wheelhouse, images, then the services
#   deploy/scripts/stack.sh down     # make deploy-down: containers (run containers too), network, volumes
#   KEEP_DATA=1 deploy/scripts/stack.sh down    # keep the volumes (Postgres data, artifacts)
#
# Settings (environment): MLOPS_STACK_PROJECT (compose project, default mlops), MLOPS_BASE_IMAGE
# (Python base of the images; default python:3.11-slim when it can be pulled, else the local
# debootstrap base mlops-base:bookworm, built on first use), DAGSTER_WEBSERVER_PORT and
# MLOPS_BENTO_PORT (host ports, default 3000 and 3001: the environment's, else deploy/.env's; `up` checks
# they are free before building anything). deploy/.env is written from deploy/env.example when
# missing. The secrets are files, Compose secrets (never values in `docker inspect`): deploy/secrets/
# dagster_pg_password and deploy/secrets/mlops_api_token, random when missing (or the values an older
# deploy/.env held, moved out of it). DOCKER_SOCKET_GID (the daemon's group for the Docker socket) is read from
# the socket.
set -euo pipefail
cd "$(dirname "$0")/../.."

project=${MLOPS_STACK_PROJECT:-mlops}
env_file=deploy/.env
local_base=mlops-base:bookworm
public_base=python:3.11-slim
public_postgres=postgres:16

if command -v docker-compose >/dev/null; then
    compose_cmd=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
else
    echo "stack: neither docker-compose nor docker compose is installed (deploy/scripts/start_engine.sh)" >&2
    exit 1
fi

# An image present here, or pulled within MLOPS_PULL_TIMEOUT_S (300); an unreachable registry fails in seconds.
available() {
    docker image inspect "$1" >/dev/null 2>&1 || timeout "${MLOPS_PULL_TIMEOUT_S:-300}" docker pull -q "$1" >/dev/null 2>&1
}

compose() {
    local files=(-f deploy/docker-compose.yaml)
    if [ "${MLOPS_LOCAL_POSTGRES:-0}" = 1 ]; then
        files+=(-f deploy/docker-compose.local-base.yaml)
    fi
    "${compose_cmd[@]}" -p "$project" "${files[@]}" --env-file "$env_file" "$@"
}

random_hex() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }

# A setting as compose resolves it: the environment's value, else deploy/.env's, else the default.
setting() {
    local name=$1 default=$2 value=
    if [ -n "${!name+x}" ]; then
        value=${!name}
    elif [ -f "$env_file" ]; then
        value=$(sed -n "s/^$name=//p" "$env_file" | tail -n1)
        value=${value%\"}; value=${value#\"}
    fi
    echo "${value:-$default}"
}

# Something on this host accepts connections on the port (the published ports listen on all addresses or on
# the loopback: either answers on 127.0.0.1).
port_taken() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# Before any build: the host ports the stack publishes are free, or are already this stack's own (an `up` of
# a running stack). Says which are taken and how to change them.
check_ports() {
    local own name default what port problem=0
    own=$(docker ps --filter "label=com.docker.compose.project=$project" --format '{{.Ports}}' \
        | grep -o ':[0-9]*->' | tr -d ':>-' || true)
    local used=()
    for entry in "DAGSTER_WEBSERVER_PORT 3000 the Dagster UI" "MLOPS_BENTO_PORT 3001 the Bento service"; do
        read -r name default what <<< "$entry"
        port=$(setting "$name" "$default")
        if [[ " ${used[*]} " == *" $port "* ]]; then
            echo "stack: $name=$port is the port of another service of the stack: choose another in $env_file" >&2
            problem=1
        fi
        used+=("$port")
        if grep -qx "$port" <<< "$own"; then
            continue
        fi
        if port_taken "$port"; then
            echo "stack: port $port ($name, $what) is taken on this host: set $name to a free port in" \
                 "$env_file (or in the environment: MLOPS_BENTO_PORT=8301 make deploy-up) and run again" >&2
            problem=1
        fi
    done
    return $problem
}
secrets_dir=deploy/secrets
socket=${DOCKER_HOST:-unix:///var/run/docker.sock}
socket=${socket#unix://}

# A secret file: kept when present; else the value of VARIABLE in an older deploy/.env (then removed from it,
# where every process could read it), else random. The folder is root's alone (0700); the file is 0444 because
# Compose (non-swarm) bind-mounts it as it is and the containers read it as their own users.
ensure_secret() {
    local name=$1 variable=$2 file=$secrets_dir/$1 value=
    [ -s "$file" ] && return 0
    if [ -f "$env_file" ]; then
        value=$(sed -n "s/^$variable=//p" "$env_file" | tail -n1)
        [ "$value" = change-me ] && value=
    fi
    if [ -n "$value" ]; then
        echo "stack: moved $variable from $env_file to $file"
    else
        value=$(random_hex)
        echo "stack: wrote a random $variable to $file"
    fi
    (umask 077; printf '%s' "$value" > "$file.tmp")
    chmod 0444 "$file.tmp"
    mv -f "$file.tmp" "$file"
    [ -f "$env_file" ] && sed -i "/^$variable=/d" "$env_file"
    return 0
}

ensure_env_file() {
    if [ ! -f "$env_file" ]; then
        cp deploy/env.example "$env_file"
        chmod 600 "$env_file"
        echo "stack: wrote $env_file from deploy/env.example"
    fi
    mkdir -p "$secrets_dir"
    chmod 0700 "$secrets_dir"
    ensure_secret dagster_pg_password DAGSTER_PG_PASSWORD
    # The service's bearer token (access control is on in production); clients send it as a bearer token.
    ensure_secret mlops_api_token MLOPS_API_TOKEN
    if [ -z "${DOCKER_SOCKET_GID:-}" ]; then
        DOCKER_SOCKET_GID=$(stat -c %g "$socket" 2>/dev/null || echo 0)
        export DOCKER_SOCKET_GID
    fi
}

up() {
    check_ports || exit 1
    ensure_env_file
    deploy/scripts/prepare_wheelhouse.sh "${MLOPS_WHEELHOUSE_PYTHON:-python3}"
    if [ -z "${MLOPS_BASE_IMAGE:-}" ]; then
        if available "$public_base"; then
            export MLOPS_BASE_IMAGE=$public_base
        else
            echo "stack: $public_base cannot be pulled: using the local base $local_base"
            deploy/scripts/build_base_image.sh "$local_base"
            export MLOPS_BASE_IMAGE=$local_base
        fi
    fi
    if [ -z "${MLOPS_LOCAL_POSTGRES:-}" ]; then
        if available "$public_postgres"; then
            export MLOPS_LOCAL_POSTGRES=0
        else
            echo "stack: $public_postgres cannot be pulled: building PostgreSQL on $MLOPS_BASE_IMAGE"
            export MLOPS_LOCAL_POSTGRES=1
        fi
    fi
    if [ "$MLOPS_LOCAL_POSTGRES" = 1 ] && [ "$MLOPS_BASE_IMAGE" = "$public_base" ]; then
        deploy/scripts/build_base_image.sh "$local_base"  # the PostgreSQL image builds on Debian's apt
    fi
    echo "stack: base image $MLOPS_BASE_IMAGE; project $project"
    # The wheelhouse's identity labels the dependency stages (deploy/Dockerfile.*): after the build, the stages of
    # this wheelhouse stay (the cache of the next build), those of older ones and the images a rebuild replaced go.
    MLOPS_WHEELHOUSE_ID=$( (cat deploy/wheelhouse/requirements.txt; ls deploy/wheelhouse) | sha256sum | cut -c1-16)
    export MLOPS_WHEELHOUSE_ID
    compose build
    docker image prune -f --filter label=org.mlops.stack \
        --filter "label!=org.mlops.wheelhouse=$MLOPS_WHEELHOUSE_ID" | sed 's/^/stack: /'
    compose up -d --no-build
    echo "stack: up. Dagster UI http://127.0.0.1:$(setting DAGSTER_WEBSERVER_PORT 3000)," \
         "Bento service http://localhost:$(setting MLOPS_BENTO_PORT 3001)"
}

down() {
    ensure_env_file  # compose interpolates the file (and checks the secrets' files) even to stop
    # Run containers are started by DockerRunLauncher, not by compose: remove the ones on our network.
    local network=${MLOPS_NETWORK:-mlops_network}
    local runs
    runs=$(docker ps -aq --filter label=dagster/run_id --filter "network=$network")
    if [ -n "$runs" ]; then
        echo "stack: removing $(echo "$runs" | wc -l) run container(s)"
        docker rm -f $runs >/dev/null
    fi
    local volumes=(-v)
    if [ "${KEEP_DATA:-0}" = 1 ]; then
        volumes=()
        echo "stack: KEEP_DATA=1: the volumes stay"
    fi
    MLOPS_LOCAL_POSTGRES=1 compose down --remove-orphans "${volumes[@]}"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
