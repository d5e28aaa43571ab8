"""Probes `make compose-test` runs INSIDE the stack's containers (docker exec -i C python3 -).

Standalone: the standard library only, except `receiver-db` (SQLAlchemy, in the receiver
image) and `exec` (the docker SDK, in the receiver image). Each probe prints one JSON
document on stdout: the driver (tests/harness/compose_stack.py) judges it.

    python3 - proxy URL '[[method, path, body-or-null], ...]'   -> [[status-or-error], ...]
    python3 - connect '[[host, port], ...]'                     -> [["ok"|"error text"], ...]
    python3 - http METHOD URL                                    -> [status, body[:300]]
    python3 - exec DOCKER_HOST CONTAINER                         -> [exit_code, output]
    python3 - receiver-db                                        -> {role facts}
"""

import http.client
import json
import os
import socket
import sys
import urllib.error
import urllib.request
from urllib.parse import urlsplit


def proxy(url: str, requests: list) -> list:
    parts = urlsplit(url)
    out = []
    for method, path, body in requests:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            resp.read()
            out.append(resp.status)
        except Exception as exc:
            out.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()
    return out


def _connect_one(target: list) -> str:
    host, port = target
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            return "ok"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def connect(targets: list) -> list:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=16) as pool:   # unanswered SYNs: wait in parallel
        return list(pool.map(_connect_one, targets))


def http_call(method: str, url: str) -> list:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return [resp.status, resp.read()[:300].decode(errors="replace")]
    except urllib.error.HTTPError as exc:
        return [exc.code, exc.read()[:300].decode(errors="replace")]
    except Exception as exc:
        return [f"{type(exc).__name__}: {exc}", ""]


def docker_exec(base_url: str, container: str) -> list:
    import docker  # the receiver image's SDK, the same calls the exec action makes

    client = docker.DockerClient(base_url=base_url, timeout=30)
    result = client.containers.get(container).exec_run(["python3", "-c", "print('exec-ok')"],
                                                       demux=False)
    return [result.exit_code, (result.output or b"").decode(errors="replace").strip()]


def receiver_db() -> dict:
    from sqlalchemy import create_engine, text

    with open(os.environ["AUTOFIX_DATABASE_URL_FILE"]) as secret:
        url = secret.read().strip()
    engine = create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT current_user, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls "
            "FROM pg_roles WHERE rolname = current_user")).one()
        owner = conn.execute(text(
            "SELECT pg_get_userbyid(datdba) FROM pg_database "
            "WHERE datname = current_database()")).scalar()
        tables_owner = conn.execute(text(
            "SELECT tableowner FROM pg_tables WHERE tablename = 'incidents'")).scalar()
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        lock = conn.execute(text("SELECT pg_try_advisory_xact_lock(42)")).scalar()
    engine.dispose()
    return {"user": row[0], "superuser": row[1], "createrole": row[2], "createdb": row[3],
            "bypassrls": row[4], "database_owner": owner, "incidents_owner": tables_owner,
            "alembic_version": head, "advisory_lock": lock}


def main(argv: list) -> int:
    kind = argv[0]
    if kind == "proxy":
        result = proxy(argv[1], json.loads(argv[2]))
    elif kind == "connect":
        result = connect(json.loads(argv[1]))
    elif kind == "http":
        result = http_call(argv[1], argv[2])
    elif kind == "exec":
        result = docker_exec(argv[1], argv[2])
    elif kind == "receiver-db":
        result = receiver_db()
    else:
        raise SystemExit(f"unknown probe {kind}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
