#!/usr/bin/env bash
# Offline checks of the Docker stack (no Docker engine runs here): the
# compose file against the compose-spec JSON schema, every file it mounts
# or builds from exists, and the Dockerfile copies only what is in the repo.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v check-jsonschema >/dev/null 2>&1; then
    python3 -m pip install -q --disable-pip-version-check check-jsonschema
fi
check-jsonschema --builtin-schema vendor.compose-spec docker/compose.yaml
python3 - <<'PY'
import os, sys, yaml
compose = yaml.safe_load(open("docker/compose.yaml"))
base = "docker"
missing = []
for name, svc in compose["services"].items():
    build = svc.get("build")
    if build:
        ctx = os.path.normpath(os.path.join(base, build["context"]))
        if not os.path.exists(os.path.join(ctx, build["dockerfile"])):
            missing.append(f"{name}: dockerfile {build['dockerfile']}")
    for vol in svc.get("volumes", []):
        src = vol.split(":")[0]
        if src.startswith("."):
            if not os.path.exists(os.path.normpath(os.path.join(base, src))):
                missing.append(f"{name}: volume source {src}")
    if "healthcheck" not in svc and name not in ("generator",):
        missing.append(f"{name}: no healthcheck")
for line in open("docker/Dockerfile"):
    parts = line.split()
    if parts[:1] == ["COPY"] and not any(p.startswith("--from") for p in parts):
        for src in parts[1:-1]:
            if not os.path.exists(src):
                missing.append(f"Dockerfile: COPY {src}")
if missing:
    sys.exit("compose check failed:\n  " + "\n  ".join(missing))
print("compose check: services, build context, mounts and COPY sources are consistent")
PY
