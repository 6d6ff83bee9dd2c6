"""Sphinx directives that generate the references from the code, so they cannot drift:

``.. deployhook-settings::``
    every configuration key, from :class:`deployhook.settings.Config` (type, default),
    :data:`deployhook.settings.TARGET_KEYS` (per target or daemon-wide) and
    :data:`deployhook.settings_help.DESCRIPTIONS` (what it means).
``.. deployhook-cli::``
    the ``deployhook`` command and each subcommand, from the argument parser
    (:func:`deployhook.cli.main.make_parser`): usage, description, every option.

Both write reStructuredText and parse it in place, so the HTML and the man pages
(``-b man``) show the same text.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from docutils.parsers.rst import Directive
from docutils.statemachine import StringList
from sphinx.util.nodes import nested_parse_with_titles

TYPE_WORDS = {  # annotations of settings.Config, as a config.py author writes the value
    "str": "string", "int": "integer", "float": "number", "bool": "boolean",
    "tuple[str, ...]": "list of strings",
    "tuple[TargetConfig, ...]": "dict of name to settings",
}


def type_text(annotation: str) -> str:
    """``str | None`` -> ``string or None``; a tuple is written as the list it is given as.

    Raises:
        KeyError: an annotation this table does not know (add it to :data:`TYPE_WORDS`).
    """
    parts = [part.strip() for part in annotation.split("|")]
    words = [TYPE_WORDS[part] for part in parts if part != "None"]
    return " or ".join(words + (["None"] if "None" in parts else []))


def default_text(value: Any) -> str:
    """A default as it would be written in ``config.py`` (tuples as lists, the empty
    ``targets`` as ``{}``), as an inline literal."""
    if isinstance(value, tuple):
        value = list(value)
    text = json.dumps(value) if isinstance(value, str | list) else repr(value)
    return f"``{text}``"


def settings_rst() -> list[str]:
    """The configuration reference: one definition per key, in ``Config``'s order.

    Raises:
        KeyError: a key without a description in settings_help.DESCRIPTIONS.
    """
    from deployhook import settings
    from deployhook.settings_help import DESCRIPTIONS

    lines = []
    for field in dataclasses.fields(settings.Config):
        if field.name not in settings.KEYS:
            continue  # not a key (the secret from $DEPLOYHOOK_SECRET)
        default = "``{}``" if field.name == "targets" else default_text(field.default)
        scope = ("per target (a default for every target)" if field.name in settings.TARGET_KEYS
                 else "daemon-wide")
        lines += [f"``{field.name}``",
                  f"   {DESCRIPTIONS[field.name]}",
                  "",
                  f"   *Type*: {type_text(str(field.type))}.  *Default*: {default}.  "
                  f"*Scope*: {scope}.  *Environment*: "
                  f"``{settings.ENV_PREFIX}{field.name.upper()}``.",
                  ""]
    return lines


def _option_rst(action: argparse.Action) -> list[str]:
    """One option or positional argument of a parser as a definition."""
    if action.option_strings:
        metavar = action.metavar or (action.dest.upper() if action.nargs != 0 else None)
        names = ", ".join(f"{name} {metavar}" if metavar else name
                          for name in action.option_strings)
    else:
        names = action.metavar or action.dest
    help_text = (action.help or "").replace("%(default)s", str(action.default))
    if action.choices and not isinstance(action, argparse._SubParsersAction):
        help_text += f" (one of: {', '.join(map(str, action.choices))})"
    return [f"``{names}``", f"   {help_text or '(no description)'}", ""]


def _parser_rst(parser: argparse.ArgumentParser, title: str, underline: str) -> list[str]:
    """A section for ``parser``: its usage, description and options."""
    usage = " ".join(parser.format_usage().removeprefix("usage: ").split())
    lines = [title, underline * len(title), "", "::", "", f"    {usage}", ""]
    if parser.description:
        lines += [parser.description, ""]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        lines += _option_rst(action)
    return lines


def cli_rst() -> list[str]:
    """The CLI reference: the command's own options, then one section per subcommand."""
    from deployhook.cli.main import make_parser

    parser = make_parser()
    lines = _parser_rst(parser, "deployhook", "-")
    lines += ["``-h, --help``", "   show the command's (or a subcommand's) help and exit", ""]
    subparsers = next(action for action in parser._actions
                      if isinstance(action, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        lines += _parser_rst(sub, f"deployhook {name}", "-")
    return lines


class _Generated(Directive):
    """Parse the lines :meth:`lines` makes, with titles, where the directive stands."""

    has_content = False

    def lines(self) -> list[str]:
        raise NotImplementedError

    def run(self) -> list[Any]:
        from docutils import nodes

        node = nodes.section() if self.name == "deployhook-cli" else nodes.container()
        nested_parse_with_titles(self.state, StringList(self.lines(), source=self.name), node)
        return node.children


class SettingsDirective(_Generated):
    def lines(self) -> list[str]:
        return settings_rst()


class CLIDirective(_Generated):
    def lines(self) -> list[str]:
        return cli_rst()


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("deployhook-settings", SettingsDirective)
    app.add_directive("deployhook-cli", CLIDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
