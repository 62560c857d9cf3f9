"""No pickle, no eval, no shell: checked on the package's source, so that no change can bring one in.

Config files, bus messages and HTTP requests are all input from outside; none of them may reach an
unpickler, an evaluator or a shell. This walks the syntax tree of every module in ``zmqcam`` (a
grep would miss ``from pickle import loads as x`` and flag comments) and fails on:

- importing pickle, marshal, shelve, dill, cloudpickle or yaml (whose ``load`` runs constructors);
- calling the builtins eval, exec or compile, or ``os.system`` / ``os.popen`` / ``os.exec*``;
- any call with ``shell=True``;
- ``subprocess`` given a single string (a command line) instead of an argument list.

Python's multiprocessing pickles the arguments of the processes zmqcam spawns (the validated
config), over a pipe between the supervisor and its own children: that is not input from outside
and is outside this check's reach by design.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import zmqcam

PACKAGE = Path(zmqcam.__file__).resolve().parent
MODULES = sorted(PACKAGE.rglob("*.py"))
FORBIDDEN_MODULES = {"pickle", "_pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "yaml"}
FORBIDDEN_BUILTINS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_OS = {"system", "popen", "execl", "execle", "execlp", "execv", "execve", "execvp", "execvpe", "spawnl"}
SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output", "getoutput", "getstatusoutput"}


def _aliases(tree: ast.AST) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """The names a module binds to os and subprocess, and to their functions: ``import subprocess
    as sp`` -> {"sp": "subprocess"}; ``from subprocess import run as r`` -> {"r": ("subprocess", "run")}."""
    modules = {"os": "os", "subprocess": "subprocess"}
    functions: dict[str, tuple[str, str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in ("os", "subprocess"):
                    modules[a.asname or a.name] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module in ("os", "subprocess"):
            for a in node.names:
                functions[a.asname or a.name] = (node.module, a.name)
    return modules, functions


def problems_in(tree: ast.AST) -> list[str]:
    modules, functions = _aliases(tree)
    found = []
    for node in ast.walk(tree):
        where = f"line {getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FORBIDDEN_MODULES:
            found.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_BUILTINS:
                found.append(f"{where}: {func.id}()")
            called: tuple[str, str] | None = None
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in modules:
                called = (modules[func.value.id], func.attr)
            elif isinstance(func, ast.Name) and func.id in functions:
                called = functions[func.id]  # from subprocess import run [as alias]; run(...)
            if called is not None:
                owner, name = called
                if owner == "os" and name in FORBIDDEN_OS:
                    found.append(f"{where}: os.{name}()")
                if owner == "subprocess" and name in SUBPROCESS_CALLS:
                    if name in ("getoutput", "getstatusoutput"):
                        found.append(f"{where}: subprocess.{name}() runs a shell")
                    elif node.args and isinstance(node.args[0], (ast.Constant, ast.JoinedStr, ast.BinOp)):
                        found.append(f"{where}: subprocess.{name}() given a command string, not a list")
            for kw in node.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    found.append(f"{where}: shell=...")
    return found


def test_the_check_finds_what_it_looks_for() -> None:
    """The checker itself flags each forbidden construct, under any name it is imported as (else
    the test below could never fail)."""
    bad = """
import pickle
from marshal import loads as l
eval("1")
os.system("ls")
subprocess.run("ls -l")
subprocess.Popen(["ls"], shell=True)
"""
    assert len(problems_in(ast.parse(bad))) == 6
    aliased = """
from subprocess import run
from subprocess import check_output as out
import subprocess as sp
from os import system as sh
import os as o
run("ls -l")
out(f"ls {x}")
sp.call("ls")
sh("ls")
o.popen("ls")
"""
    assert len(problems_in(ast.parse(aliased))) == 5, problems_in(ast.parse(aliased))
    assert problems_in(ast.parse('subprocess.run(["ls"], check=True)\nre.compile("x")')) == []
    assert problems_in(ast.parse('from subprocess import run\nrun(["ls"], check=True)')) == []


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_no_unpickling_evaluation_or_shell(path: Path) -> None:
    assert MODULES, "no modules found"
    problems = problems_in(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    assert not problems, f"{path.relative_to(PACKAGE.parent)}: " + "; ".join(problems)
