#!/usr/bin/env bash
# Validates the Helm chart in helm/flexdrive without a cluster or a helm binary:
#
#   helm/validate.sh
#
# Makes (or reuses) a virtualenv, ${HELM_VENV:-.venv-helm} in the repository
# root, and installs two pinned PyPI packages into it when missing:
#   helm-python-sdk      Helm's own engine (lint, template) as a library
#   kubernetes-validate  the Kubernetes OpenAPI schemas and a strict validator
# Then runs helm/validate.py: for the default values and values-production.yaml,
# `helm lint --strict`, `helm template`, every rendered manifest against the
# schemas of each Kubernetes version in KUBE_VERSIONS (default "1.27.0 1.34.0":
# the chart's oldest supported and a current one) with unknown fields refused,
# and the cross-object wiring (selectors, ports, flags, probes, secrets).
# One line per check, then `N passed, M failed, K skipped`; exit 1 on any failure.
# Only PyPI is contacted (by pip, on the first run).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${HELM_VENV:-.venv-helm}
case $VENV in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
PYTHON=${PYTHON:-python3}

HELM_PYTHON_SDK_VERSION=0.2.2
KUBERNETES_VALIDATE_VERSION=1.37.0

if [ ! -x "$VENV/bin/python" ]; then
    echo "validate: making virtualenv $VENV"
    if ! "$PYTHON" -m venv "$VENV"; then
        echo "validate: '$PYTHON -m venv' failed (on Debian: apt-get install python3-venv)" >&2
        exit 1
    fi
fi

installed() {
    "$VENV/bin/python" - "$HELM_PYTHON_SDK_VERSION" "$KUBERNETES_VALIDATE_VERSION" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
sys.exit(0 if version("helm-python-sdk") == sys.argv[1]
         and version("kubernetes-validate") == sys.argv[2] else 1)
PY
}

if ! installed; then
    echo "validate: installing helm-python-sdk==$HELM_PYTHON_SDK_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        "helm-python-sdk==$HELM_PYTHON_SDK_VERSION" \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi

exec "$VENV/bin/python" "$ROOT/helm/validate.py" "$@"
