"""The Dockerfile's image, built and run to /readyz (bench/image.py does the work).

Building takes minutes, so `make test` leaves it to `make image-check`: this test runs only with
TB_IMAGE_CHECK=1 and a reachable Docker engine."""

from __future__ import annotations

import os

import pytest

from bench import image

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checked() -> dict:
    if os.environ.get("TB_IMAGE_CHECK") != "1":
        pytest.skip("builds an image for minutes: run with TB_IMAGE_CHECK=1 (make image-check)")
    reason = image.unavailable()
    if reason and os.environ.get("CI") == "true":
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)
    return image.check(os.environ.get("BASE_IMAGE"))


def test_image_is_installed_from_a_wheel_not_in_editable_mode(checked):
    assert checked["install"]["in_site_packages"] and not checked["install"]["editable"], checked["install"]


def test_image_runs_as_a_non_root_user_with_a_readyz_healthcheck_and_a_data_volume(checked):
    assert checked["embedded"]["uid"] not in ("", "0")
    assert checked["image"]["healthcheck_on_readyz"]
    assert "/data" in checked["image"]["volumes"] and checked["embedded"]["engine_files_in_data_volume"]


def test_container_becomes_ready_and_healthy_embedded_and_on_a_separate_engine(checked):
    assert checked["embedded"]["readyz_seconds"] <= checked["embedded"]["healthy_seconds"]
    assert checked["remote"]["readyz_seconds"] and checked["remote"]["engine_healthcheck_ok"]


def test_containers_stop_cleanly_on_sigterm(checked):
    assert checked["failed"] == [], checked["failed"]
