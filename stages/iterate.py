"""`rapport iterate`: one turn of the design loop — a small batch generated and judged in one run
session, its figures stored as the domain's next iteration beside the previous one's."""

from __future__ import annotations

import msgspec

from rapport.config.loader import load_domain
from rapport.reports.iteration_figures import IterationFigures, iteration_figures
from rapport.stages.generate import GenerateRequest, RunSummary, generate
from rapport.stages.progress import Progress
from rapport.store.database import Database
from rapport.store.iterations import latest_iterations, record_iteration
from rapport.store.rows import utc_now

ITERATIONS_DB = "iterations.duckdb"


class Iteration(msgspec.Struct, frozen=True):
    domain: str
    number: int
    figures: IterationFigures
    previous: IterationFigures | None  # the domain's iteration before this one
    generated: RunSummary  # with its judging (generate's judging="always")


def iterate(request: GenerateRequest, *, display: Progress | None = None) -> Iteration:
    """Generate and judge the batch (`request.domain` is required; `display` shows it as it
    shows any stage), then record its figures."""
    assert request.domain is not None
    loaded = load_domain(request.domain)  # a broken domain stops here, before anything is written
    generated = generate(msgspec.structs.replace(request, judging="always"), display=display)

    def figures_and_previous(conn) -> tuple[int, IterationFigures, IterationFigures | None]:
        figures = iteration_figures(conn, generated.plan_id)
        number = record_iteration(
            conn,
            loaded.name,
            generated.plan_id,
            loaded.fingerprint(),
            request.count,
            msgspec.json.encode(figures).decode(),
            utc_now(),
        )
        earlier = [r for r in latest_iterations(conn, loaded.name, 2) if r.iteration < number]
        previous = (
            msgspec.json.decode(earlier[0].figures, type=IterationFigures) if earlier else None
        )
        return number, figures, previous

    number, figures, previous = Database(request.db).run_sync(figures_and_previous)
    return Iteration(loaded.name, number, figures, previous, generated)
