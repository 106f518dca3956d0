"""State directories: created for their owner only, or refused with what to do."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from corolla.core import ConfigError
from corolla.runtime import Link, Node, NodeStatus
from corolla.runtime._state_dir import prepare_state_dir
from corolla.state import StateInUseError


def test_a_missing_directory_is_created_for_its_owner_only(tmp_path: Path) -> None:
    made = prepare_state_dir(tmp_path / "a" / "b")

    assert made.is_dir()
    assert stat.S_IMODE(made.stat().st_mode) == 0o700


def test_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("not a directory")

    with pytest.raises(ConfigError, match="is a file; give a directory"):
        prepare_state_dir(tmp_path / "state")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_a_directory_that_cannot_be_created_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)

    with pytest.raises(ConfigError, match="cannot be created"):
        prepare_state_dir(locked / "state")


def test_a_directory_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")

    with pytest.raises(ConfigError, match="cannot be created: Not a directory"):
        prepare_state_dir(tmp_path / "file" / "state")


def test_a_link_given_a_file_as_its_state_does_not_start(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("")
    link = Link(tmp_path / "state", fleet_address="127.0.0.1:0", control_address="127.0.0.1:0")

    with pytest.raises(ConfigError, match=r"--state .* is a file"):
        link.start()


def test_a_second_link_on_the_state_of_a_running_one_is_refused(link: Link) -> None:
    second = Link(link.state_dir, fleet_address="127.0.0.1:0", control_address="127.0.0.1:0")

    with pytest.raises(StateInUseError, match=r"is in use by another process \(pid \d+\)"):
        second.start()

    assert link.state.list_runs() == []  # the first one serves on


def test_a_second_node_on_the_state_of_a_running_one_is_refused(link: Link, tmp_path: Path) -> None:
    with Node(link.fleet_address, tmp_path / "node"):
        second = Node(link.fleet_address, tmp_path / "node")

        with pytest.raises(StateInUseError, match="stop it first"):
            second.start()


def test_a_stopped_node_s_state_can_be_used_again(link: Link, tmp_path: Path) -> None:
    with Node(link.fleet_address, tmp_path / "node"):
        pass

    with Node(link.fleet_address, tmp_path / "node") as again:
        assert again.status is not NodeStatus.STOPPED
