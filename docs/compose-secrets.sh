#!/bin/sh
# Create the Docker secrets docker-compose.yml reads from ./.secrets/ (`make secrets`).
# Random values, mode 0600, never overwritten once they exist (rotating one means
# deleting its file and recreating the services that use it). Keep .secrets/ out of git.
set -eu
cd "$(dirname "$0")/.."
umask 077
mkdir -p .secrets

rand() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }

make_secret() {  # name value
    if [ ! -s ".secrets/$1" ]; then
        printf '%s' "$2" > ".secrets/$1"
        echo "created .secrets/$1"
    fi
}

make_secret postgres_password "$(rand)"
make_secret autofix_webhook_token "$(rand)"
make_secret autofix_api_token "$(rand)"
make_secret grafana_admin_password "$(rand)"
make_secret grafana_db_password "$(rand)"
make_secret target_app_fault_token "$(rand)"
# The receiver's database URL embeds the postgres password, so it is derived from it.
make_secret autofix_database_url \
    "postgresql+psycopg2://autofix:$(cat .secrets/postgres_password)@postgres:5432/autofix"
