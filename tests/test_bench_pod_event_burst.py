"""bench.pod_event_burst: every pod of the burst ends held, and bad sizes are refused by name."""

from __future__ import annotations

import pytest

from bench import pod_event_burst


def test_a_burst_ends_with_every_pod_held() -> None:
    assert pod_event_burst.burst_cpu_s(3, 20) >= 0.0  # raises if a pod is not held


def test_the_line_names_the_rate(capsys: pytest.CaptureFixture[str]) -> None:
    assert pod_event_burst.main(["--nodes", "2", "--pods", "5", "--repeats", "1"]) == 0
    assert "pod events/s" in capsys.readouterr().out


def test_more_pods_than_gpus_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        pod_event_burst.main(["--nodes", "1", "--pods", "9"])
    assert "--pods=9" in capsys.readouterr().err
