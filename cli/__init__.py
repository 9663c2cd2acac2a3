"""The `rapport` command line (typer + rich). Nothing imports it."""
