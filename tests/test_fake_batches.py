"""The fake provider's batch APIs through the official SDKs, as the batch judge will use them:
OpenAI files + batches, Anthropic message batches; items fail, expire and cancel as the APIs
report them. A settable clock stands in for the batch delay, so nothing here sleeps."""

from __future__ import annotations

import io
import json

import anthropic
import openai
import pytest
from openai.types.chat import ChatCompletion

from rapport.fakes.provider import FakeProviderSettings, running_fake_provider
from rapport.fakes.provider_process import provider_argv, provider_process

DELAY_S = 60.0
CHAT = "/v1/chat/completions"


class ManualClock:
    """The provider's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _settings(**changes: object) -> FakeProviderSettings:
    return FakeProviderSettings(batch_delay_s=DELAY_S, **changes)  # type: ignore[arg-type]


def _openai(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="sk-batch", max_retries=0)


def _anthropic(base_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=base_url.removesuffix("/v1"), api_key="sk-ant-batch", max_retries=0
    )


def _jsonl(custom_ids: list[str]) -> bytes:
    lines = [
        {
            "custom_id": custom_id,
            "method": "POST",
            "url": CHAT,
            "body": {
                "model": "gpt-4o-mini",
                "max_tokens": 20,
                "messages": [{"role": "user", "content": f"judge {custom_id}"}],
            },
        }
        for custom_id in custom_ids
    ]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def _submit(client: openai.OpenAI, custom_ids: list[str]) -> openai.types.Batch:
    upload = client.files.create(
        file=("judge.jsonl", io.BytesIO(_jsonl(custom_ids))), purpose="batch"
    )
    assert upload.purpose == "batch" and upload.bytes == len(_jsonl(custom_ids))
    assert client.files.retrieve(upload.id).filename == "judge.jsonl"
    return client.batches.create(
        input_file_id=upload.id,
        endpoint=CHAT,
        completion_window="24h",
        metadata={"run": "r1"},
    )


def _lines(client: openai.OpenAI, file_id: str | None) -> list[dict]:
    assert file_id is not None
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def _anthropic_requests(custom_ids: list[str]) -> list[dict]:
    return [
        {
            "custom_id": custom_id,
            "params": {
                "model": "claude-sonnet-4",
                "max_tokens": 20,
                "messages": [{"role": "user", "content": f"judge {custom_id}"}],
            },
        }
        for custom_id in custom_ids
    ]


def test_openai_batch_goes_from_validating_to_completed_with_every_reply():
    clock = ManualClock()
    with running_fake_provider(_settings(), clock=clock) as (base_url, state):
        client = _openai(base_url)
        batch = _submit(client, ["a", "b", "c"])
        assert batch.status == "validating"
        assert batch.metadata == {"run": "r1"}
        assert client.batches.retrieve(batch.id).status == "in_progress"
        clock.now += DELAY_S * 0.95
        assert client.batches.retrieve(batch.id).status == "finalizing"
        clock.now += DELAY_S
        done = client.batches.retrieve(batch.id)
        assert done.status == "completed"
        assert done.completed_at is not None and done.error_file_id is None
        assert done.request_counts is not None
        assert (done.request_counts.total, done.request_counts.completed) == (3, 3)
        assert done.request_counts.failed == 0
        output = client.files.retrieve(done.output_file_id or "")
        assert output.purpose == "batch_output"
        lines = _lines(client, done.output_file_id)
        assert [line["custom_id"] for line in lines] == ["a", "b", "c"]
        for line in lines:
            assert line["error"] is None and line["response"]["status_code"] == 200
            completion = ChatCompletion.model_validate(line["response"]["body"])
            assert completion.choices[0].message.content
            assert completion.usage is not None and completion.usage.completion_tokens == 20
        assert done.usage is not None and done.usage.output_tokens == 60
        assert [b.id for b in client.batches.list()] == [batch.id]
        assert client.files.delete(batch.input_file_id).deleted
        with pytest.raises(openai.NotFoundError):
            client.files.retrieve(batch.input_file_id)
    assert (state.batches_created, state.batch_items) == (1, 3)
    assert state.batch_submissions == {"a": 1, "b": 1, "c": 1}
    assert state.requests == 0  # nothing went through the live endpoint


def test_openai_failed_and_expired_items_land_in_the_error_file_and_can_be_resubmitted():
    clock = ManualClock()
    settings = _settings(batch_fail_first=1, batch_expire_first=1)
    with running_fake_provider(settings, clock=clock) as (base_url, state):
        client = _openai(base_url)
        batch = _submit(client, ["a", "b", "c"])
        clock.now += DELAY_S
        done = client.batches.retrieve(batch.id)
        assert done.status == "expired" and done.expired_at is not None
        assert done.request_counts is not None
        assert (done.request_counts.completed, done.request_counts.failed) == (1, 2)
        assert [line["custom_id"] for line in _lines(client, done.output_file_id)] == ["c"]
        failed, expired = _lines(client, done.error_file_id)
        assert failed["custom_id"] == "a" and failed["error"] is None
        assert failed["response"]["status_code"] == 500
        assert failed["response"]["body"]["error"]["type"] == "server_error"
        assert expired["custom_id"] == "b" and expired["response"] is None
        assert expired["error"]["code"] == "batch_expired"

        again = _submit(client, ["a", "b"])  # the retry batch: fresh fates
        clock.now += DELAY_S
        retried = client.batches.retrieve(again.id)
        assert retried.status == "completed"
        assert [line["custom_id"] for line in _lines(client, retried.output_file_id)] == ["a", "b"]
    assert (state.batches_created, state.batch_items) == (2, 5)
    assert state.batch_submissions == {"a": 2, "b": 2, "c": 1}
    assert (state.batch_items_failed, state.batch_items_expired) == (1, 1)


def test_item_fates_follow_the_seed():
    def failed_ids(seed: int) -> set[str]:
        clock = ManualClock()
        settings = _settings(batch_fail_rate=0.3, batch_expire_rate=0.2, seed=seed)
        with running_fake_provider(settings, clock=clock) as (base_url, _):
            client = _openai(base_url)
            batch = _submit(client, [f"item-{i}" for i in range(40)])
            clock.now += DELAY_S
            done = client.batches.retrieve(batch.id)
            return {line["custom_id"] for line in _lines(client, done.error_file_id)}

    first = failed_ids(7)
    assert first == failed_ids(7)
    assert 0 < len(first) < 40
    assert first != failed_ids(8)


def test_openai_cancel_and_unknown_ids():
    clock = ManualClock()
    with running_fake_provider(_settings(), clock=clock) as (base_url, state):
        client = _openai(base_url)
        batch = _submit(client, ["a", "b"])
        cancelling = client.batches.cancel(batch.id)
        assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
        cancelled = client.batches.retrieve(batch.id)
        assert cancelled.status == "cancelled" and cancelled.cancelled_at is not None
        assert cancelled.output_file_id is None
        with pytest.raises(openai.ConflictError):
            client.batches.cancel(batch.id)
        with pytest.raises(openai.NotFoundError) as missing:
            client.batches.retrieve("batch_unknown")
        assert isinstance(missing.value.body, dict)
        assert missing.value.body["type"] == "invalid_request_error"
        assert "batch_unknown" in missing.value.body["message"]
        with pytest.raises(openai.NotFoundError):
            client.files.content("file-unknown")
        with pytest.raises(openai.BadRequestError):
            client.batches.create(
                input_file_id="file-unknown", endpoint=CHAT, completion_window="24h"
            )
    assert state.batch_items_canceled == 2


def test_openai_batch_with_a_broken_line_fails_with_its_errors():
    with running_fake_provider(_settings()) as (base_url, _):
        client = _openai(base_url)
        content = _jsonl(["a"]) + b"{not json\n" + _jsonl(["a"])
        upload = client.files.create(file=("bad.jsonl", io.BytesIO(content)), purpose="batch")
        batch = client.batches.create(
            input_file_id=upload.id, endpoint=CHAT, completion_window="24h"
        )
        assert batch.status == "failed" and batch.failed_at is not None
        assert batch.errors is not None and batch.errors.data is not None
        codes = [(error.line, error.code) for error in batch.errors.data]
        assert codes == [(2, "invalid_json_line"), (3, "duplicate_custom_id")]


def test_batch_items_do_not_count_against_the_live_limits():
    clock = ManualClock()
    with running_fake_provider(_settings(rpm=1, burst_s=1.0), clock=clock) as (base_url, state):
        client = _openai(base_url)
        batch = _submit(client, [f"item-{i}" for i in range(5)])
        clock.now += DELAY_S
        done = client.batches.retrieve(batch.id)
        assert done.request_counts is not None and done.request_counts.completed == 5
        live = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "live"}]
        )
        assert live.choices[0].message.content
        with pytest.raises(openai.RateLimitError):  # the bucket held exactly one request
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "again"}]
            )
    assert state.completed == 1 and state.rate_limited == 1


def test_anthropic_message_batch_results_as_the_sdk_reads_them():
    clock = ManualClock()
    settings = _settings(batch_fail_first=1, batch_expire_first=1)
    with running_fake_provider(settings, clock=clock) as (base_url, state):
        client = _anthropic(base_url)
        created = client.messages.batches.create(requests=_anthropic_requests(["x", "y", "z"]))
        assert created.processing_status == "in_progress"
        assert created.request_counts.processing == 3 and created.results_url is None
        clock.now += DELAY_S
        ended = client.messages.batches.retrieve(created.id)
        assert ended.processing_status == "ended" and ended.ended_at is not None
        counts = ended.request_counts
        assert (counts.processing, counts.succeeded, counts.errored, counts.expired) == (0, 1, 1, 1)
        assert ended.results_url is not None and ended.results_url.endswith("/results")
        results = {r.custom_id: r.result for r in client.messages.batches.results(created.id)}
        assert results["x"].type == "errored"
        assert results["x"].error.error.type == "api_error"
        assert results["y"].type == "expired"
        succeeded = results["z"]
        assert succeeded.type == "succeeded"
        assert succeeded.message.content[0].type == "text"
        assert succeeded.message.usage.output_tokens == 20
        assert succeeded.message.usage.service_tier == "batch"
        assert [b.id for b in client.messages.batches.list()] == [created.id]
        assert client.messages.batches.delete(created.id).id == created.id
        with pytest.raises(anthropic.NotFoundError):
            client.messages.batches.retrieve(created.id)
    assert state.batch_submissions == {"x": 1, "y": 1, "z": 1}


def test_anthropic_invalid_item_is_errored_like_the_live_api_would_answer():
    clock = ManualClock()
    block = {"type": "text", "text": "judge", "cache_control": {"type": "ephemeral"}}
    params = {
        "model": "claude-sonnet-4",
        "max_tokens": 20,
        "messages": [{"role": "user", "content": [block] * 5}],
    }
    with running_fake_provider(_settings(), clock=clock) as (base_url, _):
        client = _anthropic(base_url)
        created = client.messages.batches.create(
            requests=[{"custom_id": "too-many", "params": params}]  # type: ignore[list-item]
        )
        clock.now += DELAY_S
        (result,) = client.messages.batches.results(created.id)
        assert result.result.type == "errored"
        assert result.result.error.error.type == "invalid_request_error"
        assert "maximum of 4 blocks with cache_control" in result.result.error.error.message


def test_anthropic_cancel_and_unknown_ids():
    clock = ManualClock()
    with running_fake_provider(_settings(), clock=clock) as (base_url, state):
        client = _anthropic(base_url)
        created = client.messages.batches.create(requests=_anthropic_requests(["x", "y"]))
        canceling = client.messages.batches.cancel(created.id)
        assert canceling.processing_status == "canceling"
        assert canceling.cancel_initiated_at is not None
        ended = client.messages.batches.retrieve(created.id)
        assert ended.processing_status == "ended" and ended.request_counts.canceled == 2
        results = list(client.messages.batches.results(created.id))
        assert {r.result.type for r in results} == {"canceled"}
        with pytest.raises(anthropic.NotFoundError) as missing:
            client.messages.batches.retrieve("msgbatch_unknown")
        assert isinstance(missing.value.body, dict)
        assert missing.value.body["error"]["type"] == "not_found_error"
        with pytest.raises(anthropic.BadRequestError):
            client.messages.batches.create(requests=_anthropic_requests(["x", "x"]))
    assert state.batches_created == 1  # the duplicate-id batch was refused


def test_ids_are_never_reused_by_a_restarted_provider():
    ids: list[str] = []
    for _ in range(2):
        with running_fake_provider(_settings()) as (base_url, _):
            client = _openai(base_url)
            batch = _submit(client, ["a"])
            ids += [batch.id, batch.input_file_id]
            ids.append(
                _anthropic(base_url).messages.batches.create(requests=_anthropic_requests(["a"])).id
            )
    assert len(set(ids)) == len(ids) == 6


def test_batch_settings_reach_the_provider_process():
    settings = FakeProviderSettings(
        batch_delay_s=0.0, batch_fail_first=1, prompt_cache=False, cache_ttl_s=5.0
    )
    argv = provider_argv(settings, 1)
    assert "--no-prompt-cache" in argv and "--batch-fail-first" in argv
    with provider_process(settings) as base_url:
        client = _openai(base_url)
        batch = _submit(client, ["a", "b"])
        done = client.batches.retrieve(batch.id)
        assert done.status == "completed"
        assert done.request_counts is not None
        assert (done.request_counts.completed, done.request_counts.failed) == (1, 1)
