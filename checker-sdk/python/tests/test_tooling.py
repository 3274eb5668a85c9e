"""The test tooling itself: a failing test shows its checker's stderr; `generate.py --check` spots stale fixtures."""

import shutil
import subprocess
import sys
from pathlib import Path

from shardspace.checker import load_module

HERE = Path(__file__).resolve().parent
GENERATE = HERE.parents[1] / "fixtures" / "generate.py"

FAILING_TEST = '''
def test_fails_after_the_checker_complained(checker_process, tmp_path):
    child = checker_process("--port", "0", tmp_path / "missing_contract.py")
    assert child.process.wait(timeout=20) == 2
    assert False, "fail on purpose"
'''


def test_a_failing_test_shows_its_checker_processes_stderr(tmp_path):
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_failing.py").write_text(FAILING_TEST)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "stderr of checker process 0" in result.stdout
    assert "no such contract file" in result.stdout and "missing_contract.py" in result.stdout


def test_generate_check_names_the_stale_files(tmp_path, capsys, monkeypatch):
    generate = load_module(GENERATE)
    for name in ("transactions.json", "checker_requests.json", "checker_errors.json"):
        shutil.copy(GENERATE.parent / name, tmp_path / name)
    monkeypatch.setattr(generate, "HERE", tmp_path)
    assert generate.main(["--check"]) == 0
    (tmp_path / "checker_errors.json").write_text("[]\n", encoding="ascii")
    (tmp_path / "transactions.json").unlink()
    capsys.readouterr()
    assert generate.main(["--check"]) == 1
    message = capsys.readouterr().err
    assert "checker_errors.json" in message and "transactions.json" in message
    assert "checker_requests.json" not in message and "make fixtures" in message
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checker_errors.json", "checker_requests.json"]
