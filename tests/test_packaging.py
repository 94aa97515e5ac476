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


def pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = list(project["dependencies"]) + list(project.get("optional-dependencies", {}).get("test", []))
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


def test_environment_yml_has_python_pip_and_the_editable_install():
    conda, pip = environment_requirements()
    assert "python" in conda and conda["python"], "environment.yml must pin a python version"
    assert "pip" in conda
    assert "-e ." in [p.strip() for p in pip]


def test_python_version_agrees_with_requires_python():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    conda, _ = environment_requirements()
    assert conda["python"] == split_requirement("python" + project["requires-python"])[1]


def test_dependencies_agree_name_for_name_and_spec_for_spec():
    pip_side = pyproject_requirements()
    conda, _ = environment_requirements()
    conda_side = {name: spec for name, spec in conda.items() if name not in CONDA_ONLY}
    assert sorted(conda_side) == sorted(pip_side), "the two files list different packages"
    differing = {name: (pip_side[name], conda_side[name]) for name in pip_side if pip_side[name] != conda_side[name]}
    assert differing == {}, "version specs differ (pyproject.toml, environment.yml)"


def test_every_dependency_has_a_lower_bound():
    for name, spec in pyproject_requirements().items():
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


def test_readme_code_blocks_run_as_shown():
    """Every python block of the README runs, in order, in one namespace (the README is documentation a user
    copies: it must not lie)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) >= 3
    namespace = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    plt.close("all")
    assert namespace["result"].services.loc["counter", "restarts"] == 1
    assert namespace["risky"].anomalies["lost-write"] > 0 == namespace["safe"].anomalies["lost-write"]
