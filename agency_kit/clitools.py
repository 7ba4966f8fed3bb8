"""Shared command-line plumbing for ``agency-kit`` and ``linkage-hub``.

Every command takes ``--json`` (print one JSON object summarising what it did
on stdout and nothing else there) and ``--debug`` (show a traceback on error).
Errors from :mod:`linkage.errors` print ``Error: <message>`` on stderr and exit
with the error's own code; anything unexpected exits 1 with a one-line message.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import traceback
from collections.abc import Callable
from typing import Any

import click

from linkage.errors import AidlinkError

log = logging.getLogger("aidlink")


class Reporter:
    """What a command tells the user: human lines on stderr/stdout, or one JSON object."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def say(self, message: str) -> None:
        """A human-readable line: on stdout normally, on stderr under --json."""
        click.echo(message, err=self.as_json)

    @property
    def interactive(self) -> bool:
        return not self.as_json and sys.stderr.isatty()


def json_default(o: Any) -> Any:
    if hasattr(o, "isoformat"):
        return o.isoformat()
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    return str(o)


def aidlink_command(group: click.Group, name: str | None = None, **kwargs: Any) -> Callable:
    """Register ``fn`` as a command of ``group`` with --json/--debug and error handling.

    ``fn`` receives a ``reporter`` keyword and returns a dict summary (printed as
    JSON under --json) or None.
    """

    def decorate(fn: Callable[..., dict[str, Any] | None]) -> click.Command:
        @click.option("--json", "as_json", is_flag=True, help="Print one JSON summary on stdout and nothing else there.")
        @click.option("--debug", is_flag=True, help="Show a traceback on error.")
        @functools.wraps(fn)
        def wrapper(as_json: bool, debug: bool, **kw: Any) -> None:
            logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, stream=sys.stderr,
                                format="%(levelname)s %(name)s: %(message)s")
            reporter = Reporter(as_json)
            try:
                summary = fn(reporter=reporter, **kw)
            except AidlinkError as e:
                if debug:
                    traceback.print_exc()
                click.echo(f"Error: {e.message}", err=True)
                if as_json:
                    click.echo(json.dumps({"ok": False, "error": type(e).__name__, "exit_code": e.exit_code,
                                           "message": e.message}, ensure_ascii=False))
                sys.exit(e.exit_code)
            except (click.exceptions.ClickException, click.exceptions.Exit):
                raise
            except click.exceptions.Abort:
                click.echo("Error: aborted (no input)", err=True)
                if as_json:
                    click.echo(json.dumps({"ok": False, "error": "Aborted", "exit_code": 2}))
                sys.exit(2)
            except Exception as e:  # a bug: never echo data, name the type only
                if debug:
                    traceback.print_exc()
                click.echo(f"Error: unexpected {type(e).__name__} (run with --debug for details; please report it)",
                           err=True)
                if as_json:
                    click.echo(json.dumps({"ok": False, "error": type(e).__name__, "exit_code": 1}))
                sys.exit(1)
            if as_json:
                out = {"ok": True, "command": name or fn.__name__.replace("_", "-")}
                out.update(summary or {})
                click.echo(json.dumps(out, ensure_ascii=False, default=json_default))

        return group.command(name, **kwargs)(wrapper)

    return decorate


class LazyGroup(click.Group):
    """A click group whose heavier commands are registered only when used.

    ``lazy`` maps a command name to the module whose ``register(group)``
    defines it, so ``agency-kit keygen-secret`` does not pay for importing
    pandas and numba, which only ``encode`` needs.
    """

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def _load(self, name: str) -> None:
        module = self.lazy.get(name)
        if module is None:
            return
        import importlib

        mod = importlib.import_module(module)
        for key in [k for k, m in self.lazy.items() if m == module]:
            del self.lazy[key]
        mod.register(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            self._load(cmd_name)
        return super().get_command(ctx, cmd_name)
