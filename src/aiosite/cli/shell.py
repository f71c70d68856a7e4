"""``aiosite shell``: an asyncio Python shell with the site built and started.

Like ``python -m asyncio``: the event loop runs in the main thread, the console reads in
a thread of its own, and code is compiled with top-level ``await`` allowed. The site's
startup work runs first (its database connects) and its cleanup runs on exit. ``db`` is
an ORM session on the site's database: committed when the shell ends normally, rolled
back when the code given with ``-c`` or on stdin fails (or exits with a status other than 0).
"""

from __future__ import annotations

import ast
import asyncio
import code
import concurrent.futures
import contextlib
import inspect
import linecache
import signal
import sys
import threading
import traceback
import types
from dataclasses import dataclass
from typing import Annotated, Any

import sqlalchemy
import typer
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from aiosite.apps import APPS
from aiosite.cli.context import CliState
from aiosite.db.engine import database_of, end_failed_session
from aiosite.db.models import models_of
from aiosite.exceptions import AiositeError, CommandError, one_line
from aiosite.server.dev import describe_error
from aiosite.settings import Settings
from aiosite.site import create_site

FLAGS = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT


def register(cli: typer.Typer) -> None:
    cli.command("shell")(shell)


def shell(
    ctx: typer.Context,
    command: Annotated[
        str | None,
        typer.Option(
            "--command",
            "-c",
            help="Run these statements and exit (awaitables awaited; the value of a last "
            "expression printed), e.g. -c 'await db.scalar(select(func.count(Post.id)))'.",
        ),
    ] = None,
) -> None:
    """A Python shell (top-level await) with the site started: app, settings, db (an ORM
    session), the apps' models, select, update, delete, func. Code piped into stdin runs
    as with -c."""
    state: CliState = ctx.obj
    settings = state.settings()
    source, filename = (command, "<command>") if command is not None else (None, "<stdin>")
    if source is None and not sys.stdin.isatty():
        source = sys.stdin.read()
    with asyncio.Runner() as runner:
        started = runner.run(_start(settings))
        status = 1
        try:
            if source is None:
                _interact(runner.get_loop(), started)
                status = 0
            else:
                status = runner.run(run_source(source, filename, started.namespace))
        finally:
            runner.run(started.stop(commit=status == 0))
    if status != 0:
        raise typer.Exit(status)


@dataclass
class Started:
    """The started site and what the shell's code sees."""

    runner: web.AppRunner
    db: AsyncSession
    namespace: dict[str, Any]
    banner: str

    async def stop(self, *, commit: bool) -> None:
        try:
            if commit:
                await self._commit()
            else:
                await self.db.rollback()
            await self.db.close()
        finally:
            await self.runner.cleanup()

    async def _commit(self) -> None:
        try:
            await self.db.commit()
        except Exception as exc:
            await end_failed_session(self.db, exc)
            print(
                f"db: the session's changes were rolled back, committing them failed: "
                f"{one_line(exc)}",
                file=sys.stderr,
            )


async def _start(settings: Settings) -> Started:
    app = create_site(settings)
    runner = web.AppRunner(app)
    try:
        await runner.setup()  # the site's startup work: on_startup, cleanup_ctx
        database = database_of(app)
        db = database.session()
    except BaseException as exc:
        # What did start (a cleanup_ctx entered before a failing on_startup) is undone.
        await _cleanup_after_failed_start(runner, settings)
        if isinstance(exc, AiositeError) or not isinstance(exc, Exception):
            raise
        raise CommandError(
            "starting the site failed: " + describe_error(exc, settings.project_dir)
        ) from None
    namespace: dict[str, Any] = {
        "__name__": "__console__",
        "__builtins__": __builtins__,
        "asyncio": asyncio,
        "app": app,
        "settings": settings,
        "db": db,
        "select": sqlalchemy.select,
        "update": sqlalchemy.update,
        "delete": sqlalchemy.delete,
        "func": sqlalchemy.func,
    }
    models: list[str] = []
    for qualified, model in models_of(app[APPS]).items():
        name = model.__name__
        if name not in namespace:
            namespace[name] = model
            models.append(name)
        else:
            models.append(f"({qualified}: the name {name} is taken)")
    banner = (
        f"aiosite shell: {settings.site.name!r} ({settings.env}), database "
        f"{database.safe_url}\n"
        "Ready: app, settings, db (an AsyncSession: committed when you leave), "
        "select, update, delete, func, asyncio\n"
        f"Models: {', '.join(models) or 'none'}\n"
        "Use await directly, e.g. await db.scalars(select(...)); Ctrl-D or exit() to leave."
    )
    return Started(runner, db, namespace, banner)


async def _cleanup_after_failed_start(runner: web.AppRunner, settings: Settings) -> None:
    """The site's cleanup after its start failed; the start's error is the one reported,
    a failing cleanup only adds a line."""
    try:
        await runner.cleanup()
    except Exception as exc:
        print(
            "cleaning up after the failed start failed too: "
            + describe_error(exc, settings.project_dir),
            file=sys.stderr,
        )


async def run_source(source: str, filename: str, namespace: dict[str, Any]) -> int:
    """Run ``source`` as a script with top-level await; print the value of a last
    expression. Return the exit status, as ``python`` would: 0; the code of a
    ``SystemExit``; 1, with the error on stderr, when the code does not compile or raises."""
    # Tracebacks then show the lines, as for a file.
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    try:
        body, last = _compile(source, filename)
    except SyntaxError as exc:  # nothing ran: no traceback, the line and a caret
        print("".join(traceback.format_exception_only(exc)), end="", file=sys.stderr)
        return 1
    try:
        await _run(body, namespace)
        if last is not None:
            value = await _run(last, namespace)
            if inspect.isawaitable(value):
                value = await value
            if value is not None:
                print(repr(value), flush=True)
    except SystemExit as exc:
        return _exit_status(exc)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError):
            print("KeyboardInterrupt", file=sys.stderr)
            return 1
        print(_user_traceback(exc, filename), end="", file=sys.stderr)
        return 1
    return 0


def _compile(source: str, filename: str) -> tuple[types.CodeType, types.CodeType | None]:
    """The statements of ``source``, and its last expression (whose value is printed)
    compiled on its own."""
    tree = ast.parse(source, filename)
    last = tree.body[-1] if tree.body else None
    if not isinstance(last, ast.Expr):
        return compile(tree, filename, "exec", flags=FLAGS), None
    tree.body.pop()
    body = compile(tree, filename, "exec", flags=FLAGS)
    return body, compile(ast.Expression(last.value), filename, "eval", flags=FLAGS)


def _exit_status(exc: SystemExit) -> int:
    """The status ``sys.exit(code)`` gives: 0 for None, the number, or 1 with a message
    (printed on stderr) as Python does."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


async def _run(compiled: types.CodeType, namespace: dict[str, Any]) -> Any:
    result = types.FunctionType(compiled, namespace)()
    if inspect.iscoroutine(result) and compiled.co_flags & inspect.CO_COROUTINE:
        return await result
    return result


def _user_traceback(exc: BaseException, filename: str) -> str:
    """The traceback from the user's code on (``filename``), as Python would print it."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != filename:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))


# --- the interactive console -----------------------------------------------------------


class AsyncConsole(code.InteractiveConsole):
    """An InteractiveConsole whose code runs as a task on ``loop`` (top-level await)."""

    def __init__(self, namespace: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(namespace, filename="<shell>")
        self.compile.compiler.flags |= FLAGS
        self.loop = loop
        self.running: concurrent.futures.Future[Any] | None = None

    def runcode(self, code: types.CodeType) -> None:
        self.running = asyncio.run_coroutine_threadsafe(self._runcode(code), self.loop)
        try:
            exit_request = self.running.result()
        except (KeyboardInterrupt, concurrent.futures.CancelledError):
            self.write("\nKeyboardInterrupt\n")
            return
        except BaseException as exc:
            self.write(_user_traceback(exc, self.filename))
            return
        finally:
            self.running = None
        if exit_request is not None:
            raise exit_request

    async def _runcode(self, code: types.CodeType) -> SystemExit | None:
        # exit() raises SystemExit where the code runs, in the loop: hand it to the
        # console's thread, which ends the shell.
        try:
            await _run(code, self.locals)
        except SystemExit as exc:
            return exc
        return None

    def interrupt(self) -> None:
        """Ctrl-C: cancel the code that runs (at the prompt, nothing runs)."""
        if self.running is not None:
            self.running.cancel()


def _interact(loop: asyncio.AbstractEventLoop, started: Started) -> None:
    console = AsyncConsole(started.namespace, loop)
    with_readline()

    def read_eval_print() -> None:
        try:
            console.interact(banner=started.banner, exitmsg="")
        finally:
            loop.call_soon_threadsafe(loop.stop)

    thread = threading.Thread(target=read_eval_print, name="aiosite-shell", daemon=True)
    loop.add_signal_handler(signal.SIGINT, console.interrupt)
    try:
        thread.start()
        loop.run_forever()
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def with_readline() -> None:
    """Line editing and history at the prompt, where the platform has readline."""
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401
