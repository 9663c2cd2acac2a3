"""`python -m rapport`: the `rapport` command, for subprocesses that must use this interpreter."""

from rapport.cli.main import run

if __name__ == "__main__":
    run()
