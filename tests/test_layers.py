"""The data path's layers: what lies below the engines (the sounds of a speech, the presenter study, faces,
media, features) never imports an engine, so a live session or a tool can use them without loading one."""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "heygem"
# Below the engines: the engines build on these, never the other way round.
BELOW_ENGINES = ("speech", "faces", "media", "features.py", "study.py", "footage.py", "selection.py", "children.py",
                 "errors.py", "settings.py")


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_nothing_below_the_engines_imports_an_engine() -> None:
    files = [path for part in BELOW_ENGINES for path in
             ((PACKAGE / part).rglob("*.py") if (PACKAGE / part).is_dir() else [PACKAGE / part])]
    assert len(files) > 10 and PACKAGE / "speech" / "phones.py" in files
    offenders = {str(path.relative_to(REPO)): sorted(name for name in _imported_modules(path)
                                                     if name == "heygem.engines" or name.startswith("heygem.engines."))
                 for path in files}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_sounds_of_a_speech_live_in_one_package() -> None:
    assert not (PACKAGE / "phones.py").exists() and not (PACKAGE / "engines" / "drive.py").exists()
    users = [path for path in PACKAGE.rglob("*.py") if not path.is_relative_to(PACKAGE / "speech")]
    for path in users:
        for name in _imported_modules(path):
            assert name != "heygem.phones", path


def test_the_batch_studio_loads_no_webrtc_until_a_peer_connects() -> None:
    """Live presenters are an optional install (requirements-live.txt): the studio, its API and its page start
    without aiortc or PyAV loaded, and so does a live session until a peer connects to it."""
    import subprocess
    import sys

    program = ("import sys; import app; from heygem.server import create_app; from heygem.jobs import JobQueue; "
               "import tempfile, pathlib; queue = JobQueue(pathlib.Path(tempfile.mkdtemp()) / 'outputs', start=False); "
               "create_app(queue); import heygem.live.sessions, heygem.live.routes; queue.close(); "
               "print(sorted(name for name in ('aiortc', 'av', 'aioice') if name in sys.modules))")
    shown = subprocess.run([sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert shown.stdout.strip().splitlines()[-1] == "[]"
