"""The viewer's pages as HTML strings. Every value that comes from the database (model text,
names, ids) goes through `esc`; the pages carry no inline script (the CSP forbids it), only
/static/viewer.js."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import urlencode

from rapport.store.viewer_reads import (
    SORTS,
    ConversationDetail,
    EvalPair,
    Facets,
    ListPage,
    ListQuery,
    SideJudging,
    Table,
)
from rapport.viewer import labels, reasons
from rapport.viewer.params import CONFUSION


def esc(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def layout(title: str, body: str, csrf: str, *, refresh: str | None = None) -> str:
    refreshing = f' data-refresh="{esc(refresh)}"' if refresh else ""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{esc(title)} · rapport view</title>"
        f"<meta name='csrf-token' content='{esc(csrf)}'>"
        "<link rel='stylesheet' href='/static/viewer.css'>"
        "<script src='/static/viewer.js' defer></script></head><body>"
        "<nav><b>rapport view</b> <a href='/'>Overview</a> <a href='/conversations'>"
        "Conversations</a> <a href='/queue'>Review queue</a> <a href='/agreement'>"
        "Judge vs people</a> <a href='/eval'>Eval</a> <span id='reviewer-name'></span></nav>"
        f"<main id='content'{refreshing}>{body}</main></body></html>"
    )


def table(section: Table, links: Mapping[str, str] | None = None) -> str:
    """A table; `links` turns a column's values into links (column → URL prefix)."""
    links = links or {}
    head = "".join(f"<th>{esc(labels.column(column))}</th>" for column in section.columns)
    rows = []
    for row in section.rows:
        cells = []
        for column, value in zip(section.columns, row, strict=True):
            text = esc(labels.cell(column, value))
            if column in links and value is not None:
                text = f"<a href='{esc(links[column] + str(value))}'>{text}</a>"
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            kind = " class='num'" if numeric else " class='word'" if " " not in text else ""
            cells.append(f"<td{kind}>{text}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    empty = "" if section.rows else "<p class='empty'>(none)</p>"
    return (
        f"<section><h2>{esc(section.title)}</h2><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>{empty}</section>"
    )


def _select(name: str, options: Iterable[tuple[str, str]], chosen: str | None) -> str:
    items = ["<option value=''>any</option>"]
    for value, label in options:
        selected = " selected" if value == chosen else ""
        items.append(f"<option value='{esc(value)}'{selected}>{esc(label)}</option>")
    label = labels.FILTERS.get(name, name)
    return f"<label>{esc(label)} <select name='{esc(name)}'>{''.join(items)}</select></label>"


def _input(name: str, value: Any, size: int = 6) -> str:
    return (
        f"<label>{esc(labels.FILTERS.get(name, name))} <input name='{esc(name)}' size='{size}' "
        f"value='{esc('' if value is None else value)}'></label>"
    )


def _query_args(query: ListQuery, **changes: Any) -> dict[str, str]:
    values: dict[str, Any] = {
        "status": query.status,
        "passed": None if query.passed is None else ("yes" if query.passed else "no"),
        "score_min": query.score_min,
        "score_max": query.score_max,
        "topic": query.topic,
        "flaw": query.flaw,
        "persona": "=".join(query.persona) if query.persona else None,
        "judge": query.judge,
        "failed": query.failed,
        "q": query.text,
        "reviewed": None if query.reviewed is None else ("yes" if query.reviewed else "no"),
        "simulator": _simulator(query.simulator_failed),
        **_cell_args(query),
        "sort": query.sort,
        "order": "desc" if query.descending else "asc",
        "page": query.page,
        "per_page": query.per_page,
    }
    values.update(changes)
    return {key: str(value) for key, value in values.items() if value is not None}


def _cell_args(query: ListQuery) -> dict[str, str]:
    """A judge-vs-people cell's filter, as the URL carries it."""
    if query.confusion is None:
        return {}
    return dict(zip(CONFUSION, query.confusion, strict=True))


def _cell_filter(query: ListQuery) -> str:
    """The cell filter kept through the form, and said in words above the list."""
    if query.confusion is None:
        return ""
    criterion, judge, person, said = query.confusion
    hidden = "".join(
        f"<input type='hidden' name='{esc(k)}' value='{esc(v)}'>"
        for k, v in _cell_args(query).items()
    )
    return (
        f"{hidden}<p id='cell-filter'>Reviewed conversations where a person answered "
        f"<b>{esc(person)}</b> and judge <b>{esc(judge)}</b> answered <b>{esc(said)}</b> on "
        f"<b>{esc(criterion)}</b> (from <a href='/agreement'>Judge vs people</a>)</p>"
    )


def _simulator(failed: bool | None) -> str | None:
    return None if failed is None else ("failed" if failed else "passed")


def list_body(
    query: ListQuery, page: ListPage, facets: Facets, why_failed: Mapping[str, str] | None = None
) -> str:
    """`why_failed`: why a failed row failed (conversation id → words)."""
    why_failed = why_failed or {}
    pairs = lambda values: [(value, value) for value in values]  # noqa: E731
    persona = "=".join(query.persona) if query.persona else None
    passed = None if query.passed is None else ("yes" if query.passed else "no")
    form = (
        "<form method='get' action='/conversations' class='filters'>"
        + _select("status", pairs(facets.statuses), query.status)
        + _select("passed", [("yes", "passed"), ("no", "failed")], passed)
        + _input("score_min", query.score_min)
        + _input("score_max", query.score_max)
        + _select("topic", pairs(facets.topics), query.topic)
        + _select("flaw", pairs(facets.flaws), query.flaw)
        + _select("persona", [(f"{k}={v}", f"{k}: {v}") for k, v in facets.personas], persona)
        + _select("judge", pairs(facets.judges), query.judge)
        + _select("failed", pairs(facets.failures), query.failed)
        + _input("q", query.text, 20)
        + _select(
            "reviewed",
            [("yes", "by someone"), ("no", "by nobody")],
            None if query.reviewed is None else ("yes" if query.reviewed else "no"),
        )
        + _select(
            "simulator",
            [("failed", "simulator failed"), ("passed", "simulator passed")],
            _simulator(query.simulator_failed),
        )
        + _select("sort", pairs(SORTS), query.sort)
        + _select(
            "order",
            [("asc", "ascending"), ("desc", "descending")],
            "desc" if query.descending else "asc",
        )
        + _cell_filter(query)
        + f"<input type='hidden' name='per_page' value='{query.per_page}'>"
        + "<button type='submit'>Filter</button></form>"
    )
    rows = []
    for row in page.rows:
        verdict = {True: "passed", False: "failed", None: "not judged"}[row.passed]
        score = "" if row.mean_score is None else f"{row.mean_score:.3f}"
        cost = labels.money(row.cost_usd)
        reason = why_failed.get(row.conversation_id) if row.passed is False else None
        why = f"<span class='reason'>{esc(reason)}</span>" if reason else ""
        user = {True: "failed", False: "passed", None: "not judged"}[row.simulator_failed]
        rows.append(
            f"<tr class='conversation' data-id='{esc(row.conversation_id)}'>"
            f"<td><a href='/c/{esc(row.conversation_id)}'>"
            f"{esc(row.conversation_id)}</a></td>"
            f"<td>{esc(row.status)}</td><td>{row.exchanges}</td>"
            f"<td class='{verdict.replace(' ', '-')}'>{verdict}{why}</td><td>{score}</td>"
            f"<td>{esc(', '.join(map(labels.words, row.topic_categories)))}</td>"
            f"<td>{esc(', '.join(map(labels.words, row.flaw_names)))}</td>"
            f"<td>{esc(labels.words(row.writing_style or ''))}</td>"
            f"<td>{cost}</td><td>{row.reviewers or ''}</td>"
            f"<td class='user-side {user.replace(' ', '-')}'>{user}</td></tr>"
        )
    pages = max(1, -(-page.total // query.per_page))
    nav = []
    if query.page > 1:
        args = urlencode(_query_args(query, page=query.page - 1))
        nav.append(f"<a rel='prev' href='/conversations?{esc(args)}'>← previous</a>")
    nav.append(f"<span id='page'>page {query.page:,} of {pages:,}</span>")
    if query.page < pages:
        args = urlencode(_query_args(query, page=query.page + 1))
        nav.append(f"<a rel='next' href='/conversations?{esc(args)}'>next →</a>")
    return (
        f"<h1>Conversations</h1>{form}<p id='total'>{page.total:,} conversations match</p>"
        "<table id='conversations'><thead><tr><th>conversation</th><th>status</th>"
        "<th>exchanges</th><th>verdict</th><th>score</th><th>topics</th><th>flaws</th>"
        "<th>style</th><th>cost</th><th>people</th><th>user side</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        f"<p class='paging'>{' '.join(nav)}</p>"
    )


def _scenario(detail: ConversationDetail) -> str:
    persona = detail.persona
    attributes = persona.get("attributes", {})
    items = [
        f"<li><b>persona</b> {esc(persona.get('name'))}: "
        f"{esc(', '.join(f'{k} {v}' for k, v in attributes.items()))}; traits "
        f"{esc(', '.join(map(str, persona.get('traits', []))))}</li>",
        f"<li><b>writing style</b> {esc(detail.writing_style)} · <b>target</b> "
        f"{detail.target_turns} exchanges · <b>status</b> {esc(detail.status)} "
        f"({esc(detail.end_reason)})</li>",
    ]
    for topic in detail.topics:
        items.append(
            f"<li><b>topic</b> {esc(topic.get('category'))}/{esc(topic.get('subtopic'))} "
            f"({esc(topic.get('difficulty'))}): {esc(topic.get('description'))}</li>"
        )
    for flaw in detail.flaws:
        items.append(
            f"<li><b>flaw</b> {esc(flaw.get('name'))} ({esc(flaw.get('role'))}, "
            f"frequency {esc(flaw.get('frequency'))})</li>"
        )
    if detail.error:
        items.append(f"<li><b>error</b> {esc(detail.error)}</li>")
    return f"<section id='scenario'><h2>Scenario</h2><ul>{''.join(items)}</ul></section>"


def _chat(detail: ConversationDetail) -> str:
    turns = []
    for message in detail.messages:
        figures = [
            f"exchange {message.exchange}",
            f"{message.prompt_tokens or 0:,} in / {message.completion_tokens or 0:,} out tokens",
        ]
        if message.latency_ms is not None:
            figures.append(f"{message.latency_ms:,.0f} ms")
        if message.cost_usd is not None:
            figures.append(f"${message.cost_usd:.5f}")
        if message.model:
            figures.append(esc(message.model))
        if message.finish_reason in ("length", "max_tokens"):
            figures.append("cut by the token budget")
        speaker = "user simulator" if message.role == "user" else "assistant"
        turns.append(
            f"<div class='turn {esc(message.role)}'><div class='who'>{speaker}</div>"
            f"<div class='text'>{esc(message.content)}</div>"
            f"<div class='figures'>{' · '.join(figures)}</div></div>"
        )
    return f"<section id='chat'><h2>Transcript</h2>{''.join(turns)}</section>"


def _side_parts(side: SideJudging, prefix: str = "") -> list[str]:
    """One side's judgement: the pass rule's verdict, each judge's assessment, the verdicts
    (each criterion's question on hover) and the criteria a judge could not answer; `prefix`
    tells the two sides' element ids apart."""
    verdict = {True: "passed", False: "failed", None: "not judged"}[side.passed]
    score = "" if side.mean_score is None else f"mean score {side.mean_score:.3f} · "
    why = ""
    if side.passed is False:
        reason = reasons.failure_reason(side.pass_rule, side.assessments, side.mean_score)
        why = f"<span class='reason'>{esc(reason)}</span>"
    parts = [
        f"<p id='{prefix}judgement'>{score}<b class='{verdict}'>{verdict}</b> (pass rule){why}</p>"
    ]
    for assessment in side.assessments:
        categories = ", ".join(f"{k} {v:.2f}" for k, v in assessment.category_scores.items())
        gates = ", ".join(assessment.failed_gates) or "none"
        parts.append(
            f"<p><b>{esc(assessment.judge_id)}</b>: score {assessment.score:.3f} "
            f"(threshold {assessment.pass_threshold:g}), "
            f"{'passed' if assessment.passed else 'failed'}; failed gates: {esc(gates)}; "
            f"{esc(categories)}</p>"
        )
    questions = {criterion.id: criterion.question for criterion in side.criteria}
    rows = "".join(
        f"<tr><td title='{esc(questions.get(v.criterion_id, ''))}'>{esc(v.criterion_id)}</td>"
        f"<td>{esc(v.judge_id)}</td><td class='answer {esc(v.answer)}'>{esc(v.answer)}</td>"
        f"<td>{esc(v.reasoning)}</td></tr>"
        for v in side.verdicts
    )
    parts.append(
        f"<table id='{prefix}verdicts'><thead><tr><th>criterion</th><th>judge</th><th>answer</th>"
        f"<th>reasoning</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    for failure in side.failures:
        parts.append(
            f"<p class='failure'>{esc(failure.judge_id)} could not answer "
            f"{esc(failure.criterion_id)}: {esc(failure.error)}</p>"
        )
    return parts


def _judging(detail: ConversationDetail) -> str:
    if not detail.assessments and not detail.verdicts:
        return "<section id='judging'><h2>Judges</h2><p>not judged yet</p></section>"
    # Folded until opened: a person reviewing first, unswayed by the judges, is what the
    # judge-vs-people agreement measures.
    assistant = SideJudging(
        detail.assessments, detail.verdicts, detail.failures, detail.mean_score,
        detail.passed, detail.criteria, detail.pass_rule,
    )  # fmt: skip
    return (
        "<details id='judging'><summary><h2>Judges</h2> (open after your own review: "
        f"seeing their verdicts first sways it)</summary>{''.join(_side_parts(assistant))}"
        "</details>"
    )


def _user_judging(detail: ConversationDetail) -> str:
    """The simulated user's side (simulator_rubric.yaml), beside the assistant's: was this the
    user the plan asked for?"""
    side = detail.user_side
    if side is None:
        return ""
    if not side.assessments and not side.verdicts:
        return (
            "<section id='user-judging'><h2>Judges: user side</h2><p>not judged yet</p></section>"
        )
    return (
        "<details id='user-judging'><summary><h2>Judges: user side</h2> (the simulated "
        f"user against its plan)</summary>{''.join(_side_parts(side, 'user-'))}</details>"
    )


def error_body(status: int, message: str) -> str:
    return f"<h1>{status}</h1><p class='error'>{esc(message)}</p>"


def eval_list_body(runs: Table, rounds: Table) -> str:
    none_yet = (
        "<p id='no-eval'>No evaluation yet. Make one by playing held-out scenarios with a "
        "baseline and a candidate assistant and judging both, e.g. <code>rapport eval --db "
        "PATH --scenarios 50 --baseline simulated --candidate gguf:model.gguf --judges "
        "simulated --out eval-report</code>; it shows here once stored.</p>"
        if not runs.rows
        else ""
    )
    no_rounds = (
        "<p id='no-iterations'>No iteration yet: <code>rapport iterate --domain DOMAIN "
        "--count 20 --db PATH</code> generates and judges a round and stores its figures.</p>"
        if not rounds.rows
        else ""
    )
    return (
        "<h1>Evaluations and iterations</h1>"
        + none_yet
        + table(runs, links={"eval_id": "/eval/"})
        + no_rounds
        + table(rounds)
    )


def _score(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def eval_body(eval_id: str, pairs: Sequence[EvalPair]) -> str:
    rows = []
    for pair in pairs:

        def side(cid: str | None) -> str:
            return f"<a href='/c/{esc(cid)}'>{esc(cid)}</a>" if cid else "—"

        delta = (
            f"{pair.candidate_score - pair.baseline_score:+.3f}"
            if pair.candidate_score is not None and pair.baseline_score is not None
            else ""
        )
        parted = "same replies" if pair.parted_at is None else f"exchange {pair.parted_at}"
        rows.append(
            f"<tr class='pair'><td>{pair.scenario_index}</td><td>{esc(pair.scenario_id)}</td>"
            f"<td>{side(pair.baseline_id)}</td><td>{_score(pair.baseline_score)}</td>"
            f"<td>{esc(pair.baseline_passes)}</td>"
            f"<td>{side(pair.candidate_id)}</td><td>{_score(pair.candidate_score)}</td>"
            f"<td>{esc(pair.candidate_passes)}</td><td>{delta}</td><td>{parted}</td></tr>"
        )
    return (
        f"<h1>Evaluation {esc(eval_id)}</h1><table id='pairs'><thead><tr><th>#</th>"
        "<th>held-out scenario</th><th>baseline</th><th>score</th><th>judges passing</th>"
        "<th>candidate</th><th>score</th><th>judges passing</th><th>difference</th>"
        f"<th>replies part at</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
