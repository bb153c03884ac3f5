"""The root command group builds a command only when it is used; its table stays complete."""

from __future__ import annotations

import json
import subprocess
import sys

from mlcd.cli.lazy import COMMANDS

#: Run in a fresh interpreter: registers every module eagerly (as the CLI did before it was
#: lazy) and prints, per root command, the module that added it and what --help shows of it.
_EAGER = """
import importlib, json
from typer._click.utils import make_default_short_help
from mlcd.cli.lazy import build, scratch_app
from mlcd.cli.main import COMMAND_MODULES

app = scratch_app()
owners, extra = {}, []
for module in COMMAND_MODULES:
    before = [c.name for c in app.registered_commands] + [g.name for g in app.registered_groups]
    importlib.import_module(f"mlcd.cli.{module}").register(app)
    after = [c.name for c in app.registered_commands] + [g.name for g in app.registered_groups]
    added = [name for name in after if name not in before]
    for name in added:
        owners[name] = module
    if not added:
        extra.append(module)
import typer
group = typer.main.get_group(app)
rows = []
for name in group.list_commands(None):
    cmd = group.commands[name]
    rows.append({
        "name": name, "module": owners[name], "hidden": cmd.hidden,
        "deprecated": bool(cmd.deprecated),
        "short": {str(n): cmd.get_short_help_str(n) for n in range(10, 160)},
    })
print(json.dumps({"rows": rows, "extra": extra}))
"""


def _mlcd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlcd.cli.main", *args], capture_output=True, text=True
    )


def test_table_matches_every_registered_command() -> None:
    from typer._click.utils import make_default_short_help

    out = subprocess.run([sys.executable, "-c", _EAGER], capture_output=True, text=True, check=True)
    eager = json.loads(out.stdout)
    # Same commands, same order: a command added to a module must be added to COMMANDS too.
    assert [row["name"] for row in eager["rows"]] == list(COMMANDS)
    for row in eager["rows"]:
        modules, first_paragraph = COMMANDS[row["name"]]
        assert row["module"] == modules[0], row["name"]
        assert not row["hidden"] and not row["deprecated"], row["name"]
        for limit, short in row["short"].items():
            assert make_default_short_help(first_paragraph, int(limit)).strip() == short, (
                row["name"],
                limit,
            )
    # A module that adds no root command extends a group: it must load with that group.
    for module in eager["extra"]:
        assert any(module in modules[1:] for modules, _ in COMMANDS.values()), module


def test_root_help_lists_every_command_without_building_them() -> None:
    probe = (
        "import sys, json\nfrom mlcd.cli.main import main\n"
        "code = main(['--help'])\n"
        "print('@@' + json.dumps(sorted(m for m in sys.modules if m.endswith('_cmd'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    help_text, _, loaded = out.stdout.rpartition("@@")
    assert json.loads(loaded) == []
    listed = help_text.split("Commands:\n", 1)[1].splitlines()
    assert [line.split()[0] for line in listed if line.startswith("  ") and line[2] != " "] == (
        list(COMMANDS)
    )


def test_lazily_built_command_help_works() -> None:
    runs = _mlcd("runs", "--help")
    assert runs.returncode == 0, runs.stderr
    assert runs.stdout.startswith("Usage: mlcd runs [OPTIONS] COMMAND [ARGS]...")
    assert "  list " in runs.stdout
    # ``exp push`` is registered by a second module into the ``exp`` group.
    push = _mlcd("exp", "push", "--help")
    assert push.returncode == 0, push.stderr
    assert push.stdout.startswith("Usage: mlcd exp push [OPTIONS]")


def test_unknown_command_still_suggests_the_close_one() -> None:
    out = _mlcd("statu")
    assert out.returncode == 2
    assert "No such command 'statu'. Did you mean 'status'?" in out.stderr


def test_every_listed_command_builds_and_shows_its_help() -> None:
    probe = (
        "import contextlib, io, json\nfrom mlcd.cli.lazy import COMMANDS\n"
        "from mlcd.cli.main import main\nresults = {}\n"
        "for name in COMMANDS:\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        code = main([name, '--help'])\n"
        "    results[name] = [code, out.getvalue().splitlines()[0]]\n"
        "print('@@' + json.dumps(results))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout.rpartition("@@")[2])
    assert list(results) == list(COMMANDS)
    for name, (code, usage) in results.items():
        assert code == 0, name
        assert usage.startswith(f"Usage: mlcd {name} "), (name, usage)
