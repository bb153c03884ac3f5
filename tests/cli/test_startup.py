"""Start-up stays light: no heavy library is imported by `mlcd --help` or `import mlcd`."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["pandas", "sklearn", "sqlalchemy", "fastapi", "pyarrow", "numpy", "scipy", "plotly"]


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys, json\nprint('@@' + json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    line = next(line for line in out.stdout.splitlines() if line.startswith("@@"))
    return set(json.loads(line[2:]))


def test_import_mlcd_loads_no_heavy_library() -> None:
    loaded = _modules_after("import mlcd")
    assert not {m for m in HEAVY if m in loaded}


def test_help_loads_no_heavy_library() -> None:
    code = (
        "import sys\nfrom mlcd.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    )
    loaded = _modules_after(code)
    assert not {m for m in HEAVY if m in loaded}


def test_version_prints_package_version() -> None:
    import mlcd

    out = subprocess.run(
        [sys.executable, "-m", "mlcd.cli.main", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert out.stdout.strip() == f"mlcd {mlcd.__version__}"


def test_public_api_is_guarded() -> None:
    import mlcd

    for name in mlcd.__all__:
        assert hasattr(mlcd, name), name
