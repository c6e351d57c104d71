"""The options with which an author gives a text's language and its translations
(`--lang`, `--translation`, `--translated-by`, `--authoritative`), shared by every command
that writes a translatable act (`send`, `clarify`, `answer`, `redline add`,
`agenda propose`); `translations.parse_languages_block` reads them."""

from __future__ import annotations

from typing import Final

import typer

__all__ = [
    "AUTHORITATIVE_OPTION",
    "LANG_OPTION",
    "TITLED_TRANSLATION_OPTION",
    "TRANSLATED_BY_OPTION",
    "TRANSLATION_OPTION",
]

LANG_OPTION: Final = typer.Option(
    None, "--lang", metavar="TAG", help="The language of the text (BCP 47: en, ru, zh-Hans)."
)
TRANSLATION_OPTION: Final = typer.Option(
    [], "--translation", metavar="TAG=TEXT", help="A translation sent with it; repeat."
)
# Red lines and agenda items have a title, translated with their text.
TITLED_TRANSLATION_OPTION: Final = typer.Option(
    [], "--translation", metavar="TAG=TITLE|TEXT",
    help="A translation of the title and the text sent with it; repeat.",
)
TRANSLATED_BY_OPTION: Final = typer.Option(
    None, "--translated-by", metavar="WHO",
    help="Who made the translations: staff, staff:NAME, translator:NAME, machine:TOOL.",
)
AUTHORITATIVE_OPTION: Final = typer.Option(
    None, "--authoritative", metavar="TAG",
    help="The text that prevails if they differ [default: the original].",
)
