"""Type hints for users: shmaccel's stubs (pyshim/shmaccel/__init__.pyi, py.typed) under mypy.

examples/typed_user.py passes `mypy --strict` (and runs); a file of deliberate mistakes fails on
exactly the lines marked; reveal_type() shows results following their inputs; and the stub
names what the runtime package has, no more and no less, with the same parameters. The mypy
tests skip when mypy is not installed; they share one mypy cache per session, in a temporary
directory.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import shmaccel

from conftest import PYSHIM, ROOT, child_env

STUB = PYSHIM / "shmaccel" / "__init__.pyi"
EXAMPLE = ROOT / "examples" / "typed_user.py"

# "file.py:12: error: message  [code]" and "file.py:12: note: Revealed type is "T""
ERROR_LINE = re.compile(
    r"^(?P<path>[^:]+):(?P<line>\d+): error: (?P<message>.*?)(?:  \[(?P<code>[a-z-]+)\])?$")
REVEAL_LINE = re.compile(
    r'^(?P<path>[^:]+):(?P<line>\d+): note: Revealed type is "(?P<type>.*)"$')


@pytest.fixture(scope="session")
def mypy(tmp_path_factory):
    """run(file) -> (exit code, output) of `mypy --strict file` as a user would run it: shmaccel
    found on MYPYPATH (this source tree), no project configuration."""
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed: pip install mypy")
    base = tmp_path_factory.mktemp("mypy")
    config = base / "mypy.ini"
    config.write_text("[mypy]\n")

    def run(path: Path) -> tuple[int, str]:
        proc = subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--config-file", str(config),
             "--cache-dir", str(base / "cache"), "--show-error-codes", "--no-color-output",
             "--no-pretty", str(path)],
            cwd=base, env=dict(os.environ, MYPYPATH=str(PYSHIM)), capture_output=True,
            text=True, timeout=300, check=False,
        )
        output = proc.stdout + proc.stderr
        assert proc.returncode in (0, 1), f"mypy failed to run:\n{output}"
        return proc.returncode, output

    return run


def write_checked(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "user_code.py"
    path.write_text(textwrap.dedent(source).lstrip())
    return path


def marked_lines(path: Path, marker: str) -> dict[int, str]:
    """{line number: text after `# marker:`} for the lines of path carrying the marker."""
    found = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if f"# {marker}:" in line:
            found[number] = line.split(f"# {marker}:", 1)[1].strip()
    return found


def errors_by_line(output: str, path: Path) -> dict[int, list[tuple[str, str]]]:
    """{line: [(code, message)]} of the errors mypy reported in path."""
    errors: dict[int, list[tuple[str, str]]] = {}
    for line in output.splitlines():
        match = ERROR_LINE.match(line)
        if match and Path(match["path"]).name == path.name:
            errors.setdefault(int(match["line"]), []).append(
                (match["code"] or "", match["message"]))
    return errors


# -- mypy --strict on users' code ------------------------------------------------------------


def test_example_program_passes_mypy_strict(mypy):
    code, output = mypy(EXAMPLE)
    assert code == 0, f"mypy --strict {EXAMPLE.name}:\n{output}"
    assert "Success" in output


def test_example_program_runs():
    proc = subprocess.run([sys.executable, str(EXAMPLE)], env=child_env(), capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all correct" in proc.stdout


MISTAKES = """
    import array
    import shmaccel

    pool = shmaccel.Pool()
    x: list[str] = shmaccel.square([1, 2])  # error: assignment
    y: list[int] = shmaccel.double([1.5])  # error: assignment
    z: shmaccel.SharedArray = shmaccel.square([1])  # error: assignment
    w: array.array[int] = shmaccel.square(array.array("d", [1.0]))  # error: assignment
    shmaccel.square([1, 2], timeout="1")  # error: call-overload
    shmaccel.square(["a"])  # error: any
    shmaccel.double([1], out=[0])  # error: call-overload
    pool.submit("square", [1], timeout=1.0)  # error: call-overload
    shmaccel.Pool(threads="2")  # error: arg-type
    shmaccel.empty("10")  # error: arg-type
    shmaccel.TimeoutError  # error: attr-defined
    pool.stats()["no_such_figure"]  # error: typeddict-item
    shmaccel.square([1], out=shmaccel.zeros(1)).tolist()
    pool.close()
"""


def test_mypy_reports_each_mistake(mypy, tmp_path):
    path = write_checked(tmp_path, MISTAKES)
    code, output = mypy(path)
    expected = marked_lines(path, "error")
    reported = errors_by_line(output, path)
    assert code == 1
    assert sorted(reported) == sorted(expected), (
        f"mistakes marked on lines {sorted(expected)}; mypy said:\n{output}")
    for line, want in expected.items():
        codes = [code for code, _ in reported[line]]
        assert want == "any" or want in codes, f"line {line}: wanted [{want}], got:\n{output}"


# Every kernel call form with every kind of input: the result type is the input's (a Future of
# it for submit). "{}" in a call stands for the input, in a result type for the input's result.
KERNEL_CALLS = {
    "shmaccel.square({})": "{}",
    "shmaccel.double({})": "{}",
    "pool.square({})": "{}",
    "pool.double({})": "{}",
    "pool.run('square', {})": "{}",
    "pool.submit('double', {})": "concurrent.futures._base.Future[{}]",
    "await pool.arun('double', {})": "{}",
    "await pool.asquare({})": "{}",
    "await pool.adouble({})": "{}",
}
KERNEL_INPUTS = {
    "[1, 2]": "list[int]",
    "(True, 2)": "list[int]",
    "flags": "list[int]",
    "[1, 2.5]": "list[float]",
    "(0.5,)": "list[float]",
    "shared": "shmaccel.SharedArray",
    "array.array('i', [1])": "array.array[int]",
    "array.array('d', [1.0])": "array.array[float]",
    "b'ab'": "shmaccel.SharedArray",
    "memoryview(b'ab')": "shmaccel.SharedArray",
    "[1.0, 2.0], out=doubles": "array.array[float]",
    "shared, out=shared": "shmaccel.SharedArray",
}
OTHER_REVEALS = """
    reveal_type(shmaccel.square([3], timeout=1))  # revealed: list[int]
    reveal_type(shmaccel.double(shared, out=shared, timeout=None))  # revealed: shmaccel.SharedArray
    reveal_type(shmaccel.array(range(3), dtype=int))  # revealed: shmaccel.SharedArray
    reveal_type(shmaccel.empty(3, "int8", pool=pool))  # revealed: shmaccel.SharedArray
    reveal_type(pool.zeros(3, float))  # revealed: shmaccel.SharedArray
    reveal_type(shared[0])  # revealed: float
    reveal_type(shared[1:])  # revealed: memoryview[float]
    reveal_type(shared.tolist())  # revealed: list[float]
    reveal_type(pool.map("double", [[1], [2]]))  # revealed: list[list[int]]
    reveal_type(pool.map("double", [shared, shared]))  # revealed: list[shmaccel.SharedArray]
    reveal_type(pool.map("double", [[1], shared]))  # revealed: list[Any]
    reveal_type(pool.stats()["busy_pct"])  # revealed: float
    reveal_type(pool.stats()["sessions"][0]["pid"])  # revealed: int
    reveal_type(pool.__enter__())  # revealed: shmaccel.Pool
    reveal_type(shmaccel.default_pool().worker_pid)  # revealed: int
"""


def reveals_source() -> str:
    lines = ["import array", "import shmaccel", "", "pool = shmaccel.Pool()",
             "shared = shmaccel.zeros(2)", "flags: list[bool] = [True, False]",
             "doubles = array.array('d', [0.0, 0.0])",
             *textwrap.dedent(OTHER_REVEALS).strip().splitlines(), "",
             "async def main() -> None:"]
    for call, result in KERNEL_CALLS.items():
        for data, data_result in KERNEL_INPUTS.items():
            expression = call.format(data)
            lines.append(f"    reveal_type({expression})  # revealed: {result.format(data_result)}")
    return "\n".join(lines) + "\n"


def test_results_follow_their_inputs(mypy, tmp_path):
    path = write_checked(tmp_path, reveals_source())
    code, output = mypy(path)
    expected = marked_lines(path, "revealed")
    revealed = {}
    for line in output.splitlines():
        match = REVEAL_LINE.match(line)
        if match and Path(match["path"]).name == path.name:
            revealed[int(match["line"])] = match["type"].replace("builtins.", "")
    assert code == 0, output
    source = path.read_text().splitlines()
    wrong = [f"{source[n - 1].strip()}\n    mypy: {revealed.get(n)}"
             for n in sorted(expected) if revealed.get(n) != expected[n]]
    assert not wrong, "\n".join(wrong)
    others = OTHER_REVEALS.count("# revealed:")
    assert len(expected) == len(KERNEL_CALLS) * len(KERNEL_INPUTS) + others


NUMPY_CODE = """
    import numpy as np
    import numpy.typing as npt
    import shmaccel

    x = np.zeros(8, dtype=np.float32)
    same: npt.NDArray[np.float32] = shmaccel.square(x)
    into: npt.NDArray[np.float32] = shmaccel.double(x, out=x)
    shared: shmaccel.SharedArray = shmaccel.zeros(8, np.float32)
    viewed: npt.NDArray[np.float32] = shmaccel.square(x, out=np.asarray(shared))
    wrong: npt.NDArray[np.int64] = shmaccel.square(x)  # error: any
"""


def test_numpy_arrays_keep_their_dtype(mypy, tmp_path):
    if importlib.util.find_spec("numpy") is None:
        pytest.skip("numpy is not installed")
    path = write_checked(tmp_path, NUMPY_CODE)
    _, output = mypy(path)
    assert sorted(errors_by_line(output, path)) == sorted(marked_lines(path, "error")), output


# -- the stub against the runtime package -----------------------------------------------------


def stub_module() -> ast.Module:
    return ast.parse(STUB.read_text(), str(STUB))


def members(body: list[ast.stmt]) -> dict[str, list[ast.stmt]]:
    """{name: [its statements]} for what a module or class body defines (overloads: several)."""
    found: dict[str, list[ast.stmt]] = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.setdefault(node.name, []).append(node)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found.setdefault(node.target.id, []).append(node)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found.setdefault(target.id, []).append(node)
    return found


def is_public(name: str) -> bool:
    return not name.startswith("_") or name == "__version__"


Parameters = list[tuple[str, inspect._ParameterKind, bool]]


def stub_parameters(defs: list[ast.stmt]) -> Parameters:
    """[(name, kind, has a default)] of a stub function: its overloads must agree on names and
    kinds; a parameter has a default if any overload gives it one."""
    signatures = []
    name = ""
    for node in defs:
        assert isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        name = node.name
        args = node.args
        positional = args.posonlyargs + args.args
        first_default = len(positional) - len(args.defaults)
        params: Parameters = [
            (arg.arg, inspect.Parameter.POSITIONAL_ONLY if i < len(args.posonlyargs)
             else inspect.Parameter.POSITIONAL_OR_KEYWORD, i >= first_default)
            for i, arg in enumerate(positional)]
        if args.vararg:
            params.append((args.vararg.arg, inspect.Parameter.VAR_POSITIONAL, False))
        params += [(arg.arg, inspect.Parameter.KEYWORD_ONLY, default is not None)
                   for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True)]
        if args.kwarg:
            params.append((args.kwarg.arg, inspect.Parameter.VAR_KEYWORD, False))
        signatures.append(params)
    shapes = {tuple((name, kind) for name, kind, _ in params) for params in signatures}
    assert len(shapes) == 1, f"overloads of {name} disagree on parameters: {shapes}"
    return [(param, kind, any(sig[i][2] for sig in signatures))
            for i, (param, kind, _) in enumerate(signatures[0])]


def runtime_parameters(func) -> Parameters:
    return [(p.name, p.kind, p.default is not p.empty)
            for p in inspect.signature(func).parameters.values()]


def check_function(where: str, defs: list[ast.stmt], func) -> None:
    assert stub_parameters(defs) == runtime_parameters(func), (
        f"{where}: stub parameters {stub_parameters(defs)}, runtime {inspect.signature(func)}")
    is_async = isinstance(defs[0], ast.AsyncFunctionDef)
    assert is_async == inspect.iscoroutinefunction(func), f"{where}: async in one only"


def test_stub_names_exactly_the_public_api():
    stub = members(stub_module().body)
    stub_all = ast.literal_eval(stub["__all__"][0].value)
    public = sorted(name for name in stub if is_public(name))
    assert sorted(stub_all) == sorted(shmaccel.__all__)
    assert sorted(public) == sorted(shmaccel.__all__ + ["__version__"])
    for name in public:
        assert hasattr(shmaccel, name), f"the stub has {name}, shmaccel has not"


def test_stub_functions_take_the_runtime_parameters():
    stub = members(stub_module().body)
    for name, defs in stub.items():
        if is_public(name) and isinstance(defs[0], (ast.FunctionDef, ast.AsyncFunctionDef)):
            check_function(f"shmaccel.{name}", defs, getattr(shmaccel, name))


def test_stub_constants_have_their_runtime_types():
    assert isinstance(shmaccel.__version__, str)
    for name in ("DTYPES", "OPS"):
        value = getattr(shmaccel, name)
        assert isinstance(value, tuple) and all(isinstance(v, str) for v in value), name


def test_stub_exceptions_have_the_runtime_bases():
    stub = members(stub_module().body)
    for name in ("Error", "WorkerDiedError", "PoolClosedError", "PoolNotFoundError"):
        node = stub[name][0]
        assert isinstance(node, ast.ClassDef)
        stub_bases = [ast.unparse(base) for base in node.bases]
        runtime_bases = [base.__name__ for base in getattr(shmaccel, name).__bases__]
        assert stub_bases == runtime_bases, name


@pytest.mark.parametrize("class_name", ["Pool", "SharedArray"])
def test_stub_classes_have_the_runtime_members(class_name, make_pool):
    node = members(stub_module().body)[class_name][0]
    assert isinstance(node, ast.ClassDef)
    stub = members(node.body)
    cls = getattr(shmaccel, class_name)
    pool = make_pool(threads=1)
    instance = pool if cls is shmaccel.Pool else pool.zeros(1)
    runtime_public = {name for name in dir(cls) if not name.startswith("_")}
    missing = runtime_public - set(stub)
    assert not missing, f"{class_name}: the stub lacks {sorted(missing)}"
    for name, defs in stub.items():
        if name == "__buffer__" and sys.version_info < (3, 12):
            continue  # the C buffer protocol: a Python-level dunder only from 3.12
        if isinstance(defs[0], ast.AnnAssign):  # set in __init__
            assert hasattr(instance, name), f"{class_name}.{name}"
            continue
        assert hasattr(cls, name), f"the stub has {class_name}.{name}, the runtime has not"
        attr = inspect.getattr_static(cls, name)
        if isinstance(defs[0], ast.FunctionDef) and any(
                isinstance(d, ast.Name) and d.id == "property" for d in defs[0].decorator_list):
            assert inspect.isdatadescriptor(attr), f"{class_name}.{name} is no property"
        elif inspect.isfunction(attr):  # Python code; C slots have no useful signature
            check_function(f"{class_name}.{name}", defs, attr)


def test_stats_typeddicts_have_the_runtime_keys(make_pool):
    stub = members(stub_module().body)

    def keys(name):
        node = stub[name][0]
        assert isinstance(node, ast.ClassDef)
        return set(members(node.body))

    stats = make_pool(threads=1).stats()
    assert set(stats) == keys("_PoolStats")
    assert stats["sessions"], "a pool has at least our own session"
    assert set(stats["sessions"][0]) == keys("_SessionStats")
