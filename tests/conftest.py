"""Fixtures: real PostgreSQL, SQLite files, apps on either, and a private dockerd."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from receiver.app import create_app
from receiver.config.settings import Settings
from receiver.store.migrate import upgrade
from tests.harness.postgres import Postgres, start_postgres

pytest_plugins = ["tests.conftest_stack"]  # dockerd, target_app_image

WEBHOOK_TOKEN = "wh-test-token-5b1f"
API_TOKEN = "api-test-token-9c2e"


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    server = start_postgres()
    yield server
    server.stop()


# Migrating took 0.6 s a test database; the templates are migrated once a session, by
# whatever migrations exist when it starts, and each test gets its own copy. Tests of the
# migrations themselves create an empty database and run them.
PG_TEMPLATE = "autofix_migrated"


@pytest.fixture(scope="session")
def pg_template(postgres: Postgres) -> str:
    """The name of a database at head that pg_url copies (no test connects to it: CREATE
    DATABASE ... TEMPLATE refuses a template in use)."""
    upgrade(postgres.create_database(PG_TEMPLATE))
    return PG_TEMPLATE


@pytest.fixture
def pg_url(postgres: Postgres, pg_template: str) -> str:
    return postgres.create_database(template=pg_template)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "autofix.db"
    upgrade(f"sqlite:///{path}")   # no WAL: only the receiver's engine turns it on
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    path = tmp_path / "autofix.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": database_url, "webhook_token": WEBHOOK_TOKEN,
                              "api_token": API_TOKEN, "runner_poll_s": 0.05}
    values.update(overrides)
    return Settings(**values)


AppFactory = Callable[..., Flask]


@pytest.fixture
def app_factory() -> Iterator[AppFactory]:
    made: list[Flask] = []

    def factory(database_url: str, **kwargs: Any) -> Flask:
        executor = kwargs.pop("executor", None)
        notifier = kwargs.pop("notifier", None)
        hosts = kwargs.pop("hosts", None)
        app = create_app(make_settings(database_url, **kwargs), executor=executor,
                         notifier=notifier, hosts=hosts)
        made.append(app)
        return app

    yield factory
    for app in made:
        app.extensions["autofix"].database.dispose()


@pytest.fixture
def app(db_url: str, app_factory: AppFactory) -> Flask:
    return app_factory(db_url)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def webhook_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}


def api_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture(scope="session")
def private_dockerd(dockerd: Any) -> Any:
    """The session's one private dockerd (tests/conftest_stack.py)."""
    return dockerd


@pytest.fixture
def docker_client(private_dockerd: Any) -> Any:
    """A client of the session's private dockerd, with the busybox test image loaded."""
    from tests.harness.busybox import ensure_busybox_image

    client = private_dockerd.client()
    ensure_busybox_image(client)
    return client


@pytest.fixture(scope="session")
def e2e_stack(postgres: Postgres, dockerd: Any, target_app_image: str,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The live loop, shared by test_e2e.py and the dashboard query tests that follow it."""
    from tests.harness.stack import start_stack

    url = postgres.create_database()
    upgrade(url)
    live = start_stack(tmp_path_factory.mktemp("e2e"), dockerd, target_app_image, url)
    yield live
    live.stop()
