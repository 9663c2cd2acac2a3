"""The CLI reference page, generated from the typer app itself so it never drifts from the code.

Used two ways: as a mkdocs hook (`hooks:` in mkdocs.yml), which adds the page
`reference/cli.md` to the site at build time without writing it to disk, and as a script
(`python scripts/cli_reference.py`) that prints the same Markdown. It walks the command tree
that typer builds (groups and their commands, in the order `rapport --help` lists them) and
writes, per command, its usage line, its help text and a table of its arguments and options
with the help, default and range typer itself shows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

PAGE = "reference/cli.md"
INTRO = """# CLI reference

Generated from the `rapport` command's own definitions when the site is built
(`scripts/cli_reference.py`), so it says what `rapport COMMAND --help` says. Exit codes are on
[Exit codes](exit-codes.md); backend specs, numeric limits and the main tables on
[Commands at a glance](commands.md).
"""


def _walk(command: Any, ctx: Any, path: list[str]) -> Iterator[tuple[list[str], Any, Any]]:
    """Each command with its full path and a click context, depth first, groups included."""
    yield path, command, ctx
    for name in getattr(command, "list_commands", lambda _ctx: [])(ctx):
        sub = command.get_command(ctx, name)
        if sub is None or sub.hidden:
            continue
        sub_ctx = sub.context_class(sub, info_name=name, parent=ctx)
        yield from _walk(sub, sub_ctx, [*path, name])


def _cell(text: str) -> str:
    """One table cell: typer's rich escapes undone, pipes and newlines made safe."""
    return " ".join(text.replace("\\[", "[").replace("|", "\\|").split())


def _command_section(path: list[str], command: Any, ctx: Any) -> list[str]:
    level = "#" * min(len(path) + 1, 4)
    lines = [f"{level} `{' '.join(path)}`", ""]
    help_text = (command.help or "").replace("\\[", "[").strip()
    if help_text:
        lines += [help_text, ""]
    lines += ["```text", command.get_usage(ctx).strip(), "```", ""]
    rows = []
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        record = param.get_help_record(ctx)
        if record is None:  # an argument: click gives it no help record
            name = param.human_readable_name
            typer_help = getattr(param, "help", None) or ""
            rows.append((name.upper(), ("required. " if param.required else "") + typer_help))
        else:
            rows.append(record)
    if rows:
        lines += ["| argument or option | what it does |", "|---|---|"]
        lines += [f"| `{_cell(names)}` | {_cell(text)} |" for names, text in rows]
        lines.append("")
    subcommands = [n for n in getattr(command, "list_commands", lambda _ctx: [])(ctx)]
    if subcommands:
        lines += ["Commands: " + ", ".join(f"`{' '.join([*path, n])}`" for n in subcommands), ""]
    return lines


def render() -> str:
    """The whole reference page as Markdown."""
    import typer

    from rapport.cli.main import app

    root = typer.main.get_command(app)
    ctx = root.context_class(root, info_name="rapport")
    lines = [INTRO]
    for path, command, command_ctx in _walk(root, ctx, ["rapport"]):
        lines += _command_section(path, command, command_ctx)
    return "\n".join(lines)


def on_files(files: Any, config: Any) -> Any:
    """mkdocs hook: add the generated page to the site (nothing is written into docs/)."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=render()))
    return files


if __name__ == "__main__":
    print(render())
