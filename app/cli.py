"""``flask`` commands: user management and the development demo login."""

from __future__ import annotations

import click
from flask import Flask
from sqlalchemy import select

from .database import commit_session
from .extensions import db
from .models import User

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo-password"


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
