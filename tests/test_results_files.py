"""Committed results name no path of the machine they were made on (commands use $CKS_DATA_DIR, relative runs/)."""
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ABSOLUTE = re.compile(r"(?:^|[\s\"'=:(,])(/(?:home|root|work|tmp|Users|usr|opt|mnt|var|private)/|[A-Za-z]:\\\\)")


def _strings(x):
    if isinstance(x, str):
        yield x
    elif isinstance(x, dict):
        for k, v in x.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(x, list):
        for v in x:
            yield from _strings(v)


def test_results_json_has_no_machine_paths():
    files = sorted((ROOT / "results").rglob("*.json"))
    assert files, "results/ holds the committed results"
    bad = []
    for f in files:
        for s in _strings(json.loads(f.read_text())):
            if ABSOLUTE.search(s):
                bad.append(f"{f.relative_to(ROOT)}: {s[:120]}")
    assert not bad, "absolute machine paths in results (use $CKS_DATA_DIR or relative paths):\n" + "\n".join(bad[:10])


def test_the_check_catches_a_machine_path():
    assert ABSOLUTE.search("python /home/me/venv/bin/python x.py") and ABSOLUTE.search('"/work/main/runs"')
    assert not ABSOLUTE.search("$CKS_DATA_DIR/usiigaci_nih3t3_phase/val") and not ABSOLUTE.search("runs/cks")
