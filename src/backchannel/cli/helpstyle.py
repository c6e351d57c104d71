"""How every command's `--help` reads: plain text, in the words the docs use.

Typer's own help shows a parameter's Python type (`<bool>`, `<str>`, `{channel}`,
`<int range> [x>=1]`) and draws Rich panels, which cost an import of Rich and leave
trailing spaces in a pipe. These classes render the usage line and the parameter lists
the way Click always has: `CHANNEL TEXT`, `[MESSAGE]`, `--round N`, `--flash`. They are
given to every command and group when the root loads them (`main.LazyRoot`), so no
command module has to ask for them.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Final

import typer
from typer._click import Context, HelpFormatter  # Typer's vendored Click: its signatures
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

__all__ = ["PlainHelpCommand", "PlainHelpGroup", "metavar_of", "restyle"]

# A value's placeholder, by the annotation Typer read from the function.
_WORDS: Final[dict[object, str]] = {int: "N", float: "NUMBER", Path: "PATH"}


def metavar_of(param: TyperArgument | TyperOption) -> str:
    """What a value of this parameter is called in help: its `metavar` if the command
    gave one, else `CHANNEL` for an argument and a word for an option's type."""
    if param.metavar:
        return param.metavar
    if isinstance(param, TyperArgument):
        word = (param.name or "value").upper()
    else:
        desc = param.type_descriptor
        annotation: Any = desc.annotation
        if desc.is_choice and desc.choices:
            word = "|".join(str(getattr(c, "value", c)) for c in desc.choices)
        else:
            inner = getattr(annotation, "__args__", (annotation,))[0] if desc.is_list else (
                annotation)
            word = _WORDS.get(inner, "TEXT")
    return f"{word}..." if param.nargs != 1 or getattr(param, "multiple", False) else word


def _usage_piece(param: TyperArgument) -> str:
    word = metavar_of(param)
    return word if param.required else f"[{word}]"


def _default_text(param: TyperArgument | TyperOption, ctx: Context) -> str | None:
    if isinstance(param.show_default, str):
        return param.show_default
    if not (param.show_default or ctx.show_default):
        return None
    default = param.get_default(ctx, call=False)
    if default is None or default is False or default in ((), [], ""):
        return None
    return str(getattr(default, "value", default))


def _record(param: TyperArgument | TyperOption, ctx: Context) -> tuple[str, str] | None:
    if param.hidden:
        return None
    extra = []
    default = _default_text(param, ctx)
    if default is not None:
        extra.append(f"default: {default}")
    envvar = param.envvar if getattr(param, "show_envvar", False) else None
    if isinstance(envvar, str):
        extra.append(f"env var: {envvar}")
    if isinstance(param, TyperArgument):
        term = metavar_of(param)
    else:
        term = ", ".join(sorted(param.opts, key=len))
        if param.secondary_opts:
            term += " / " + ", ".join(param.secondary_opts)
        if not param.is_flag and not param.count:
            term += f" {metavar_of(param)}"
        if param.required:
            extra.append("required")
    text = param.help or ""
    if extra:
        text = f"{text}  [{'; '.join(extra)}]" if text else f"[{'; '.join(extra)}]"
    return term, text


def _keep_examples(text: str) -> str:
    """Mark `Example:` paragraphs so that Click does not rewrap them: an example is
    pasted, and a line broken in the middle of the command no longer runs."""
    return "\n\n".join(f"\b\n{p}" if p.startswith("Example") else p
                       for p in text.split("\n\n"))


class _PlainHelp:
    """The usage line, the text and the parameter lists, for a command or a group."""

    def format_help_text(self, ctx: Context, formatter: HelpFormatter) -> None:
        assert isinstance(self, TyperCommand | TyperGroup)
        if self.help:
            formatter.write_paragraph()
            with formatter.indentation():
                formatter.write_text(_keep_examples(inspect.cleandoc(self.help)))

    def collect_usage_pieces(self, ctx: Context) -> list[str]:
        assert isinstance(self, TyperCommand | TyperGroup)
        pieces = [self.options_metavar] if self.options_metavar else []
        pieces += [_usage_piece(p) for p in self.get_params(ctx)
                   if isinstance(p, TyperArgument)]
        if isinstance(self, TyperGroup):
            pieces.append(self.subcommand_metavar)
        return pieces

    def format_options(self, ctx: Context, formatter: HelpFormatter) -> None:
        assert isinstance(self, TyperCommand | TyperGroup)
        arguments: list[tuple[str, str]] = []
        options: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument | TyperOption):
                row = _record(param, ctx)
                if row is not None:
                    (arguments if isinstance(param, TyperArgument) else options).append(row)
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)
        if isinstance(self, TyperGroup):
            self.format_commands(ctx, formatter)


class PlainHelpCommand(_PlainHelp, TyperCommand):
    """A Typer command whose help reads as plain text (see the module's docstring)."""


class PlainHelpGroup(_PlainHelp, TyperGroup):
    """A Typer group whose help reads as plain text (see the module's docstring)."""


def restyle(app: typer.Typer) -> typer.Typer:
    """Give `app`, its commands and its sub-groups the plain help classes, unless one
    asked for a class of its own. Returns `app`."""
    # Typer's own classes (or its "not given" placeholder) are replaced; a subclass one
    # asked for is kept.
    if app.info.cls in (None, TyperGroup) or not isinstance(app.info.cls, type):
        app.info.cls = PlainHelpGroup
    for command in app.registered_commands:
        if command.cls in (None, TyperCommand):
            command.cls = PlainHelpCommand
    for group in app.registered_groups:
        if group.typer_instance is not None:
            restyle(group.typer_instance)
    return app
