"""Projection plugins: loading through the ``hubnode.projections`` entry points, and the
worked example in ``examples/`` with its own tests — all without installing anything."""

from __future__ import annotations

import importlib.util
import inspect
import json
import tomllib
from collections.abc import Callable
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import hubnode.projections as projections
from hubnode.cli import app
from hubnode.projections import (
    BUILTIN,
    ENTRY_POINT_GROUP,
    ProjectionError,
    ProjectionRunner,
    installed_projections,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hubnode-endorsements"


def declared_entry_points() -> list[EntryPoint]:
    """The entry points the example's pyproject.toml declares, as pip would install them."""
    meta = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    group = meta["project"]["entry-points"][ENTRY_POINT_GROUP]
    return [EntryPoint(name, value, ENTRY_POINT_GROUP) for name, value in group.items()]


def installed(monkeypatch: pytest.MonkeyPatch, *eps: EntryPoint) -> None:
    """Make ``installed_projections`` see ``eps`` as the installed plugins."""

    def entry_points(*, group: str) -> list[EntryPoint]:
        assert group == ENTRY_POINT_GROUP
        return list(eps)

    monkeypatch.setattr(projections, "entry_points", entry_points)


@pytest.fixture
def example_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))


def test_the_example_plugin_loads_from_its_declared_entry_point(
    monkeypatch: pytest.MonkeyPatch, example_on_path: None
) -> None:
    installed(monkeypatch, *declared_entry_points())
    found = installed_projections()
    assert found[: len(BUILTIN)] == list(BUILTIN)
    (plugin,) = found[len(BUILTIN) :]
    assert plugin.name == "endorsements" and plugin.__module__ == "hubnode_endorsements"
    plugin.check()


def test_projections_list_shows_an_installed_plugin(
    monkeypatch: pytest.MonkeyPatch, example_on_path: None
) -> None:
    installed(monkeypatch, *declared_entry_points())
    result = CliRunner().invoke(app, ["projections", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["endorsements"]["source"] == "plugin hubnode_endorsements"
    assert rows["endorsements"]["kinds"] == ["hub.admitted"]


def test_a_plugin_that_fails_to_import_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    installed(monkeypatch, EntryPoint("ghost", "no_such_plugin_module:Ghost", ENTRY_POINT_GROUP))
    with pytest.raises(ProjectionError) as caught:
        installed_projections()
    assert str(caught.value).startswith(
        "projection plugin 'ghost' (no_such_plugin_module:Ghost) failed to load: "
        "No module named 'no_such_plugin_module'"
    )


def test_a_plugin_that_is_not_a_projection_class_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    installed(monkeypatch, EntryPoint("dumps", "json:dumps", ENTRY_POINT_GROUP))
    with pytest.raises(
        ProjectionError, match=r"'dumps' \(json:dumps\) is not a hubnode Projection"
    ):
        installed_projections()


def test_a_plugin_named_like_a_builtin_is_refused_by_the_runner(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    installed(
        monkeypatch,
        EntryPoint("network", "hubnode.projections:NetworkProjection", ENTRY_POINT_GROUP),
    )
    with pytest.raises(ProjectionError, match="two projections are named network"):
        ProjectionRunner(tmp_path / "log", tmp_path / "views", installed_projections())


def example_tests() -> list[tuple[str, Callable[[], Any]]]:
    path = EXAMPLE / "tests" / "test_endorsements.py"
    spec = importlib.util.spec_from_file_location("example_test_endorsements", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [(n, f) for n, f in vars(module).items() if n.startswith("test_") and callable(f)]


def test_the_example_plugins_own_tests_pass(example_on_path: None) -> None:
    tests = example_tests()
    assert len(tests) >= 3
    for name, test in tests:
        assert not inspect.signature(test).parameters, f"{name} must need no fixtures"
        test()
