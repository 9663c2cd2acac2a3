"""The one place a run is prepared, for every stage: the run config with the flags merged and
decoded (so a flag meets the same bounds as the file), then the gateways, judges, budget,
redactor and database, all built and checked before any model is called. A stage adds only its
plan (generate's scenarios, eval's held-out sides, judge's corpus)."""

from __future__ import annotations

import functools
import os
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import msgspec

from rapport.config.decoding import decode
from rapport.config.prices import PriceTable, load_prices
from rapport.config.run import (
    BackendConfig,
    JudgeConfig,
    RunConfig,
    api_key_env_names,
    load_run_config,
)
from rapport.config.secrets import Redactor
from rapport.engine.budget import SpendGuard, attach_budget
from rapport.engine.factory import build_role_gateways
from rapport.engine.gateway import Gateway
from rapport.judges.judge import Judge
from rapport.judges.panel import build_judges
from rapport.store.database import Database

R = TypeVar("R", bound=msgspec.Struct)
# A flag as typed (`--max-active`) -> (the RunConfig field it overrides, its value; None: not
# given, the config's value stands).
Flags = Mapping[str, tuple[str, object]]
# What earlier runs spent, read once the database is open (the budget counts it).
EarlierSpend = Callable[[Mapping[str, Gateway]], Callable[[duckdb.DuckDBPyConnection], float]]


class PreparedRun(msgspec.Struct, frozen=True, kw_only=True):
    """What every stage prepares, checked before any call; a stage's own preparation extends
    it with its plan."""

    settings: RunConfig  # the run config with the flags given
    database: Database  # initialised
    redactor: Redactor  # built from this run's environment: every text stored or shown
    prices: PriceTable
    gateways: dict[str, Gateway] = {}  # by role (roles on one endpoint share one)
    judges: tuple[Judge, ...] = ()
    budget: SpendGuard | None = None  # --max-cost: shared by every gateway of the run

    @property
    def accounted(self) -> dict[str, Gateway]:
        """Every gateway the run calls, judges as `judge:ID`: counted, priced and closed."""
        return {**self.gateways, **{f"judge:{j.id}": j.gateway for j in self.judges}}


def run_settings(config: Path | None, flags: Flags) -> RunConfig:
    """The run config (RUN.yaml, else the defaults) with the flags given. Each flag is decoded
    against its field's type, so the bounds in RunConfig's `Meta` hold for a flag as for the
    file (`msgspec.structs.replace` checks none): a bad value is one line naming the flag."""
    settings = load_run_config(config)
    given = {
        field: decode(value, _field_types()[field], f"{flag} {value}")
        for flag, (field, value) in flags.items()
        if value is not None
    }
    return msgspec.structs.replace(settings, **given)


def checked_request(request: R) -> R:
    """`request` once every field whose type carries bounds (a `Meta`, as `count` does) is
    within them: a value given through the Python API meets the bounds its flag meets on the
    command line, in one line naming the flag (`--count 0: expected int >= 1`)."""
    hints = _field_types(type(request))
    for field in request.__struct_fields__:
        value = getattr(request, field)
        if value is not None and _bounded(hints[field]):
            decode(value, hints[field], f"--{field.replace('_', '-')} {value}")
    return request


@functools.cache
def _field_types(struct: type[msgspec.Struct] = RunConfig) -> dict[str, Any]:
    return typing.get_type_hints(struct, include_extras=True)


def _bounded(hint: Any) -> bool:
    if typing.get_origin(hint) is typing.Annotated:
        return any(isinstance(extra, msgspec.Meta) for extra in hint.__metadata__)
    return any(_bounded(arg) for arg in typing.get_args(hint))


def environment(environ: Mapping[str, str] | None) -> dict[str, str]:
    """The environment keys and endpoints come from: the one given (a test's, a worker's), else
    this process's."""
    return dict(environ) if environ is not None else dict(os.environ)


def prepare_run(
    settings: RunConfig,
    database: Database | Path,
    *,
    environ: Mapping[str, str],
    shown: str,
    roles: Mapping[str, BackendConfig] | None = None,
    judges: Sequence[JudgeConfig] = (),
    key_prefix: str = "backends.",
    earlier_spend: EarlierSpend | None = None,
) -> PreparedRun:
    """Build the run's gateways (one per endpoint, `roles` by name) and judges, its budget when
    `settings.budget_usd` is set and the stage keeps one (`earlier_spend`: what earlier runs of
    it spent counts), and its redactor. A `database` given as a path is opened only after
    gateways and budget are built: a bad key or an unpriced model is refused before the file
    is touched. Errors are one line (`shown` names the config file in them)."""
    prices = load_prices(settings.prices)
    gateways = build_role_gateways(roles or {}, environ, shown, key_prefix, prices=prices)
    built = tuple(build_judges(judges, environ, shown, prices))
    budget = None
    if earlier_spend is not None and settings.budget_usd is not None:
        budget = SpendGuard(settings.budget_usd)
        attach_budget(budget, {**gateways, **{f"judge:{j.id}": j.gateway for j in built}}, prices)
    if isinstance(database, Path):
        database = Database(database)
        database.initialise()
    if budget is not None and earlier_spend is not None:
        budget.spent_before_usd = database.run_sync(earlier_spend(gateways))
    keys = api_key_env_names(settings, *(roles or {}).values(), *(j.backend for j in judges))
    return PreparedRun(
        settings=settings,
        database=database,
        redactor=Redactor.from_environ(environ, keys),
        prices=prices,
        gateways=gateways,
        judges=built,
        budget=budget,
    )
