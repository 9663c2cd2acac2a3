"""The messages that ask a model for a domain draft, and the one that feeds problems back."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rapport.engine.types import ChatMessage

DRAFT_SECTIONS = {"topics": "topics.yaml", "flaws": "flaws.yaml", "rubric": "rubric.yaml"}

_SYSTEM = (
    "You design domains for Rapport, which simulates conversations between a user simulator "
    "with realistic human flaws and an assistant, judges each conversation against a rubric "
    "and trains a model on the ones that pass. You answer with YAML only."
)

_RULES = """\
Rules:
- Reply with one YAML document with exactly three top-level keys: topics, flaws and rubric.
  Each holds what the file of that name holds, in exactly the format of the example files
  below (their comments explain every field). Replace their content with content for the
  domain described above.
- Weights sum to exactly 1 in each group: topic category weights, difficulty, the flaw
  weights inside each flaw category, and rubric category weights.
- flaws.policy.primary_from and secondary_from name flaw categories you define.
- Every criterion that is not a gate has a category from rubric.categories; a gate (gate:
  true) has no category. Criterion ids are unique.
- Include a topic category edge_cases (situations the assistant must handle with care) and
  at least one safety gate.
- Aim for 4 to 6 topic categories with 3 to 5 subtopics each, 3 or 4 flaw categories with 2
  to 4 flaws each, and 6 to 12 criteria.
- No curly braces anywhere. No text before or after the YAML."""


def first_request(description: str, template: Path) -> list[ChatMessage]:
    """System and user messages: the description, the rules and the example files."""
    examples = "\n\n".join(
        f"--- {filename} ---\n{(template / filename).read_text(encoding='utf-8').strip()}"
        for filename in DRAFT_SECTIONS.values()
    )
    body = f"Domain description:\n{description.strip()}\n\n{_RULES}\n\nExample files:\n\n{examples}"
    return [ChatMessage("system", _SYSTEM), ChatMessage("user", body)]


def feedback(problems: Sequence[str]) -> ChatMessage:
    """The problems of the last draft, asking for the whole corrected document."""
    listed = "\n".join(f"- {problem}" for problem in problems)
    return ChatMessage(
        "user",
        "Your draft has these problems (file: key: problem):\n"
        f"{listed}\n\n"
        "Reply with the whole corrected YAML document (topics, flaws and rubric), nothing else.",
    )
