"""`topicbridge engine` lives in lite_engine/cli.py; the console script's subcommand delegates."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lite_engine.cli import main
from tests.lite_engine.engine_process import ROOT


def test_engine_settings_must_be_positive_numbers():
    with pytest.raises(SystemExit) as exited:
        main(["--session-timeout", "0"])
    assert exited.value.code == 2


def test_the_gateway_command_hands_engine_arguments_to_the_engine_cli():
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "engine", "--max-attempts", "x"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "topicbridge engine: error: argument --max-attempts: invalid int value: 'x'" in done.stderr
