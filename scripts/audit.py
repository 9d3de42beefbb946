"""The dependency audit behind `make audit` and the last stage of `make test`.

Runs pip-audit on the pinned runtime requirements against PyPI's advisory data and fails
on any known vulnerability not accepted below. A package the service cannot answer for
is *not* a pass: each is listed, and when the service answers for none of them (no route
to its per-version pages, as in some build sandboxes) the run says in capitals that no
audit took place. ``HERALD_AUDIT_STRICT=1`` turns that case into a failure (use it where
PyPI's JSON API is reachable, so a silent outage can never pass for a clean audit).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIP_AUDIT = Path(sys.executable).with_name("pip-audit")

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
    found = [(dep, vuln) for dep in dependencies for vuln in dep.get("vulns", [])]
    skipped = [dep for dep in dependencies if dep.get("skip_reason")]
    for dep, vuln in found:
        fixes = ", ".join(vuln.get("fix_versions", [])) or "no fixed release"
        print(f"VULNERABLE {dep['name']} {dep.get('version')}: {vuln['id']} (fixed in {fixes})")
    audited = len(dependencies) - len(skipped)
    print(f"audited {audited} of {len(dependencies)} packages; {len(found)} known vulnerabilities")
    if found:
        return 1
    if skipped and audited == 0:
        print(
            "NO DEPENDENCY AUDIT TOOK PLACE: PyPI's advisory service answered for none of the "
            f"{len(skipped)} packages ({skipped[0]['skip_reason']})."
        )
        return 1 if os.environ.get("HERALD_AUDIT_STRICT") == "1" else 0
    for dep in skipped:
        print(f"NOT AUDITED {dep['name']}: {dep['skip_reason']}")
    return 1 if skipped and os.environ.get("HERALD_AUDIT_STRICT") == "1" else 0


if __name__ == "__main__":
    sys.exit(main())
