"""The `hcmrm` command: every job is a subcommand, and every subcommand answers --help."""

import pytest

from jobs.cli import command_modules, make_parser


def test_every_job_module_is_a_subcommand():
    names = [m.COMMAND for m in command_modules()]
    assert "demo" in names
    assert len(names) == len(set(names)), "two job modules claim the same COMMAND"


@pytest.mark.parametrize("command", [m.COMMAND for m in command_modules()])
def test_help_on_every_subcommand(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        make_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: hcmrm {command}" in out and "--lake" in out


def test_unknown_spark_setting_syntax_is_refused():
    from jobs.common import spark_conf_overrides

    assert spark_conf_overrides(["spark.a=1", "spark.b=x=y"]) == {"spark.a": "1", "spark.b": "x=y"}
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        spark_conf_overrides(["spark.a"])
