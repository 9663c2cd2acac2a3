"""`rapport domain draft`: a backend proposes the topic taxonomy, flaw taxonomy and rubric of a
new domain as YAML; each reply is written over the commented template and checked, and an
invalid one is retried with every problem fed back, until it passes or attempts run out."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import msgspec

from rapport.authoring.draft_files import parse_draft, write_draft
from rapport.authoring.draft_prompt import feedback, first_request
from rapport.authoring.draft_simulator import SimulatedDraftBackend
from rapport.config.backend_spec import parse_backend_spec
from rapport.config.domain_check import check_domain
from rapport.config.errors import RapportError
from rapport.config.loader import TEMPLATE_DOMAIN, shipped_domain_dir
from rapport.config.run import BackendConfig
from rapport.config.scaffold import domain_name_for, ensure_empty, scaffold_domain
from rapport.engine.backend import simulated
from rapport.engine.errors import TurnFailed
from rapport.engine.factory import build_gateway, limits_of
from rapport.engine.gateway import Gateway
from rapport.engine.interrupts import run_interruptible
from rapport.engine.types import ChatMessage, CompletionParams

DEFAULT_DRAFT_ATTEMPTS = 3
DRAFT_MAX_TOKENS = 6_000  # a whole draft (topics, flaws, rubric), unless the spec sets one


class DraftRequest(msgspec.Struct, frozen=True):
    target: Path
    description: str
    backend: str  # a backend spec
    attempts: int = DEFAULT_DRAFT_ATTEMPTS


class DraftResult(msgspec.Struct, frozen=True):
    target: Path
    attempts: int  # replies it took, the valid one included
    backend: str  # the backend's label (says simulated where it is)
    simulated: bool


def draft_domain(request: DraftRequest, environ: Mapping[str, str] | None = None) -> DraftResult:
    """Draft a domain into the empty folder `request.target`; a one-line RapportError when no
    reply passes `check` within the attempts."""
    if not request.description.strip():
        raise RapportError("--describe: the description must not be empty")
    if request.attempts < 1:
        raise RapportError("--attempts must be at least 1")
    ensure_empty(request.target)
    settings = parse_backend_spec(request.backend)
    template = shipped_domain_dir(TEMPLATE_DOMAIN)
    with tempfile.TemporaryDirectory(prefix="rapport-draft-") as scratch:
        staging = scaffold_domain(
            Path(scratch) / "domain", template,
            name=domain_name_for(request.target), description=request.description.strip(),
        )  # fmt: skip
        gateway = _gateway(settings, request, os.environ if environ is None else environ)
        attempts = run_interruptible(_converse, gateway, settings, request, template, staging)
        ensure_empty(request.target)
        shutil.copytree(staging, request.target, dirs_exist_ok=True)
    return DraftResult(request.target, attempts, gateway.label, simulated(gateway.backend))


def _gateway(settings: BackendConfig, request: DraftRequest, environ: Mapping[str, str]) -> Gateway:
    if settings.provider == "simulated":
        backend = SimulatedDraftBackend(request.description, latency_ms=settings.latency_ms)
        return Gateway(backend, limits_of(settings))
    return build_gateway(settings, limits_of(settings), environ, "--backend", request.backend)


async def _converse(
    gateway: Gateway, settings: BackendConfig, request: DraftRequest, template: Path, staging: Path
) -> int:
    """Ask, check, feed the problems back; the number of replies it took."""
    params = CompletionParams(
        max_tokens=settings.max_tokens or DRAFT_MAX_TOKENS, temperature=settings.temperature
    )
    messages = first_request(request.description, template)
    note = f"drafted by {gateway.label}; review every line before use"
    if simulated(gateway.backend):
        note = f"simulated draft ({gateway.label}): built offline from the description's words"
    problems: list[str] = []
    try:
        for attempt in range(1, request.attempts + 1):
            try:
                completion = await gateway.complete(messages, params)
            except TurnFailed as error:
                raise RapportError(f"{gateway.label}: the draft request failed: {error}") from None
            problems = _apply(completion.text, staging, template, note)
            if not problems:
                return attempt
            messages = [*messages, ChatMessage("assistant", completion.text), feedback(problems)]
    finally:
        await gateway.aclose()
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    last = " ".join(problems[0].split())
    raise RapportError(
        f"{request.target}: no valid draft from {gateway.label} after {request.attempts} "
        f"attempt{'s' * (request.attempts != 1)}; last problem: {last}{more}"
    )


def _apply(reply: str, staging: Path, template: Path, note: str) -> list[str]:
    """Write a reply's sections into the staging folder; its problems, named by file."""
    sections, problems = parse_draft(reply)
    if problems:
        return problems
    write_draft(sections, staging, template, note)
    prefix = f"{staging}{os.sep}"
    return [str(problem).replace(prefix, "") for problem in check_domain(staging).problems]
