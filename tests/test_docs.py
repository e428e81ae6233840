"""What README.md and docs/report.md cite must be in the repository: a number that names a run
folder, file or command is checked against it by a reader, so a cited path that is missing (a run
whose outputs were not committed, a renamed script) fails here instead of in that reader's hands."""
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ("README.md", "docs/report.md")


def cited(pattern):
    """(document, path) for every path the documents cite that matches pattern."""
    out = set()
    for doc in DOCS:
        with open(os.path.join(ROOT, doc)) as fh:
            for path in re.findall(pattern, fh.read()):
                path = path.rstrip(".,;:)`'")
                if not re.search(r"[{}*<>]", path):   # a pattern (runs/train_seeds/seed_{s}), not a path
                    out.add((doc, path))
    return sorted(out)


RUN_PATHS = cited(r"\bruns/[A-Za-z0-9_./{}*<>-]*")
SCRIPTS = cited(r"\b(?:benchmarks/|experiments/|softglass/)?[a-z_]+\.py\b")


def test_the_documents_cite_runs_and_scripts():
    assert len(RUN_PATHS) > 10 and len(SCRIPTS) > 10      # the patterns still find them


def committed_files():
    """The files git tracks (a cited file must be committed, not just present in this checkout:
    an ignored model or event file exists here and is missing from every clone), or None
    outside a git checkout."""
    import subprocess
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return set(out.stdout.decode().split("\0")) - {""}


COMMITTED = committed_files()


@pytest.mark.parametrize("doc,path", RUN_PATHS, ids=[f"{d}:{p}" for d, p in RUN_PATHS])
def test_every_cited_run_output_exists(doc, path):
    assert os.path.exists(os.path.join(ROOT, path)), f"{doc} cites {path}, which is not here"
    if COMMITTED is not None:
        prefix = path.rstrip("/") + "/"
        assert path in COMMITTED or any(f.startswith(prefix) for f in COMMITTED), \
            f"{doc} cites {path}, which is here but not committed (git-ignored?)"


@pytest.mark.parametrize("doc,path", SCRIPTS, ids=[f"{d}:{p}" for d, p in SCRIPTS])
def test_every_cited_script_exists(doc, path):
    candidates = [path] + [os.path.join(folder, path)
                           for folder in ("tests", "benchmarks", "experiments", "softglass")]
    assert any(os.path.exists(os.path.join(ROOT, c)) for c in candidates), \
        f"{doc} cites {path}, which is not here"


def test_the_yield_tables_are_the_committed_runs():
    """The yield table and its paired differences (docs/report.md section 14.3, once README's first
    table) are experiments/which_indicator_finds_the_yield.py's output on the
    committed rearrangements.json files, word for word (line breaks aside): a number typed in, or
    left behind when a run is replaced, fails here."""
    from conftest import load_benchmark
    yt = load_benchmark("which_indicator_finds_the_yield")
    cwd = os.getcwd()
    try:
        os.chdir(ROOT)
        text = yt.main([])
    finally:
        os.chdir(cwd)
    with open(os.path.join(ROOT, "docs", "report.md")) as fh:
        report = " ".join(fh.read().split())
    assert text.count("\n|---|") == 2 and "0.888 [0.855, 0.921]" in text   # both tables, read
    for block in text.split("\n\n"):
        assert " ".join(block.split()) in report, f"docs/report.md lacks, as printed:\n{block}"


def test_the_yield_table_names_a_missing_run_file(tmp_path):
    from conftest import load_benchmark
    yt = load_benchmark("which_indicator_finds_the_yield")
    missing = str(tmp_path / "gone.json")
    with pytest.raises(SystemExit, match="gone.json: not a readable rearrangements.json"):
        yt.main([f"--RUNS=a={missing}"])
    with pytest.raises(SystemExit, match="is not name=path"):
        yt.main([f"--RUNS={missing}"])


def test_the_readme_is_short_and_its_first_screen_has_the_headline():
    """README.md is the first screen and a map (at most 1,500 words); the rest is docs/report.md.
    Its first 60 lines hold the seed's R and how to predict on one's own glass."""
    with open(os.path.join(ROOT, "README.md")) as fh:
        text = fh.read()
    assert len(text.split()) <= 1500, f"README.md has {len(text.split())} words"
    first = "\n".join(text.splitlines()[:60])
    assert "0.7482" in first and "predict.py" in first
