#!/bin/sh
# The entrypoint of both Python images (mlops-user-code, mlops-dagster): secrets arrive as files, never as
# values in the container's configuration, so `docker inspect` shows none of them.
#
# - For each secret variable NAME below, when NAME_FILE names a file (a Compose secret under /run/secrets, or
#   the run containers' read-only copy under /run/mlops-secrets), NAME is exported with the file's content
#   for this process only: dagster.yaml's {env: DAGSTER_PG_PASSWORD} and the settings' MLOPS_API_TOKEN read
#   it as before. A NAME_FILE that cannot be read stops the container with the reason.
# - MLOPS_SHARE_SECRETS_TO (the daemon): copy the Compose secrets into that folder, a volume the run launcher
#   mounts read-only into every run container (deploy/dagster.yaml), readable by this user only.
# - The container's main process (its parent is Docker's init: the compose file's `init: true`) writes its PID
#   where deploy/healthcheck.sh finds it to restart a hung service, and clears the count of failed checks.
# Then the command (CMD, or what the compose file or DockerRunLauncher gives) replaces this shell.
set -eu

for name in DAGSTER_PG_PASSWORD MLOPS_API_TOKEN; do
    eval "file=\${${name}_FILE:-}"
    if [ -n "$file" ]; then
        if [ ! -r "$file" ]; then
            echo "mlops-entrypoint: ${name}_FILE=$file is not a readable file (user $(id -u))" >&2
            exit 1
        fi
        export "$name=$(cat "$file")"
    fi
done

if [ -n "${MLOPS_SHARE_SECRETS_TO:-}" ]; then
    umask 077
    for secret in /run/secrets/*; do
        [ -f "$secret" ] || continue
        target="$MLOPS_SHARE_SECRETS_TO/$(basename "$secret")"
        cat "$secret" > "$target.tmp"
        mv -f "$target.tmp" "$target"  # atomic: a run container starting now reads the old or the new one
    done
fi

if [ "$PPID" = 1 ]; then
    rm -f /tmp/mlops-health-failures
    echo $$ > /tmp/mlops-main.pid  # exec keeps the PID: it is the command's
fi

exec "$@"
