"""Make ``ansible_collections.borgstack.stack`` importable from the checkout (collections/ holds a symlink), and fail
the run when a test file on disk is not collected (a ``norecursedirs`` pattern or a typo that hides it)."""
from __future__ import annotations

import fnmatch
import sys
from pathlib import Path
from typing import List

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "collections"))
# Shared helpers of the integration tests (ansible_module_runner).
sys.path.insert(0, str(ROOT / "tests" / "integration"))

# The test trees whose every test_*.py must be collected when a run covers them.
GUARDED = (ROOT / "tests" / "unit", ROOT / "tests" / "integration")
_VISITED = pytest.StashKey[set]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_VISITED] = set()


def pytest_collectstart(collector: pytest.Collector) -> None:
    if isinstance(collector, pytest.Module):
        collector.config.stash[_VISITED].add(collector.path.resolve())


def _under(path: Path, roots: List[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def uncollected_test_files(config: pytest.Config) -> List[Path]:
    """The test_*.py files of GUARDED inside the run's arguments (minus --ignore, --ignore-glob) that pytest never
    visited. Empty with --lf, which skips files on purpose."""
    if config.getoption("lf", False):
        return []
    here = config.invocation_params.dir
    args = [(here / str(arg).split("::", 1)[0]).resolve() for arg in config.args]
    ignored = [(here / path).resolve() for path in config.getoption("ignore", None) or []]
    globs = config.getoption("ignore_glob", None) or []
    on_disk = sorted(path.resolve() for tree in GUARDED for path in tree.rglob("test_*.py")
                     if "__pycache__" not in path.parts)
    return [path for path in on_disk
            if _under(path, args) and not _under(path, ignored)
            and not any(fnmatch.fnmatch(str(path), pattern) for pattern in globs)
            and path not in config.stash[_VISITED]]


class UncollectedTestFiles(pytest.Item):
    """A failing item standing for the test files pytest did not collect (names them, relative to the checkout)."""

    def __init__(self, *, missing: List[Path], **kwargs) -> None:
        super().__init__(**kwargs)
        self.missing = missing

    def runtest(self) -> None:
        names = ", ".join(str(path.relative_to(ROOT)) for path in self.missing)
        raise pytest.fail.Exception(
            f"test file(s) on disk that pytest did not collect: {names}. Check norecursedirs in pytest.ini (it "
            f"matches every directory's base name) and the file's location", pytrace=False)

    def reportinfo(self):
        return self.path, None, self.name


@pytest.hookimpl(trylast=True)  # after -k/-m deselection, so the guard is never deselected
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: List[pytest.Item]) -> None:
    missing = uncollected_test_files(config)
    if missing:
        items.append(UncollectedTestFiles.from_parent(session, name="uncollected-test-files", missing=missing))
