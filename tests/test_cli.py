"""Tests of the command line ``python -m reprolib data {list, prepare, verify}``.

The commands run in a subprocess, as a user would run them, with ``REPROLIB_DATA`` in tmp_path
(nothing is written to the home folder), ``REPROLIB_OFFLINE=1`` (nothing is downloaded) and, for
the synthetic entry, a manifest with a tiny generator. Each subprocess pays the torch import
(~3 s here), so three commands run as subprocesses and the finer cases call ``main()``
in-process.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reprolib import __main__ as cli
from reprolib import data

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"

GENERATOR = '''
from pathlib import Path


def write(root, *, seed, n=2):
    for i in range(n):
        (Path(root) / f"{i}.txt").write_text(f"{seed} {i}\\n")
'''


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Environment of a user with an empty cache, offline, and a manifest with 'toy-mini'."""
    gen = tmp_path / "gen"
    gen.mkdir()
    (gen / "clitoygen.py").write_text(GENERATOR)
    manifest = yaml.safe_load((REPO / "data_manifest.yaml").read_text())
    manifest["toy-mini"] = {"kind": "synthetic", "title": "Toy", "generator": "clitoygen:write",
                            "params": {"seed": 0}, "layout": [{"glob": "*.txt", "min_count": 2}]}
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    values = {"REPROLIB_DATA": str(tmp_path / "cache"), "REPROLIB_OFFLINE": "1",
              "REPROLIB_MANIFEST": str(tmp_path / "manifest.yaml")}
    for key, value in values.items():  # for the in-process calls
        monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(gen))
    pythonpath = os.pathsep.join([str(gen), str(REPO), os.environ.get("PYTHONPATH", "")])
    yield {**os.environ, **values, "PYTHONPATH": pythonpath}
    sys.modules.pop("clitoygen", None)


def run(env, *args):
    return subprocess.run([sys.executable, "-m", "reprolib", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_list_shows_every_entry(env):
    env = {k: v for k, v in env.items() if k != "REPROLIB_MANIFEST"}  # the repository's manifest
    result = run(env, "data", "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["name", "kind", "size", "present"]
    for name, e in data.load_manifest(REPO / "data_manifest.yaml").items():
        (line,) = [line for line in lines if line.split() and line.split()[0] == name]
        assert e["kind"] in line and line.rstrip().endswith("no")
    assert "25 GB (Sony.zip)" in result.stdout


def test_prepare_and_verify_a_synthetic_set(env, tmp_path, capsys):
    result = run(env, "data", "prepare", "toy-mini")
    assert result.returncode == 0, result.stderr
    root = Path(result.stdout.strip())
    assert root == tmp_path / "cache" / "toy-mini"
    assert sorted(p.name for p in root.iterdir()) == [".reprolib-stamp.json", "0.txt", "1.txt"]
    assert cli.main(["data", "verify", "toy-mini"]) == 0  # in-process: a subprocess costs ~3 s
    out = capsys.readouterr().out
    assert "sha256_checked: 2" in out and "*.txt: 2" in out
    assert f"fingerprint: {data.fingerprint(root)}" in out
    assert not (Path.home() / ".cache" / "reprolib" / "toy-mini").exists()


def test_missing_data_set_exits_1_with_a_message_and_no_traceback(env, tmp_path):
    result = run(env, "data", "prepare", "sid-sony", "--root", str(tmp_path / "empty"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: ")
    for needle in ("drive.google.com", "25 GB", f"{tmp_path}/empty/Sony/short/*.ARW",
                   "0 files, expected at least 2697"):
        assert needle in result.stderr


def test_small_files_offline_in_process(env, tmp_path, capsys):
    sid = FIXTURES / "sid"
    if not sid.exists():
        pytest.skip(f"fixture {sid} not available (it lives beside the checkout in ../shared/fixtures)")
    root = tmp_path / "sid"
    root.mkdir()
    for p in sid.glob("*_list.txt"):
        shutil.copyfile(p, root / p.name)
    assert cli.main(["data", "prepare", "sid-lists", "--root", str(root)]) == 0
    assert capsys.readouterr().out.strip() == str(root)
    assert cli.main(["data", "verify", "sid-lists", "--root", str(root)]) == 0
    assert "sha256_checked: 6" in capsys.readouterr().out
    (root / "Sony_val_list.txt").unlink()
    assert cli.main(["data", "prepare", "sid-lists", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "Sony_val_list.txt: missing" in err and "Downloads are disabled" in err
    assert cli.main(["data", "verify", "sid-lists", "--root", str(root)]) == 1
    assert "Sony_val_list.txt: missing" in capsys.readouterr().err


def test_other_failures_in_process(env, tmp_path, capsys):
    assert cli.main(["data", "prepare", "sid-sonyy"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown data set 'sid-sonyy'. Did you mean 'sid-sony'?")
    assert "raw-nod-mini" in err and "Traceback" not in err
    assert cli.main(["data", "verify", "toy-mini"]) == 1  # never generated
    assert "run: python -m reprolib data prepare toy-mini" in capsys.readouterr().err
    assert cli.main(["data", "prepare", "toy-mini"]) == 0
    root = Path(capsys.readouterr().out.strip())
    (root / "0.txt").write_text("9 9\n")  # same size, other content
    assert cli.main(["data", "verify", "toy-mini"]) == 1
    assert "0.txt: sha256 does not match the stamp" in capsys.readouterr().err
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("x")
    assert cli.main(["data", "prepare", "toy-mini", "--root", str(foreign)]) == 1
    assert "not overwriting" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # a malformed command line is argparse's exit 2
        cli.main(["data", "frobnicate"])
    assert info.value.code == 2
