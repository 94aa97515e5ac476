"""pyproject.toml and environment.yml install the same things (pip users and Binder/conda users get the same
versions), and the README tells a newcomer the two commands the Makefile provides."""
import re
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    tomllib = pytest.importorskip("tomli")

try:
    import yaml
except ModuleNotFoundError:
    yaml = None

ROOT = Path(__file__).resolve().parent.parent
CONDA_ONLY = {"python", "pip"}


def normalise_name(name: str) -> str:
    """PEP 503: case and runs of '-', '_', '.' do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def split_requirement(text: str) -> tuple[str, str]:
    """``"simpy >=4.1, <5"`` -> ("simpy", ">=4.1,<5"): the name and its version spec, parts sorted."""
    match = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*", text)
    assert match, f"cannot read the requirement {text!r}"
    name, _extras, spec = match.groups()
    parts = sorted(p.replace(" ", "") for p in spec.split(",") if p.strip())
    return normalise_name(name), ",".join(parts)


TEST_TOOLS = {"pytest", "hypothesis", "playwright", "playwright-python"}


def pyproject_requirements(extras=()) -> dict[str, str]:
    """The runtime dependencies (what a learner installs), plus those of ``extras``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = list(project["dependencies"])
    for extra in extras:
        texts += list(project.get("optional-dependencies", {})[extra])
    found = dict(split_requirement(t) for t in texts)
    assert len(found) == len(texts), "a package is listed twice in pyproject.toml"
    return found


def parse_environment_yml(text: str) -> dict:
    """Enough YAML for environment.yml: top-level scalars and lists, the ``dependencies`` list, and its
    ``- pip:`` sub-list. Used when PyYAML is not installed."""
    data: dict = {}
    key = None
    pip_list = None
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        body = line.strip()
        if indent == 0:
            name, _, value = body.partition(":")
            key, pip_list = name.strip(), None
            data[key] = value.strip() if value.strip() else []
        elif body.startswith("- "):
            item = body[2:].strip()
            if pip_list is not None and indent > pip_indent:
                pip_list.append(item)
            elif item.endswith(":"):
                pip_list, pip_indent = [], indent
                data[key].append({item[:-1].strip(): pip_list})
            else:
                pip_list = None
                data[key].append(item)
        else:
            raise AssertionError(f"environment.yml line not understood by the small parser: {raw!r}")
    return data


def environment() -> dict:
    text = (ROOT / "environment.yml").read_text()
    return yaml.safe_load(text) if yaml is not None else parse_environment_yml(text)


def environment_requirements() -> tuple[dict[str, str], list]:
    conda, pip = {}, []
    for item in environment()["dependencies"]:
        if isinstance(item, dict):
            pip.extend(item.get("pip", []))
        else:
            name, spec = split_requirement(str(item))
            assert name not in conda, f"{name} is listed twice in environment.yml"
            conda[name] = spec
    return conda, pip


def test_environment_yml_pins_python_for_binder_and_postbuild_installs_edsim_once():
    """repo2docker reads only an exact python version, and builds environment.yml before the repository is
    copied in: edsim itself is installed by postBuild, once, without touching conda's packages."""
    conda, pip = environment_requirements()
    assert re.fullmatch(r"=\d+\.\d+", conda["python"]), f"python{conda['python']}: Binder needs python=3.X"
    assert "pip" in conda
    assert pip == [], "environment.yml must not install edsim (postBuild does): repo2docker has no source yet"
    commands = [line.strip() for line in (ROOT / "postBuild").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    installs = [c for c in commands if "pip install" in c]
    assert installs == ["python -m pip install --no-deps -e ."], installs


def test_python_pin_satisfies_requires_python():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    conda, _ = environment_requirements()
    pinned = tuple(int(x) for x in conda["python"].lstrip("=").split("."))
    minimum = tuple(int(x) for x in project["requires-python"].lstrip(">=").split("."))
    assert pinned >= minimum


def test_the_learners_environment_has_no_test_tools():
    conda, _ = environment_requirements()
    assert not TEST_TOOLS & set(conda), "environment.yml is the learner's: test tools belong to make test"
    assert not TEST_TOOLS & set(pyproject_requirements()), "test tools belong to the test extra"
    assert {"pytest", "hypothesis", "playwright"} <= set(pyproject_requirements(["test"]))
    assert "pyyaml" in conda and "pyyaml" in pyproject_requirements()


def test_license_is_an_spdx_expression_with_its_file():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert data["project"]["license"] == "Apache-2.0"
    assert data["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    setuptools = [r for r in data["build-system"]["requires"] if split_requirement(r)[0] == "setuptools"]
    assert setuptools and split_requirement(setuptools[0])[1] == ">=77"     # the first to read SPDX licenses


def test_dependencies_agree_name_for_name_and_spec_for_spec():
    pip_side = pyproject_requirements()
    conda, _ = environment_requirements()
    conda_side = {name: spec for name, spec in conda.items() if name not in CONDA_ONLY}
    assert sorted(conda_side) == sorted(pip_side), "the two files list different packages"
    differing = {name: (pip_side[name], conda_side[name]) for name in pip_side if pip_side[name] != conda_side[name]}
    assert differing == {}, "version specs differ (pyproject.toml, environment.yml)"


def test_every_dependency_has_a_lower_bound():
    for name, spec in pyproject_requirements(["test", "parquet"]).items():
        assert ">=" in spec or "==" in spec, f"{name} has no lower bound: {spec!r}"


def test_requirement_reader_normalises():
    assert split_requirement(" ipywidgets >= 8.1 , <9 ") == ("ipywidgets", "<9,>=8.1")
    assert split_requirement("Foo_Bar.baz[extra]>=1") == ("foo-bar-baz", ">=1")
    assert split_requirement("pip") == ("pip", "")


@pytest.mark.skipif(yaml is None, reason="PyYAML not installed: the small parser is the only one")
def test_small_parser_reads_environment_yml_as_yaml_does():
    text = (ROOT / "environment.yml").read_text()
    assert parse_environment_yml(text) == yaml.safe_load(text)


def test_small_parser_on_a_known_file():
    text = "name: x\nchannels:\n  - conda-forge\ndependencies:\n  - python>=3.10  # comment\n  - pip\n" \
           "  - pip:\n      - -e .\n      - extra-pkg>=1\n"
    assert parse_environment_yml(text) == {"name": "x", "channels": ["conda-forge"],
                                           "dependencies": ["python>=3.10", "pip", {"pip": ["-e .", "extra-pkg>=1"]}]}


def test_readme_shows_make_lab_and_make_test():
    readme = ROOT / "README.md"
    if not readme.exists():
        pytest.skip("README.md does not exist yet")
    text = readme.read_text()
    assert "make lab" in text
    assert "make test" in text


def test_makefile_has_lab_and_test_targets():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^lab:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def make_dry_run(*args) -> str:
    import shutil
    import subprocess
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    done = subprocess.run(["make", "-n", "-B", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout


def test_make_lab_installs_the_learners_set_and_passes_options():
    """make lab: no test extra; --allow-root when root (JupyterLab refuses root otherwise); LAB_ARGS passed on."""
    import os
    out = make_dry_run("lab", "LAB_ARGS=--no-browser --ip=127.0.0.1")
    assert "pip install --quiet -e ." in out and ".[test]" not in out
    lab = [line for line in out.splitlines() if "jupyter lab" in line][-1]
    assert "--no-browser --ip=127.0.0.1" in lab
    assert ("--allow-root" in lab) == (os.getuid() == 0)


def test_make_test_adds_the_test_extra_and_builds_the_site():
    out = make_dry_run("test")
    assert 'pip install --quiet -e ".[test]"' in out
    assert "tools/site.py build/site" in out


def readme_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def printed_and_expected(block: str):
    """Run ``block`` statement by statement in a fresh namespace; for every top-level ``print(...)``, yield what it
    printed and the trailing comment that says what it prints (``print(a, b)  # 507 0``)."""
    import ast
    import contextlib
    import io
    lines = block.splitlines()
    namespace: dict = {}
    for statement in ast.parse(block).body:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(ast.Module([statement], []), "README.md", "exec"), namespace)
        is_print = isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call) and \
            isinstance(statement.value.func, ast.Name) and statement.value.func.id == "print"
        if is_print:
            tail = lines[statement.end_lineno - 1][statement.end_col_offset:].strip()
            assert tail.startswith("#"), f"README: {lines[statement.end_lineno - 1]!r} must say what it prints " \
                                         "in a trailing comment"
            yield out.getvalue().strip(), tail[1:].strip()
        else:
            assert out.getvalue() == "", f"README: only print(...) lines may print: {ast.unparse(statement)[:80]}"


def test_the_output_checker_notices_a_wrong_comment():
    assert list(printed_and_expected("x = 3\nprint(x, x + 1)  # 3 4\n")) == [("3 4", "3 4")]
    assert list(printed_and_expected("print(1)  # 2\n")) == [("1", "2")]
    with pytest.raises(AssertionError, match="trailing comment"):
        list(printed_and_expected("print(1)\n"))


def test_readme_code_blocks_run_as_shown(tmp_path, monkeypatch):
    """Every python block of the README runs alone, as a user would paste it (each has its own imports), and
    every print in it prints what its trailing comment says. The figures are computed here, never copied: when
    the model changes, the README's comments must follow."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    monkeypatch.chdir(tmp_path)                  # blocks may write files (scenario.save)
    blocks = readme_blocks("python")
    assert len(blocks) >= 5
    checked = 0
    for block in blocks:
        for printed, expected in printed_and_expected(block):
            assert printed == expected, f"README block prints {printed!r}, its comment says {expected!r}"
            checked += 1
        plt.close("all")
    assert checked >= 5


def test_readme_command_line_runs_as_shown(tmp_path):
    """The README's python -m edsim lines run on the scenario file its python block saves (the seed sweep with
    a smaller range), with the exit statuses the README gives."""
    import shlex
    import subprocess
    import sys
    saving = next(b for b in readme_blocks("python") if ".save(" in b)
    list(printed_and_expected(saving.replace('"risky.yaml"', repr(str(tmp_path / "risky.yaml")))))
    lines = [line.split("#")[0].strip() for block in readme_blocks("bash") for line in block.splitlines()
             if line.startswith("python -m edsim")]
    assert len(lines) == 4
    for line in lines:
        argv = shlex.split(line.replace("0..99", "0..1"))
        done = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 1, (line, done.stderr)          # the file's acks=1 run loses writes
        assert "lost-write" in done.stdout, line


def speed_rows(text: str, section: str | None = None) -> list[list[str]]:
    if section is not None:
        text = text.split(section, 1)[1]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ")]
    return [r[:3] for r in rows[1:]]


def test_the_readmes_speed_line_quotes_the_latest_table_of_docs_speed():
    """The README keeps one line of the benchmark; docs/speed.md keeps the latest table with its history and
    method: each figure the line quotes is that table's (the two must not drift apart)."""
    readme = (ROOT / "README.md").read_text().split("## Speed", 1)[1].split("\n## ", 1)[0]
    table = {}
    for row in speed_rows((ROOT / "docs" / "speed.md").read_text()):
        table.setdefault(row[0], row[1])                  # the first table is the latest run
    quoted = ["Python function calls per record, row 3's workload at 20,000 records (counted, not timed)",
              "network messages per record, the same run",
              "ack latency p50, ms (acks=all, 1,000 records/s, 10 ms links, linger.ms=5)",
              "Kafka's estimate 2 × linger.ms + 2 × RTT, ms"]
    for row in quoted:
        assert row in table, f"docs/speed.md's latest table has no row {row!r}"
        assert f"{table[row]} " in " ".join(readme.split()), f"the README's speed line does not quote {row!r}"

def test_the_readmes_reliability_line_quotes_the_latest_fuzz_result_of_docs_reliability():
    """The README keeps one line of the fuzzer's latest long run; docs/reliability.md keeps the run itself."""
    readme = " ".join((ROOT / "README.md").read_text().split("## Reliability", 1)[1].split("\n## ", 1)[0].split())
    doc = (ROOT / "docs" / "reliability.md").read_text().split("## Latest result", 1)[1].split("\n## ", 1)[0]
    summary = next(line for line in doc.splitlines() if "runs on safe settings:" in line)
    summary = summary.strip().strip("`")
    assert summary.startswith("10000 runs on safe settings: 0 forbidden anomalies, 0 crashes, 0 hangs, 0 stalls")
    assert f"**{summary}.**" in readme
