"""The CLI turns every user error into one line on stderr naming the flag, with exit code 2, and
checks the places a run writes (--save, --plan-out, --report, --costs) before any optimizing.
One row per case; each runs `python -m engine optimize` in-process with engine.optimize
replaced by a tripwire, so a case that gets as far as optimizing fails the test."""
import subprocess
import sys

import pytest

import engine
from engine import cli

BASE = ["optimize", "--model", "resnet18_cifar", "--min-time", "0.01"]

# (case id, extra arguments, regex the one error line must match)
CASES = [
    ("input-shape not ints", ["--input-shape", "1,3,x"], r"--input-shape: must be .*'1,3,x'"),
    ("input-shape zero", ["--input-shape", "0,3,32,32"], r"--input-shape: must be .*positive"),
    ("input-shape empty", ["--input-shape", ""], r"--input-shape"),
    ("threads 0", ["--threads", "0"], r"--threads: must be an integer in \[1, 256\], got '0'"),
    ("threads huge", ["--threads", "100000"], r"--threads: .*'100000'"),
    ("threads float", ["--threads", "1.5"], r"--threads: .*'1.5'"),
    ("min-proxy abc", ["--mapper", "rule", "--min-proxy", "abc"], r"--min-proxy: .*'abc'"),
    ("min-proxy nan", ["--mapper", "rule", "--min-proxy", "nan"], r"--min-proxy: .*'nan'"),
    ("sparsity 2", ["--sparsity", "2"], r"--sparsity: must be a number in \[0, 1\), got '2'"),
    ("sparsity nan", ["--sparsity", "nan"], r"--sparsity: .*'nan'"),
    ("sparsity word", ["--sparsity", "high"], r"--sparsity: .*'high'"),
    ("min-speedup < 1", ["--min-speedup", "0.5"], r"--min-speedup: .*>= 1, got '0.5'"),
    ("min-speedup inf", ["--min-speedup", "inf"], r"--min-speedup: .*'inf'"),
    ("min-time 0", ["--min-time", "0"], r"--min-time: .*'0'"),
    ("block float", ["--block", "4.5x1"], r"--block: must be ROWSxCOLS.*'4.5x1'"),
    ("block zero", ["--block", "0x1"], r"--block: .*'0x1'"),
    ("seed negative", ["--seed", "-1"], r"--seed: .*'-1'"),
    ("latency-budget negative", ["--mapper", "rule", "--latency-budget", "-3"],
     r"--latency-budget: .*'-3'"),
    ("search-time word", ["--mapper", "search", "--search-time", "long"], r"--search-time: .*'long'"),
    ("device not rpc", ["--device", "http://phone"], r"--device: must be artifact or rpc://HOST:PORT"),
    ("backends unknown", ["--backends", "cuda"], r"--backends: .*'cuda'"),
    ("mapper unknown", ["--mapper", "magic"], r"--mapper: invalid choice: 'magic'"),
    ("unknown flag", ["--sparsty", "0.5"], r"unrecognized arguments: --sparsty"),
    ("model unknown", ["--model", "nope"], r"--model: unknown model 'nope'; known models: .*resnet50"),
    ("target unknown", ["--target", "phone"], r"--target: unknown target 'phone'.*arm64"),
    ("scheme unknown", ["--scheme", "blocky"], r"--scheme: unknown scheme 'blocky'.*block"),
    ("report without mapper", ["--report", "out"], r"--report needs --mapper"),
    ("plan-out in missing dir", ["--plan-out", "/nonexistent-dir/plan.json"],
     r"--plan-out: directory '/nonexistent-dir' does not exist"),
    ("plan-out is a directory", ["--plan-out", "/tmp"], r"--plan-out: '/tmp' is a directory"),
    ("plan-out unwritable", ["--plan-out", "/proc/plan.json"], r"--plan-out: cannot write in '/proc'"),
    ("report unwritable", ["--mapper", "rule", "--report", "/proc/report"],
     r"--report: cannot write in '/proc'"),
    ("report under a file", ["--mapper", "rule", "--report", "/etc/hostname/report"],
     r"--report: '/etc/hostname' is not a directory"),
    ("costs unwritable", ["--costs", "/proc/costs.json"], r"--costs: cannot write in '/proc'"),
    ("save unwritable", ["--save", "/proc/artifact"], r"--save: .*/proc"),
    ("save into cwd", ["--save", "."], r"--save: .*'?\.'?"),
]
# the other commands: full argument lists
CASES += [
    ("bench unknown", ["bench", "foo"], r"invalid choice: 'foo'"),
    ("bench e2e threads 0", ["bench", "e2e", "--threads", "0"], r"--threads: .*'0'"),
    ("bench e2e model unknown", ["bench", "e2e", "--model", "nope"], r"unknown model 'nope'"),
    ("bench kernels min-time 0", ["bench", "kernels", "--min-time", "0"], r"--min-time: .*'0'"),
    ("bench depthwise threads", ["bench", "depthwise", "--threads", "x"], r"--threads: .*'x'"),
    ("bench mapping search-time", ["bench", "mapping", "--search-time", "-1"],
     r"--search-time: .*'-1'"),
    ("demo threads 0", ["demo", "--threads", "0"], r"--threads: .*'0'"),
    ("demo plan-out unwritable", ["demo", "--plan-out", "/proc/plan.json"],
     r"--plan-out: cannot write in '/proc'"),
    ("info extra argument", ["info", "extra"], r"unrecognized arguments: extra"),
]


@pytest.fixture
def tripwire(monkeypatch):
    """engine.optimize must not be reached by a bad command line."""
    def boom(*a, **k):
        raise AssertionError("optimize() ran before the command line was checked")
    monkeypatch.setattr(engine, "optimize", boom)


@pytest.mark.parametrize("args,pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_user_error_is_one_line_naming_the_flag(args, pattern, tripwire, capsys, tmp_path,
                                                monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("a file of the user's")
    try:
        rc = cli.main(args if args[0] in ("bench", "demo", "info") else BASE + args)
    except SystemExit as e:       # argparse and the --report check exit this way
        rc = e.code if isinstance(e.code, int) else (print(e.code, file=sys.stderr) or 1)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and "Warning" not in ln]
    assert rc != 0
    assert len(lines) == 1, err
    assert "Traceback" not in err
    import re
    assert re.search(pattern, lines[0]), lines[0]
    assert (tmp_path / "keep.txt").exists()          # nothing of the user's was touched


def test_real_command_line_one_line_and_exit_code():
    """The same through a real process: exit code 2 and one line, no traceback."""
    p = subprocess.run([sys.executable, "-m", "engine", "optimize", "--threads", "0"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--threads" in lines[0], p.stderr


def test_bench_help_lists_every_bench_and_each_one_exists(capsys):
    import importlib
    from engine import cli
    assert cli.main(["bench", "--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.BENCHES:
        assert f"  {name} " in out
        assert callable(importlib.import_module(f"engine.bench.{name}").main)
    assert cli.main(["bench"]) == 2                  # no WHAT: the same list, an error code
    assert "WHAT:" in capsys.readouterr().out
