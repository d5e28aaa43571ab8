#!/bin/sh
# Create the secrets docker-compose.yml reads from ./.secrets/ (`make secrets`).
#
#   sh docs/compose-secrets.sh [PROJECT_DIR]      (default: the repository)
#
# Who runs it. Root, for Docker run as root (`sudo make secrets`). With rootless Docker, as
# the user who runs the daemon, without sudo: the files must then be owned inside the
# daemon's user namespace (its root is you, its uids/gids are your /etc/subuid and
# /etc/subgid ranges), so the script enters that namespace (nsenter, the way Docker's
# rootless guide does, pid from $XDG_RUNTIME_DIR/docker.pid) and sets the same owner and
# groups there; the containers then see exactly what they see under root Docker. Any
# other non-root user is refused in one line: they cannot give a file another group.
#
# Random values, never overwritten once they exist (rotating one means deleting its file
# and recreating the services that use it). Keep .secrets/ out of git.
#
# Who can read them. Outside Swarm, compose bind-mounts each file into /run/secrets with
# the host's owner and mode, and the services do not run as root (receiver 10001,
# PostgreSQL 999, Alertmanager/Prometheus nobody, Grafana 472). So every file is owned by
# root, mode 0440 (never world-readable), with a group id of its own; exactly the services
# that need a secret add its group with `group_add` in docker-compose.yml:
#
#   61001 postgres_password       postgres
#   61002 autofix_db_password     postgres
#   61003 autofix_database_url    receiver
#   61004 autofix_webhook_token   receiver, alertmanager
#   61005 autofix_api_token       receiver
#   61006 grafana_admin_password  grafana
#   61007 grafana_db_password     postgres, grafana
#   61008 target_app_fault_token  target_app
#
# The group ids need no /etc/group entry on the host or in the images. Pick other ids by
# editing both this table and the group_add lines (docker-compose.override.yml) and the
# gid of each secret mount in docker-compose.yml. Under Swarm, `docker stack deploy` makes
# Swarm secrets of the same files and mounts each with the uid/gid/mode docker-compose.yml
# gives it (the reader's uid, this gid, 0440). The directory stays 0700:
# dockerd (root) resolves the bind mounts, nobody else needs to list it.
set -eu
if [ "$(id -u)" -ne 0 ]; then
    pidfile="${XDG_RUNTIME_DIR:-/run/user/$(id -u)}/docker.pid"
    if [ -z "${AUTOFIX_SECRETS_IN_USERNS:-}" ] && [ -s "$pidfile" ]; then
        # Rootless Docker: root of its user namespace, where the groups below exist.
        export AUTOFIX_SECRETS_IN_USERNS=1
        exec nsenter -U --preserve-credentials -t "$(cat "$pidfile")" -- sh "$0" "$@"
    fi
    echo "make secrets: needs root to give each file its group (sudo make secrets), or a" \
         "rootless Docker daemon of this user (no $pidfile)" >&2
    exit 2
fi
cd "${1:-$(dirname "$0")/..}"
umask 077
mkdir -p .secrets
chmod 0700 .secrets

rand() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }

make_secret() {  # name gid value
    if [ ! -s ".secrets/$1" ]; then
        printf '%s' "$3" > ".secrets/$1"
        echo "created .secrets/$1"
    fi
    # Also for files made by older versions of this script (0600, root only).
    chown "0:$2" ".secrets/$1"
    chmod 0440 ".secrets/$1"
}

make_secret postgres_password 61001 "$(rand)"
make_secret autofix_db_password 61002 "$(rand)"
make_secret autofix_webhook_token 61004 "$(rand)"
make_secret autofix_api_token 61005 "$(rand)"
make_secret grafana_admin_password 61006 "$(rand)"
make_secret grafana_db_password 61007 "$(rand)"
make_secret target_app_fault_token 61008 "$(rand)"
# The receiver logs in as `autofix` (the database owner, not a superuser), so its URL is
# derived from autofix_db_password. Files from older versions of this script named the
# superuser password here: delete .secrets/autofix_database_url to regenerate it.
make_secret autofix_database_url 61003 \
    "postgresql+psycopg2://autofix:$(cat .secrets/autofix_db_password)@postgres:5432/autofix"
