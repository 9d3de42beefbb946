"""``flask`` commands: user management, the development demo login, and telling a client
command (``watch``) from the rest, since it needs none of this server's secrets."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask import Flask
from sqlalchemy import select

from .database import commit_session
from .extensions import db
from .models import User

#: Commands that only talk to a Herald elsewhere (``--server``): they sign and serve nothing.
CLIENT_COMMANDS = frozenset({"watch"})
#: Options of ``flask`` itself that take a value (``flask --app wsgi watch …``).
_FLASK_VALUE_OPTIONS = frozenset({"--app", "-A", "--env-file", "-e"})

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo-password"


def flask_command(argv: list[str]) -> str | None:
    """The command a ``flask`` command line runs (``flask --app wsgi watch 42`` → ``watch``)."""
    args = iter(argv[1:])
    for arg in args:
        if arg in _FLASK_VALUE_OPTIONS:
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def runs_client_command(argv: list[str] | None = None) -> bool:
    """True when this process is ``flask … watch`` (or another client command).

    ``flask`` builds the app only to find the command, so ``wsgi.py`` then builds it with
    ``CLIENT_ONLY``: production's refusal to start without ``JWT_SECRET_KEY`` is for
    processes that serve, not for a terminal following a job on another server.
    """
    argv = sys.argv if argv is None else argv
    if not argv:
        return False
    program = Path(argv[0])
    is_flask = program.name == "flask" or (program.name == "__main__.py" and program.parent.name == "flask")
    return is_flask and flask_command(argv) in CLIENT_COMMANDS


def create_user(username: str, password: str, *, admin: bool = False) -> User:
    """Create a user, or raise ``click.ClickException`` when the name is taken."""
    if db.session.scalar(select(User).where(User.username == username)) is not None:
        raise click.ClickException(f"user {username!r} already exists")
    user = User(username=username, is_admin=admin)
    user.set_password(password)
    db.session.add(user)
    commit_session()
    return user


def ensure_demo_user() -> tuple[str, str]:
    """Create the development demo user if missing; returns its login."""
    user = db.session.scalar(select(User).where(User.username == DEMO_USERNAME))
    if user is None:
        create_user(DEMO_USERNAME, DEMO_PASSWORD)
    return DEMO_USERNAME, DEMO_PASSWORD


def register_cli(app: Flask) -> None:
    """Attach the command groups."""
    users = click.Group("users", help="Manage users.")

    @users.command("create")
    @click.argument("username")
    @click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
    @click.option("--admin", is_flag=True, help="Give the user admin rights.")
    def create(username: str, password: str, admin: bool) -> None:
        """Create user USERNAME."""
        if len(password) < 8:
            raise click.ClickException("the password must have at least 8 characters")
        user = create_user(username, password, admin=admin)
        click.echo(f"created user {user.username!r} (id {user.id})")

    app.cli.add_command(users)

    from .apitests.cli import run_cases_command, watch_command

    app.cli.add_command(run_cases_command)
    app.cli.add_command(watch_command)
