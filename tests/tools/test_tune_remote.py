"""How `alexandria tune --embed-url` picks a server's settings from its trials (the trials
themselves run against real infinity servers in tests/run/test_remote_ingest.py)."""

from __future__ import annotations

from alexandria.tools.tune_remote import RemoteTrial, choose


def trial(batch: int, concurrency: int, speed: float | None, why: str = "") -> RemoteTrial:
    return RemoteTrial("http://127.0.0.1:1/embeddings", batch, concurrency, speed, why)


def test_of_settings_about_as_fast_the_one_asking_least_of_the_server_wins():
    trials = [trial(64, 8, 1000.0), trial(64, 2, 980.0), trial(64, 4, 990.0), trial(64, 1, 700.0)]
    assert choose(trials) == trial(64, 2, 980.0)


def test_a_clearly_faster_setting_wins_over_a_lighter_one():
    assert choose([trial(64, 8, 1000.0), trial(64, 2, 960.0)]) == trial(64, 8, 1000.0)


def test_among_batch_sizes_about_as_fast_the_smallest_wins():
    trials = [trial(8, 4, 500.0), trial(16, 4, 985.0), trial(32, 4, 1000.0), trial(64, 4, 990.0)]
    assert choose(trials) == trial(16, 4, 985.0)


def test_trials_that_failed_or_were_turned_away_never_win():
    trials = [trial(64, 8, None, "no server answered"),
              trial(64, 4, 2000.0, "the server turned requests away (429 or timeouts)"),
              trial(64, 2, 900.0)]
    assert choose(trials) == trial(64, 2, 900.0)
    assert choose([trial(64, 8, None, "no server answered")]) is None
