"""The Cloud Run image of ``vccflow receive`` (Dockerfile.receive) installs only some of the
project's dependencies: they must carry setup.py's version ranges, and everything the
receiver imports, its Pub/Sub client included, must come from them (no Beam)."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def image_requirements() -> list[Requirement]:
    text = (ROOT / "Dockerfile.receive").read_text()
    install = text[text.index("RUN pip install") : text.index("&& useradd")]
    return [Requirement(spec) for spec in re.findall(r'"([^"]+)"', install)]


def setup_requirements() -> dict[str, Requirement]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    specs = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "install_requires"))
    return {Requirement(s).name.lower(): Requirement(s) for s in specs}


def closure(requirements: list[Requirement]) -> set[str]:
    """The installed distributions these requirements pull in (extras left out)."""
    seen: set[str] = set()
    todo = [r.name for r in requirements]
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        for spec in metadata.distribution(name).requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def test_the_image_pins_are_setup_pys():
    declared = setup_requirements()
    for req in image_requirements():
        assert req.name.lower() in declared, f"{req.name} is not in setup.py"
        assert req.specifier == declared[req.name.lower()].specifier, req.name


#: The modules the image holds (Dockerfile.receive copies pipelines/ and transforms/; these
#: are the ones ``python -m pipelines.receive`` runs).
RECEIVER_MODULES = [
    "pipelines/receive.py",
    "pipelines/receiver/app.py",
    "pipelines/receiver/signature.py",
    "pipelines/receiver/sinks.py",
    "transforms/events.py",
]


def direct_imports(path: Path) -> set[str]:
    """Dotted names imported by a module, at any depth (lazy imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def owner(module: str) -> str:
    """The installed distribution that ships ``module`` (for a namespace package such as
    ``google``, the one holding the module's own file)."""
    candidates = metadata.packages_distributions()[module.split(".")[0]]
    if len(candidates) == 1:
        return candidates[0]
    origin = Path(importlib.util.find_spec(module).origin)
    for name in candidates:
        if any(Path(metadata.distribution(name).locate_file(f)) == origin for f in metadata.files(name) or []):
            return name
    raise LookupError(module)


def test_every_import_of_the_receiver_is_installed_in_the_image():
    installed = closure(image_requirements())
    for module in RECEIVER_MODULES:
        for name in direct_imports(ROOT / module):
            top = name.split(".")[0]
            if top in ("pipelines", "transforms"):
                assert name.startswith("pipelines.receiver") or name in ("pipelines.receive", "transforms.events")
            elif top not in sys.stdlib_module_names and top != "__future__":
                assert owner(name).lower().replace("_", "-") in installed, (module, name)


def test_starting_the_receiver_and_its_publisher_imports_no_beam():
    probe = (
        "import sys, os\n"
        "os.environ['PUBSUB_EMULATOR_HOST'] = '127.0.0.1:9'\n"
        "import pipelines.receive\n"
        "from pipelines.receiver.sinks import PubSubSink\n"
        "async def main():\n"
        "    sink = PubSubSink('projects/p/topics/t', 1.0, 0.01)\n"
        "    await sink.start()\n"
        "    await sink.close()\n"
        "pipelines.receive.event_loop_runner()(main())\n"
        "print(sorted(m for m in ('apache_beam', 'great_expectations', 'pandas') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "[]"
