"""The ``fcnfast`` command line as users run it."""

import json
import subprocess
import sys

from fcnfast.cli import main


def _run(*args):
    return subprocess.run([sys.executable, "-m", "fcnfast", *args], capture_output=True, text=True, timeout=300)


def test_info_lists_every_backend_with_a_reason():
    result = _run("info")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for line in ("torch", "triton", "fcnfast._C", "fcnfast._cuda", "auto (float32)"):
        assert line in out
    backend_lines = {l.split()[0]: l for l in out.splitlines() if l.startswith("  ") and l.split()[0] in
                     ("reference", "triton", "cuda", "cpp")}
    assert set(backend_lines) == {"reference", "triton", "cuda", "cpp"}
    for line in backend_lines.values():
        assert line.split()[1] in ("yes", "no") and len(line.split()) > 2  # a reason follows


def test_info_json_matches_available_backends():
    import fcnfast

    result = _run("info", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    expected = fcnfast.available_backends()
    assert {k: v["available"] for k, v in data["backends"].items()} == {k: v[0] for k, v in expected.items()}


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "info" in capsys.readouterr().out
