"""The dependency audit behind `make audit` and the last stage of `make test`.

Runs pip-audit on the pinned runtime requirements (and what they pull in) against PyPI's
advisory data and fails on any known vulnerability not accepted below. Where PyPI's
per-version pages cannot be reached (a sandbox that mirrors only part of PyPI) pip-audit
skips every package; then each skipped package whose pinned version is its latest release
is audited from the project page, whose ``vulnerabilities`` are those of that release.
What neither can answer for is listed as ``NOT AUDITED`` — never counted as clean — and
``HERALD_AUDIT_STRICT=1`` makes any such package a failure.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIP_AUDIT = Path(sys.executable).with_name("pip-audit")

#: pip-audit's reason for a package it could not look up: "…: name (version)".
SKIPPED = re.compile(r"could not be audited: (?P<name>\S+) \((?P<version>[^)]+)\)")

#: Pins kept behind the latest release on purpose (PyPI then cannot audit them here).
PINNED_BEHIND: dict[str, str] = {
    "gunicorn": "26 and later dropped the eventlet worker Herald deploys with",
    "python-dateutil": "celery pins this exact release",
}

#: Accepted advisories: id → why (also listed in docs/OPERATIONS.md, "Dependency audit").
ACCEPTED: dict[str, str] = {}


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "audit.json"
        command = [str(PIP_AUDIT), "--progress-spinner", "off", "--vulnerability-service", "pypi"]
        command += ["-r", str(ROOT / "requirements.txt"), "-f", "json", "-o", str(report_path)]
        for advisory in ACCEPTED:
            command += ["--ignore-vuln", advisory]
        finished = subprocess.run(command, capture_output=True, text=True)
        if not report_path.exists():
            print(finished.stdout + finished.stderr, file=sys.stderr)
            print("pip-audit could not run (see above)", file=sys.stderr)
            return 1
        report = json.loads(report_path.read_text())
    dependencies = report.get("dependencies", [])
    found = [(dep["name"], dep.get("version"), vuln) for dep in dependencies for vuln in dep.get("vulns", [])]
    unanswered = [dep for dep in dependencies if dep.get("skip_reason")]
    not_audited = []
    for dep in unanswered:
        match = SKIPPED.search(dep["skip_reason"])
        answer = latest_release_advisories(match["name"], match["version"]) if match else None
        if answer is None:
            not_audited.append(f"{dep['name']}: {dep['skip_reason']}")
            continue
        version, advisories = answer
        if version != match["version"]:
            why = PINNED_BEHIND.get(dep["name"], "raise the pin, or audit where PyPI's JSON API answers")
            not_audited.append(f"{dep['name']} {match['version']}: PyPI answers only for its latest, {version} ({why})")
            continue
        found += [(dep["name"], version, vuln) for vuln in advisories if vuln["id"] not in ACCEPTED]
    for name, version, vuln in found:
        fixes = ", ".join(vuln.get("fix_versions") or vuln.get("fixed_in") or []) or "no fixed release"
        print(f"VULNERABLE {name} {version}: {vuln['id']} (fixed in {fixes})")
    for line in not_audited:
        print(f"NOT AUDITED {line}")
    audited = len(dependencies) - len(not_audited)
    print(f"audited {audited} of {len(dependencies)} packages; {len(found)} known vulnerabilities")
    if found:
        return 1
    if not_audited and audited == 0:
        print("NO DEPENDENCY AUDIT TOOK PLACE: PyPI's advisory data answered for none of the packages.")
    return 1 if not_audited and os.environ.get("HERALD_AUDIT_STRICT") == "1" else 0


def latest_release_advisories(name: str, version: str) -> tuple[str, list[dict]] | None:
    """The latest release of ``name`` and the advisories PyPI lists for it (None when the
    project page cannot be read)."""
    import requests

    try:
        response = requests.get(f"https://pypi.org/pypi/{name}/json", timeout=30)
        response.raise_for_status()
        body = response.json()
    except (requests.RequestException, ValueError):
        return None
    advisories = [vuln for vuln in body.get("vulnerabilities", []) if not vuln.get("withdrawn")]
    return str(body["info"]["version"]), advisories


if __name__ == "__main__":
    sys.exit(main())
