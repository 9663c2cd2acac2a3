"""The code behind the README's benchmark figures still runs: `rapport bench provider` serves
both APIs with the limits it was given, and `rapport bench throughput --smoke` runs every case
and writes its JSON and plot. (Smoke sizes: the figures themselves mean nothing here.)"""

from __future__ import annotations

import socket
import subprocess
import time

import anthropic
import matplotlib.image
import msgspec
import openai
import pytest

from rapport.bench.throughput import SMOKE_SETTINGS, TARGETS, ThroughputReport, summary_rows
from rapport.fakes.provider import FakeProviderSettings
from rapport.fakes.provider_process import free_port, provider_argv
from tests.conftest import rapport

pytestmark = pytest.mark.slow

PROVIDER = FakeProviderSettings(rpm=1_234, tpm=98_765, reply_tokens=7)
STARTUP_S = 60.0


def _wait_for_port(process: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + STARTUP_S
    while True:
        assert process.poll() is None, process.communicate()[1]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            assert time.monotonic() < deadline, "bench provider never listened"
            time.sleep(0.05)


def test_bench_provider_serves_both_apis_with_its_flags_until_stopped():
    port = free_port()
    argv = provider_argv(PROVIDER, port)  # every setting as its command-line flag
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_port(process, port)
        root = f"http://127.0.0.1:{port}"
        chat = openai.OpenAI(api_key="k", base_url=f"{root}/v1", max_retries=0)
        raw = chat.chat.completions.with_raw_response.create(
            model="bench-model", messages=[{"role": "user", "content": "hello"}], max_tokens=50
        )
        completion = raw.parse()
        messages = anthropic.Anthropic(api_key="k", base_url=root, max_retries=0)
        raw_message = messages.messages.with_raw_response.create(
            model="bench-claude", messages=[{"role": "user", "content": "hello"}], max_tokens=50
        )
        message = raw_message.parse()
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert completion.choices[0].message.content
    assert completion.usage.completion_tokens == PROVIDER.reply_tokens
    assert raw.headers["x-ratelimit-limit-requests"] == str(PROVIDER.rpm)
    assert raw.headers["x-ratelimit-limit-tokens"] == str(PROVIDER.tpm)
    assert message.content[0].text and message.usage.output_tokens == PROVIDER.reply_tokens
    assert raw_message.headers["anthropic-ratelimit-requests-limit"] == str(PROVIDER.rpm)
    assert f"http://127.0.0.1:{port}/v1" in stderr
    with pytest.raises(OSError):  # stopped: nothing listens any more
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_bench_throughput_smoke_runs_every_case_and_writes_its_figures(tmp_path):
    out = tmp_path / "results"
    result = rapport("bench", "throughput", "--smoke", "--out", str(out))
    assert result.returncode == 0, result.stderr
    report = msgspec.json.decode((out / "throughput.json").read_bytes(), type=ThroughputReport)
    assert report.settings == SMOKE_SETTINGS
    assert report.targets == TARGETS
    rpm, tpm, naive = report.rpm_bound, report.tpm_bound, report.naive
    assert (rpm.limit_rpm, tpm.limit_tpm) == (SMOKE_SETTINGS.rpm, SMOKE_SETTINGS.tpm)
    for case in (rpm, tpm, naive):
        assert case.requests > 0 and sum(case.per_second_requests) > 0
        assert case.requests_per_min > 0 and case.tokens_per_min > 0
        assert case.p50_latency_ms is not None and case.p99_latency_ms >= case.p50_latency_ms
    assert rpm.rpm_fraction == pytest.approx(rpm.requests_per_min / rpm.limit_rpm)
    assert tpm.tpm_fraction == pytest.approx(tpm.tokens_per_min / tpm.limit_tpm)
    assert report.vs_naive == pytest.approx(rpm.requests_per_min / naive.requests_per_min)
    assert report.overhead_turns_per_s > 0 and report.overhead_conversations_per_s > 0
    assert report.skeleton_turns_per_s > 0 and report.simulated_turns_per_s > 0
    assert report.vs_skeleton == pytest.approx(
        report.overhead_turns_per_s / report.skeleton_turns_per_s
    )
    assert report.rss_small_mb > 0 and report.rss_large_mb > 0
    for figure, measured, _ in summary_rows(report):  # the table printed is the JSON's
        assert figure in result.stdout and measured in result.stdout
    height, width, _ = matplotlib.image.imread(out / "throughput.png").shape
    assert height > 100 and width > 100


def test_bench_slots_smoke_measures_throughput_and_queue_wait_from_the_server(tmp_path):
    from rapport.bench.slots import SMOKE_SETTINGS, SlotsReport
    from rapport.bench.slots import TARGETS as SLOT_TARGETS
    from rapport.bench.slots import summary_rows as slots_rows

    out = tmp_path / "results"
    result = rapport("bench", "slots", "--smoke", "--out", str(out))
    assert result.returncode == 0, result.stderr
    report = msgspec.json.decode((out / "slots.json").read_bytes(), type=SlotsReport)
    assert report.settings == SMOKE_SETTINGS and report.targets == SLOT_TARGETS
    assert report.requests > 0 and report.served_per_s > 0
    assert report.capacity_per_s == pytest.approx(
        SMOKE_SETTINGS.slots / (report.mean_service_ms / 1000)
    )
    assert report.capacity_fraction == pytest.approx(report.served_per_s / report.capacity_per_s)
    assert report.queue_wait_share_of_service == pytest.approx(
        report.mean_queue_wait_ms / report.mean_service_ms
    )
    assert report.rate_limited == 0  # it queues, never refuses
    assert report.learned_in_flight is not None and report.learned_in_flight > 1
    for figure, measured, _ in slots_rows(report):  # the table printed is the JSON's
        assert figure in result.stdout and measured in result.stdout
