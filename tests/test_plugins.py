"""``HERALD_JOB_MODULES``: plugin modules register kinds; a bad one stops the start in one line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from app.jobs.plugins import EXIT_STATUS, JobModulesError, load_job_modules
from app.jobs.registry import KindCollision, get_kind, job_kind


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_module_s_kinds_are_registered_and_reported(module_dir: Path):
    (module_dir / "plugin_tests_ok.py").write_text(
        "from app.jobs.registry import job_kind\n\n"
        "@job_kind('plugin_tests_echo', schema={'properties': {'text': {'type': 'string', 'default': 'hi'}}})\n"
        "def echo(ctx, params):\n    '''Says it back.'''\n    return params['text']\n"
    )
    assert load_job_modules(["plugin_tests_ok"]) == ["plugin_tests_echo"]
    kind = get_kind("plugin_tests_echo")
    assert kind.validate({}) == {"text": "hi"}
    assert kind.description == "Says it back."
    assert load_job_modules(["plugin_tests_ok"]) == []  # imported once per process


def test_a_module_without_kinds_starts_with_a_warning(module_dir: Path, caplog: pytest.LogCaptureFixture):
    (module_dir / "plugin_tests_empty.py").write_text("HELPER = 1\n")
    assert load_job_modules(["plugin_tests_empty"]) == []
    assert "'plugin_tests_empty' registers no job kind" in caplog.text


def test_the_setting_names_no_module_by_default(app):
    assert app.config["HERALD_JOB_MODULES"] == []


def test_a_missing_module_stops_with_one_line_naming_it(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(JobModulesError) as refused:
        load_job_modules(["plugin_tests_nowhere.jobs"])
    line = "HERALD_JOB_MODULES: cannot import 'plugin_tests_nowhere.jobs': No module named 'plugin_tests_nowhere'"
    assert str(refused.value) == line
    assert refused.value.code == EXIT_STATUS
    assert capsys.readouterr().err == line + "\n"


def test_a_module_that_raises_is_named_with_the_error(module_dir: Path, capsys: pytest.CaptureFixture[str]):
    (module_dir / "plugin_tests_raises.py").write_text("raise RuntimeError('needs FOO_URL\\nsecond line')\n")
    with pytest.raises(JobModulesError) as refused:
        load_job_modules(["plugin_tests_raises"])
    assert str(refused.value) == "HERALD_JOB_MODULES: cannot import 'plugin_tests_raises': RuntimeError: needs FOO_URL"
    assert "plugin_tests_raises" not in sys.modules


def test_a_kind_named_like_a_built_in_is_refused(app, module_dir: Path, capsys: pytest.CaptureFixture[str]):
    (module_dir / "plugin_tests_clash.py").write_text(
        "from app.jobs.registry import job_kind\n\n"
        "@job_kind('data_import', schema={'properties': {}})\n"
        "def mine(ctx, params):\n    return None\n"
    )
    with pytest.raises(JobModulesError) as refused:
        load_job_modules(["plugin_tests_clash"])
    assert str(refused.value) == (
        "HERALD_JOB_MODULES: 'plugin_tests_clash' registers job kind 'data_import', a built-in kind; rename it"
    )
    assert get_kind("data_import").run.__module__ == "app.jobs.kinds.data_import"


def test_the_registry_refuses_a_second_function_under_a_taken_name(app):
    with pytest.raises(KindCollision, match="'simulate' is already registered by app.jobs.kinds.simulate.simulate"):

        @job_kind("simulate", schema={"properties": {}})
        def simulate(ctx, params):  # noqa: ARG001
            return None
