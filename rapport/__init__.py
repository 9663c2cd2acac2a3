"""Rapport: turn a domain description into a fine-tuned, locally runnable chat model.

The one import package the distribution installs. Its subpackages are the repository's
top-level folders (engine/, agents/, judges/, …), mapped here by `package-dir` in
pyproject.toml so that nothing generic (`config`, `cli`, `store`) lands in site-packages.

Its own modules are the public Python API (`import rapport`), a client of the stages like the
command line; `__main__.py` is the command line's entry (`python -m rapport`), of cli's layer.
May import: config, store, engine, authoring, judges, agents, reports, evaluation, cluster,
stages, training, viewer.
"""

from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent
if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "engine").is_dir():
    # A source checkout first on sys.path (a worktree, `PYTHONPATH=.`) imports its own folders,
    # not those of whichever checkout the editable install points at.
    __path__.append(str(_CHECKOUT))
