"""One settings path: the shell, then tagqa.env, then the defaults in code, for ``tagqa`` and ``dagster`` alike.

The command-line tests run the real tools in a scratch folder whose ``tagqa.env`` says
something else than the shell, with none of the test session's settings inherited.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from conftest import REPO
from tagqa_assets.resources import build_resources, resolve_resources
from tagqa_assets.settings import (
    DEFAULT_SOURCE,
    DEFAULTS,
    ENVIRONMENT_SOURCE,
    SETTINGS_FILE,
    load_settings,
    migrate_dotenv,
    specs,
    template,
)

TOOLS = Path(sys.executable).parent


def _bare_environment(**settings: str) -> dict[str, str]:
    """This process's environment without any tagqa setting (nor the session's settings file), plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAGQA_", "LABEL_STUDIO_"))}
    return {**env, **settings}


def test_precedence_is_shell_then_settings_file_then_default(tmp_path: Path) -> None:
    (tmp_path / SETTINGS_FILE).write_text("TAGQA_STORE=from-file\nTAGQA_DEPLOY_TIMEOUT_SECONDS=30\nTAGQA_GATE_THRESHOLD=0.25\n")
    environ = {"TAGQA_STORE": "from-shell", "TAGQA_DEPLOY_TARGET": ""}
    settings = load_settings(environ, tmp_path)
    assert settings.store == "from-shell" and settings.source("store") == ENVIRONMENT_SOURCE
    assert settings.deploy_timeout_seconds == 30 and settings.source("deploy_timeout_seconds") == str(tmp_path / SETTINGS_FILE)
    assert settings.gate_threshold == 0.25
    # An empty value counts as not set.
    assert settings.deploy_target == "local" and settings.source("deploy_target") == DEFAULT_SOURCE
    # File values the shell lacks are exported (dg.EnvVar resolves them in this process and its children).
    assert environ["TAGQA_DEPLOY_TIMEOUT_SECONDS"] == "30" and environ["TAGQA_STORE"] == "from-shell"
    # A reload (here, or in a child that inherited the environment) still knows which values came
    # from the file, and forgets a line removed from it.
    (tmp_path / SETTINGS_FILE).write_text("TAGQA_GATE_THRESHOLD=0.3\n")
    reloaded = load_settings(dict(environ), tmp_path)
    assert reloaded.deploy_timeout_seconds == 600 and reloaded.source("deploy_timeout_seconds") == DEFAULT_SOURCE
    assert reloaded.gate_threshold == 0.3 and reloaded.source("gate_threshold") == str(tmp_path / SETTINGS_FILE)
    assert reloaded.store == "from-shell"


def test_no_settings_at_all_is_the_embedded_default(tmp_path: Path) -> None:
    settings = load_settings({}, tmp_path)
    assert settings == DEFAULTS and settings.settings_file is None
    assert (settings.store, settings.labeling_backend, settings.training_backend, settings.deploy_target) == (
        ".tagqa/store", "inbox", "local", "local")


def test_bad_values_and_unknown_names_fail_naming_setting_and_source(tmp_path: Path) -> None:
    # Cases: a shell value that is no number; a file value that is no boolean; a typo in the file; a missing named file.
    with pytest.raises(ValueError, match=r"TAGQA_DEPLOY_TIMEOUT_SECONDS='ten' \(environment\) is not a valid int"):
        load_settings({"TAGQA_DEPLOY_TIMEOUT_SECONDS": "ten"}, tmp_path)
    (tmp_path / SETTINGS_FILE).write_text("TAGQA_APPROVE_WITHOUT_CHAMPION=maybe\n")
    with pytest.raises(ValueError, match=re.escape(f"({tmp_path / SETTINGS_FILE}) is not a valid bool")):
        load_settings({}, tmp_path)
    (tmp_path / SETTINGS_FILE).write_text("TAGQA_STOR=/data\n")
    with pytest.raises(ValueError, match="TAGQA_STOR is not a tagqa setting \\(did you mean TAGQA_STORE\\?\\)"):
        load_settings({}, tmp_path)
    with pytest.raises(ValueError, match="TAGQA_SETTINGS_FILE='nope.env': no such file"):
        load_settings({"TAGQA_SETTINGS_FILE": "nope.env"}, tmp_path)


def test_resources_wire_envvar_only_for_what_the_user_set(tmp_path: Path) -> None:
    settings = load_settings({"TAGQA_STORE": "s3://bucket/prefix", "TAGQA_DEPLOY_TIMEOUT_SECONDS": "30"}, tmp_path)
    resources = build_resources(settings)
    assert isinstance(resources["store"].root, dg.EnvVar) and resources["store"].root.env_var_name == "TAGQA_STORE"
    assert resources["deployment"].timeout_seconds.env_var_name == "TAGQA_DEPLOY_TIMEOUT_SECONDS"
    assert resources["store"].s3_endpoint_url == "" and resources["deployment"].target == "local"
    assert resources["promotion_policy"].gate_threshold == "0.4"  # floats reach the resource as text


def test_resource_classes_declare_the_defaults_of_settings_py() -> None:
    """A resource built directly (in tests) behaves like the code location's default one."""
    # By design: a LabelingResource built without a token has none (settings.py's token is make labelstudio's).
    intended = {("labeling", "label_studio_api_token")}
    for key, resource in build_resources(DEFAULTS).items():
        for name, field in type(resource).model_fields.items():
            wired = getattr(resource, name)
            if isinstance(wired, dg.ConfigurableResource) or (key, name) in intended:
                continue
            declared = field.default
            if isinstance(declared, str) and re.fullmatch(r"\d+\.\d+", declared):
                declared, wired = float(declared), float(wired)
            assert declared == wired, f"{type(resource).__name__}.{name} defaults to {declared!r}, settings.py to {wired!r}"


def test_settings_are_read_in_settings_py_only() -> None:
    """No module reads a tagqa setting from the environment itself (they used to, with other defaults)."""
    reads = re.compile(r"""(os\.environ(\.get)?|os\.getenv|\benv(\.get)?)\s*[\[(]\s*["'](TAGQA_|LABEL_STUDIO_)""")
    offenders = [f"{path.relative_to(REPO)}:{number}" for path in sorted((REPO / "tagqa_assets").rglob("*.py"))
                 if path.name != "settings.py"
                 for number, line in enumerate(path.read_text().splitlines(), 1) if reads.search(line)]
    assert not offenders, f"read through tagqa_assets.settings instead: {offenders}"


def test_template_documents_every_setting_and_sets_none() -> None:
    text = template()
    assert all(not line.strip() or line.startswith("#") for line in text.splitlines()), "the template must hold no values"
    for spec in specs():
        assert f"#{spec.name}=\n" in text and spec.doc in text
    assert len({spec.name for spec in specs()}) == len(list(specs()))


def test_settings_init_moves_an_old_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("# Settings of the tagqa code location\nTAGQA_STORE=.tagqa/store\n"
                                   "TAGQA_GATE_THRESHOLD=0.2\nTAGQA_CHAMPION_MARGIN=0.010\nYOLO_OFFLINE=1\nMY_OWN=keep\n")
    report = migrate_dotenv(tmp_path)
    assert "moved TAGQA_GATE_THRESHOLD" in report[0]
    # 0.010 is the default 0.01 written another way: dropped like every default, not moved.
    assert not any("TAGQA_CHAMPION_MARGIN" in line for line in report)
    settings = load_settings({}, tmp_path)
    assert settings.gate_threshold == 0.2 and settings.source("store") == DEFAULT_SOURCE
    assert (tmp_path / ".env").read_text() == "MY_OWN=keep\n" and (tmp_path / ".env.tagqa-backup").is_file()


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{(done.stdout + done.stderr)[-3000:]}"
    return done


def _raw_images(store: Path) -> int:
    return sum(1 for path in (store / "raw").rglob("*.jpg"))


@pytest.mark.slow  # seconds of waiting: in make test, not the quick tier
def test_the_same_shell_override_reaches_the_store_for_tagqa_and_dagster(tmp_path: Path) -> None:
    (tmp_path / SETTINGS_FILE).write_text(f"TAGQA_STORE={tmp_path / 'file-store'}\n")
    shell_store = tmp_path / "shell-store"
    env = _bare_environment(TAGQA_STORE=str(shell_store), DAGSTER_HOME=str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()

    _run([str(TOOLS / "tagqa"), "demo", "--count", "3", "--no-labels"], tmp_path, env)
    materialized = _run([str(TOOLS / "dagster"), "asset", "materialize", "-m", "tagqa_assets.definitions",
                         "--select", "raw_images"], tmp_path, env)

    assert _raw_images(shell_store) == 3 and not (tmp_path / "file-store").exists()
    log = materialized.stdout + materialized.stderr
    assert f"tagqa store: {shell_store}" in log, log[-3000:]
    assert "ingesting 3 key(s)" in log
    # Without the shell's value both tools use the settings file's.
    del env["TAGQA_STORE"]
    _run([str(TOOLS / "tagqa"), "demo", "--count", "2", "--no-labels"], tmp_path, env)
    assert _raw_images(tmp_path / "file-store") == 2


@pytest.mark.slow
def test_the_code_location_loads_and_runs_with_no_settings_at_all(tmp_path: Path) -> None:
    env = _bare_environment(DAGSTER_HOME=str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    materialized = _run([str(TOOLS / "dagster"), "asset", "materialize", "-m", "tagqa_assets.definitions",
                         "--select", "raw_images"], tmp_path, env)
    assert f"tagqa store: {tmp_path / '.tagqa' / 'store'}" in materialized.stdout + materialized.stderr
    assert "ingesting 0 key(s)" in materialized.stdout + materialized.stderr


@pytest.mark.slow
def test_the_code_location_loads_with_only_an_s3_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _bare_environment(TAGQA_STORE="s3://tagqa-bucket/prefix")
    _run([str(TOOLS / "dagster"), "definitions", "validate", "-m", "tagqa_assets.definitions"], tmp_path, env)
    # Every resource resolves as a run would resolve it: nothing else is required.
    for key in [k for k in os.environ if k.startswith(("TAGQA_", "LABEL_STUDIO_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("TAGQA_STORE", "s3://tagqa-bucket/prefix")
    monkeypatch.chdir(tmp_path)
    resources = resolve_resources()
    assert resources.store.root == "s3://tagqa-bucket/prefix" and resources.deployment.target == "local"
    with dg.build_resources(build_resources(load_settings())) as built:
        assert built.store.root == "s3://tagqa-bucket/prefix"


def test_nothing_the_project_writes_is_a_dotenv() -> None:
    """Dagster's CLI loads ./.env over the shell: the project must never create one."""
    makefile = (REPO / "Makefile").read_text()
    writes = re.findall(r"^\.env\s*:|(?:cp|>|mv)\s+\S*\s*\.env\s*$", makefile, re.MULTILINE)
    assert not writes, f"the Makefile writes .env: {writes}"
    assert not (REPO / ".env.example").exists(), "a .env template invites copying it to .env"


def test_settings_commands_show_sources_and_init_writes_the_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture) -> None:
    from tagqa_assets.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TAGQA_SETTINGS_FILE")
    # What load_settings exports from the file into os.environ: undone after the test.
    for name in ("TAGQA_DEPLOY_TARGET", "LABEL_STUDIO_API_TOKEN", "TAGQA_SETTINGS_EXPORTED"):
        monkeypatch.setenv(name, "")
    assert main(["settings", "init"]) == 0
    assert (tmp_path / SETTINGS_FILE).read_text() == template()
    with (tmp_path / SETTINGS_FILE).open("a") as out:
        out.write("TAGQA_DEPLOY_TARGET=greengrass\nLABEL_STUDIO_API_TOKEN=secret-token\n")
    monkeypatch.setenv("TAGQA_DEVICE_ID", "line-7")
    capsys.readouterr()
    assert main(["settings"]) == 0
    shown = capsys.readouterr().out
    assert f"TAGQA_DEPLOY_TARGET='greengrass'  [{tmp_path / SETTINGS_FILE}]" in shown
    assert "TAGQA_DEVICE_ID='line-7'  [environment]" in shown
    assert "LABEL_STUDIO_API_TOKEN=(set)" in shown and "secret-token" not in shown
    assert main(["settings", "shell", "TAGQA_DEPLOY_TARGET", "TAGQA_STORE"]) == 0
    assert capsys.readouterr().out == "export TAGQA_DEPLOY_TARGET=greengrass\nexport TAGQA_STORE=" + os.environ["TAGQA_STORE"] + "\n"
