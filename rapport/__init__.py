"""Rapport: turn a domain description into a fine-tuned, locally runnable chat model.

The public Python API is what `__all__` names (the command line, Ray workers and the benchmarks
are its clients)::

    import rapport

    corpus = rapport.open("rapport.duckdb")  # creates or opens a Rapport database
    run = corpus.generate(count=100, turns=4, backend="simulated", seed=1)
    corpus.judge(judges=["simulated"])
    rows = corpus.sql("SELECT role, count(*) FROM messages GROUP BY 1").df()

Everything else is private by convention. The subpackages are the repository's top-level folders
(engine/, agents/, judges/, …), mapped here by `package-dir` in pyproject.toml so that nothing
generic (`config`, `cli`, `store`) lands in site-packages. The names below are imported when
first used, so `import rapport.config…` stays as light as before.

Its own modules are a client of the stages like the command line; `__main__.py` is the
command line's entry (`python -m rapport`), of cli's layer.
May import: config, store, engine, authoring, judges, agents, reports, evaluation, cluster,
stages, training, viewer.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

_CHECKOUT = Path(__file__).resolve().parent.parent
if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "engine").is_dir():
    # A source checkout first on sys.path (a worktree, `PYTHONPATH=.`) imports its own folders,
    # not those of whichever checkout the editable install points at.
    __path__.append(str(_CHECKOUT))

if TYPE_CHECKING:  # what type checkers see; at run time the same names load lazily
    from rapport.config.backend_settings import BackendBase as Backend
    from rapport.config.run import RunConfig
    from rapport.corpus import Corpus, merge, open
    from rapport.domains import load_domain
    from rapport.errors import (
        BadInput,
        BudgetReached,
        ConfigError,
        ProviderUnreachable,
        ProviderUnusable,
        RapportError,
        RunInterrupted,
        StoreError,
    )
    from rapport.evaluation.summary import EvalSummary
    from rapport.stages.estimate import Estimate
    from rapport.stages.generate import RunSummary
    from rapport.stages.judge import JudgeSummary
    from rapport.store.conversation_reads import ConversationRecord as Conversation

# public name -> (module, attribute)
_EXPORTS: dict[str, tuple[str, str]] = {
    "open": ("rapport.corpus", "open"),
    "Corpus": ("rapport.corpus", "Corpus"),
    "merge": ("rapport.corpus", "merge"),
    "Conversation": ("rapport.store.conversation_reads", "ConversationRecord"),
    "RunSummary": ("rapport.stages.generate", "RunSummary"),
    "JudgeSummary": ("rapport.stages.judge", "JudgeSummary"),
    "Estimate": ("rapport.stages.estimate", "Estimate"),
    "EvalSummary": ("rapport.evaluation.summary", "EvalSummary"),
    "RunConfig": ("rapport.config.run", "RunConfig"),
    "Backend": ("rapport.config.backend_settings", "BackendBase"),
    "load_domain": ("rapport.domains", "load_domain"),
    "RapportError": ("rapport.errors", "RapportError"),
    "BadInput": ("rapport.errors", "BadInput"),
    "ConfigError": ("rapport.errors", "ConfigError"),
    "StoreError": ("rapport.errors", "StoreError"),
    "ProviderUnusable": ("rapport.errors", "ProviderUnusable"),
    "ProviderUnreachable": ("rapport.errors", "ProviderUnreachable"),
    "BudgetReached": ("rapport.errors", "BudgetReached"),
    "RunInterrupted": ("rapport.errors", "RunInterrupted"),
}

__all__ = [
    "Backend",
    "BadInput",
    "BudgetReached",
    "ConfigError",
    "Conversation",
    "Corpus",
    "Estimate",
    "EvalSummary",
    "JudgeSummary",
    "ProviderUnreachable",
    "ProviderUnusable",
    "RapportError",
    "RunConfig",
    "RunInterrupted",
    "RunSummary",
    "StoreError",
    "load_domain",
    "merge",
    "open",
]


def __getattr__(name: str) -> Any:
    """The public names, imported on first use (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rapport' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
