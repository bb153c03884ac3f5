"""The Ray Serve autoscaling delays come from the environment when set, checked."""

from __future__ import annotations

import pytest

from mlcd.errors import UsageError
from mlcd.serve.ray_engine import DOWNSCALE_DELAY_ENV, LOOK_BACK_ENV, UPSCALE_DELAY_ENV, Scaling


def test_autoscaling_delays_default_and_follow_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(UPSCALE_DELAY_ENV, raising=False)
    monkeypatch.delenv(DOWNSCALE_DELAY_ENV, raising=False)
    monkeypatch.delenv(LOOK_BACK_ENV, raising=False)
    auto = Scaling.parse(None, "1:3").options()["autoscaling_config"]
    assert (auto["upscale_delay_s"], auto["downscale_delay_s"]) == (10.0, 60.0)
    assert auto["look_back_period_s"] == 30.0
    monkeypatch.setenv(UPSCALE_DELAY_ENV, "2")
    monkeypatch.setenv(DOWNSCALE_DELAY_ENV, " 7.5 ")
    monkeypatch.setenv(LOOK_BACK_ENV, "4")
    auto = Scaling.parse(None, "1:3").options()["autoscaling_config"]
    assert (auto["upscale_delay_s"], auto["downscale_delay_s"]) == (2.0, 7.5)
    assert auto["look_back_period_s"] == 4.0
    # a fixed count does not read them (nothing to scale)
    monkeypatch.setenv(DOWNSCALE_DELAY_ENV, "soon")
    assert Scaling.parse(2, None).options() == {"num_replicas": 2}


@pytest.mark.parametrize("raw", ["soon", "-1", "inf", "nan"])
def test_a_delay_that_is_not_seconds_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv(DOWNSCALE_DELAY_ENV, raw)
    with pytest.raises(UsageError) as caught:
        Scaling.parse(None, "1:2")
    assert caught.value.message == f"{DOWNSCALE_DELAY_ENV}={raw!r} is not a number of seconds"
    assert "unset it for 60" in (caught.value.hint or "")


def test_a_look_back_of_zero_seconds_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOOK_BACK_ENV, "0")
    with pytest.raises(UsageError) as caught:
        Scaling.parse(None, "1:2")
    assert caught.value.message == f"{LOOK_BACK_ENV}='0' is not a number of seconds"
    assert "> 0" in (caught.value.hint or "") and "unset it for 30" in (caught.value.hint or "")
