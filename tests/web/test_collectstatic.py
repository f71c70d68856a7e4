"""``aiosite collectstatic``: plain and hashed copies, the manifest, stylesheet references
rewritten to hashed names, incremental runs, --clear and the folders it refuses."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_runner import Result, aiosite_process, invoke, one_line_error
from tests.conftest import ProjectFactory

LOGO = b"\x89PNG fake image bytes"
FILES = {
    "PKG/static/site.css": (
        '@import "home/base.css";\n'
        "body { background: url(img/bg.png?v=2#top); }\n"
        ".logo { background: url('home/img/logo.png'); }\n"
        ".font { src: url(\"fonts/a.woff2\") format('woff2'); }\n"
        ".ext { background: url(https://cdn.example.com/x.png); }\n"
        ".data { background: url(data:image/png;base64,AAAA); }\n"
        ".abs { background: url(/static/img/bg.png); }\n"
        ".proto { background: url(//cdn.example.com/y.png); }\n"
        ".frag { filter: url(#blur); }\n"
        "/* url(commented/out.png) is no reference */\n"
        ".gone { background: url(img/missing.png); }\n"
    ),
    "PKG/static/img/bg.png": "background",
    "PKG/static/fonts/a.woff2": "font",
    "PKG/static/robots.txt": "User-agent: *\n",
    "PKG/home/static/home/base.css": "h1 { background: url(../home/img/logo.png); }\n",
    "PKG/home/static/home/deep/nested.css": (
        ".n { background: url(../img/logo.png); }\n.m { background: url(../../img/bg.png); }\n"
    ),
    "PKG/home/static/home/override.txt": "from the app",
    "PKG/static/home/override.txt": "from the project",
    "PKG/home/static/home/.hidden": "hidden",
}


def _digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()[:12]


def _project(make_project: ProjectFactory, **kwargs: object) -> Path:
    root = make_project(FILES, **kwargs)
    (next(root.glob("proj_*/home/static/home")) / "img").mkdir()
    (next(root.glob("proj_*/home/static/home/img")) / "logo.png").write_bytes(LOGO)
    return root


def _collect(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> Result:
    return invoke(capsys, ["--project", str(root), "--env", "test", "collectstatic", *args])


def _manifest(root: Path) -> dict[str, str]:
    document = json.loads((root / "static_root/staticfiles.json").read_text())
    assert document["version"] == 1
    paths: dict[str, str] = document["paths"]
    return paths


def _mtimes(folder: Path) -> dict[str, int]:
    return {
        str(path.relative_to(folder)): path.stat().st_mtime_ns
        for path in folder.rglob("*")
        if path.is_file()
    }


def test_copies_plain_and_hashed_names_and_writes_the_manifest(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _project(make_project)
    result = _collect(capsys, root)
    assert result.code == 0, result
    out = root / "static_root"
    manifest = _manifest(root)
    assert set(manifest) == {
        "site.css",
        "img/bg.png",
        "fonts/a.woff2",
        "robots.txt",
        "home/base.css",
        "home/deep/nested.css",
        "home/override.txt",
        "home/site.css",
        "home/img/logo.png",
    }
    # Non-stylesheets: the hash of their content, before the extension.
    assert manifest["home/img/logo.png"] == f"home/img/logo.{_digest(LOGO)}.png"
    assert (out / manifest["home/img/logo.png"]).read_bytes() == LOGO
    assert (out / "home/img/logo.png").read_bytes() == LOGO
    # The project overrides the app, for the copy and for its hash.
    assert (out / "home/override.txt").read_text() == "from the project"
    assert manifest["home/override.txt"] == f"home/override.{_digest(b'from the project')}.txt"
    assert not (out / "home/.hidden").exists()
    assert "collected 9 files (0 unchanged) into static_root/ in " in result.out
    # Stylesheets: the hash of what is served under the hashed name, the rewritten text.
    for plain, hashed in manifest.items():
        assert hashed.rsplit(".", 2)[1] == _digest((out / hashed).read_bytes())
        assert (out / plain).is_file()


def test_stylesheet_references_are_rewritten_to_hashed_names(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _project(make_project)
    result = _collect(capsys, root)
    out = root / "static_root"
    manifest = _manifest(root)
    site = (out / manifest["site.css"]).read_text()
    bg, logo, font = (
        manifest["img/bg.png"].rsplit("/")[-1],
        manifest["home/img/logo.png"],
        manifest["fonts/a.woff2"],
    )
    base = manifest["home/base.css"]
    assert f'@import "{base}";' in site
    assert f"url(img/{bg}?v=2#top)" in site  # query and fragment kept
    assert f"url('{logo}')" in site  # quotes kept
    assert f'url("{font}")' in site
    for untouched in (
        "url(https://cdn.example.com/x.png)",
        "url(data:image/png;base64,AAAA)",
        "url(/static/img/bg.png)",
        "url(//cdn.example.com/y.png)",
        "url(#blur)",
        "url(commented/out.png)",
        "url(img/missing.png)",
    ):
        assert untouched in site
    # Relative to the stylesheet's own folder, ../ included.
    logo_name = logo.rsplit("/")[-1]
    assert (out / base).read_text() == f"h1 {{ background: url(../home/img/{logo_name}); }}\n"
    nested = (out / manifest["home/deep/nested.css"]).read_text()
    assert f"url(../img/{logo_name})" in nested
    assert f"url(../../img/{bg})" in nested
    # The plain copy is the file as written.
    assert (out / "site.css").read_text() == FILES["PKG/static/site.css"]
    # A missing file is a warning naming the stylesheet and line; the rest is collected.
    assert result.code == 0
    site_css = next(root.glob("proj_*/static/site.css")).relative_to(root)
    assert f"warning: {site_css}:11: url(img/missing.png) names no static file" in result.err


def test_second_run_rewrites_nothing_and_a_change_is_rehashed(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _project(make_project)
    assert _collect(capsys, root).code == 0
    out = root / "static_root"
    before = _mtimes(out)
    first = _manifest(root)
    again = _collect(capsys, root)
    assert "collected 9 files (9 unchanged)" in again.out
    assert _mtimes(out) == before

    # A changed image: a new hashed name for it, and for each stylesheet that uses it,
    # also through an @import; the old hashed copies stay for pages still cached.
    logo = next(root.glob("proj_*/home/static/home/img/logo.png"))
    logo.write_bytes(LOGO + b" v2")
    changed = _collect(capsys, root)
    assert "collected 9 files (5 unchanged)" in changed.out, changed.out
    second = _manifest(root)
    assert {p for p in first if first[p] != second[p]} == {
        "home/img/logo.png",
        "home/base.css",
        "home/deep/nested.css",
        "site.css",
    }
    assert (out / first["home/img/logo.png"]).read_bytes() == LOGO
    assert (out / second["home/img/logo.png"]).read_bytes() == LOGO + b" v2"
    assert second["home/base.css"].split("/")[-1] in (out / second["site.css"]).read_text()
    unchanged = _mtimes(out)
    assert unchanged[first["robots.txt"]] == before[first["robots.txt"]]


def test_clear_removes_files_no_longer_used(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _project(make_project)
    assert _collect(capsys, root).code == 0
    out = root / "static_root"
    robots = _manifest(root)["robots.txt"]
    next(root.glob("proj_*/static/robots.txt")).unlink()
    assert _collect(capsys, root).code == 0
    assert (out / robots).exists()  # kept: a cached page may still ask for it
    quiet = _collect(capsys, root, "--clear", "--quiet")
    assert (quiet.code, quiet.out) == (0, "")  # warnings only
    assert quiet.err.count("warning:") == 1
    assert not (out / robots).exists()
    assert not (out / "robots.txt").exists()
    assert "robots.txt" not in _manifest(root)
    assert (out / "site.css").exists()


@pytest.mark.parametrize(
    ("root_setting", "said"),
    [
        (".", "the project directory"),
        ("..", "above the project"),
        ("PKG/static", "static folder"),
        ("PKG/static/out", "static folder"),
        ("PKG", "static folder"),
    ],
)
@pytest.mark.parametrize("clear", [True, False])
def test_refuses_roots_that_hold_the_project_or_its_sources(
    make_project: ProjectFactory,
    capsys: pytest.CaptureFixture[str],
    root_setting: str,
    said: str,
    clear: bool,
) -> None:
    root = make_project(
        {"PKG/static/site.css": "body {}"}, env_yaml={"test": f"static:\n  root: {root_setting}\n"}
    )
    result = _collect(capsys, root, *(["--clear"] if clear else []))
    line = one_line_error(result, "static.root:", said, "set static.root to a folder of its own")
    assert ("--clear would delete" in line) is clear
    assert next(root.glob("proj_*/static/site.css")).read_text() == "body {}"
    assert not list(root.rglob("staticfiles.json"))


def test_stylesheets_importing_each_other_in_a_cycle(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(
        {
            "PKG/static/a.css": '@import "b.css";\n',
            "PKG/static/b.css": '@import url("a.css");\n',
            "PKG/static/c.css": '@import "a.css";\n',
        }
    )
    result = _collect(capsys, root)
    assert result.code == 0
    assert "stylesheets reference each other in a cycle" in result.err
    manifest = _manifest(root)
    out = root / "static_root"
    # One side of the cycle keeps the plain name; everything else is hashed.
    texts = [(out / manifest[name]).read_text() for name in ("a.css", "b.css")]
    assert sum(manifest[n] in t for n, t in (("b.css", texts[0]), ("a.css", texts[1]))) == 1
    assert f'@import "{manifest["a.css"]}";' in (out / manifest["c.css"]).read_text()


@pytest.mark.e2e
def test_collectstatic_in_a_subprocess(make_project: ProjectFactory) -> None:
    root = _project(make_project)
    done = aiosite_process(root, "collectstatic")
    assert done.returncode == 0, done.stderr
    # Not a terminal: no progress bar, only the summary.
    assert done.stdout.startswith("collected 9 files (0 unchanged) into static_root/ in ")
    assert len(done.stdout.splitlines()) == 1
    assert "names no static file" in done.stderr
    assert os.path.isfile(root / "static_root/staticfiles.json")


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("umask_022")
def test_collected_files_are_readable_by_the_web_server(
    make_project: ProjectFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """nginx (www-data) and the service user read static_root: files get 0o666 less the
    umask, not the 0600 of a temporary file; a later run repairs files left 0600."""
    root = _project(make_project)
    assert _collect(capsys, root).code == 0
    out = root / "static_root"

    def modes() -> dict[str, int]:
        return {
            str(path.relative_to(out)): stat.S_IMODE(path.stat().st_mode)
            for path in out.rglob("*")
            if path.is_file()
        }

    written = modes()
    assert "staticfiles.json" in written
    assert len(written) == 19  # 9 plain, 9 hashed, the manifest
    assert set(written.values()) == {0o644}, written

    # As an earlier version left them: an unchanged run still makes them readable.
    for name in ("staticfiles.json", "robots.txt", _manifest(root)["site.css"]):
        (out / name).chmod(0o600)
    again = _collect(capsys, root)
    assert "collected 9 files (9 unchanged)" in again.out
    assert set(modes().values()) == {0o644}
