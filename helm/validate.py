"""Checks the Flexdrive Helm chart without a cluster; run through helm/validate.sh.

For each values set (the chart's defaults, values-production.yaml):
  - `helm lint --strict` through Helm's own engine (helm-python-sdk), against
    the oldest Kubernetes version the chart supports;
  - `helm template` (render) through the same engine;
  - every rendered manifest against the Kubernetes OpenAPI schemas of each
    pinned Kubernetes version with kubernetes-validate in strict mode (unknown
    fields fail). Kinds that are not part of Kubernetes (the Prometheus
    Operator's ServiceMonitor) have no schema there and are skipped, by name;
  - the wiring the schemas cannot see: every Service, PodDisruptionBudget,
    HorizontalPodAutoscaler, Ingress and ServiceMonitor points at something
    the release renders, the flags of each role match the contract (admin
    port, seeds = the storage headless Service, advertise address), probes hit
    the admin port, the headless Service publishes not-ready addresses.
Then a few values that must be refused (fewer than 3 storage nodes, half of
the root credentials, a short cluster secret) must fail to render.

Prints one line per check and ends with `N passed, M failed, K skipped`;
exits 1 when anything failed.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

import helm_python as helm
import kubernetes_validate
import yaml

CHART = Path(__file__).resolve().parent / "flexdrive"
RELEASE = "flexdrive"
NAMESPACE = "flexdrive"
# Oldest supported (Chart.yaml kubeVersion) and a current release.
KUBE_VERSIONS = os.environ.get("KUBE_VERSIONS", "1.27.0 1.34.0").split()
# Kinds kubernetes-validate has no schema for: skipped, and said so.
NO_SCHEMA = {("monitoring.coreos.com/v1", "ServiceMonitor")}
ADMIN_PORT = 9400


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0
        self.skipped = 0

    def check(self, name: str, fn: Callable[[], Any]) -> Any:
        """Runs fn; an exception (or AssertionError) is a failure."""
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported
            self.failed += 1
            msg = str(e).strip().splitlines() or [type(e).__name__]
            print(f"FAIL  {name}: {msg[0]}")
            for line in msg[1:12]:
                print(f"        {line}")
            return None
        self.passed += 1
        print(f"ok    {name}")
        return result

    def skip(self, name: str, why: str) -> None:
        self.skipped += 1
        print(f"skip  {name}: {why}")


# The branches neither values file takes: existing Secrets, a LoadBalancer
# with a fixed nodePort, memory-only autoscaling, no anti-affinity, a fixed
# zone, pod annotations for Prometheus, an Ingress without TLS.
OPTIONS: dict[str, Any] = {
    "fullnameOverride": "s3",
    "image": {"digest": "sha256:" + "0" * 64},
    "logLevel": "debug",
    "legacyPeers": True,
    "auth": {
        "existingClusterSecret": "ops-cluster-secret",
        "adminToken": "an-admin-token-given-as-a-value",
        "existingRootCredentialsSecret": "ops-root-keys",
        "keepOnUninstall": False,
    },
    "serviceAccount": {"create": False, "name": "flexdrive-sa"},
    "storage": {
        "replicas": 4,
        "zone": "rack-a",
        "capacity": "107374182400",
        "persistence": {"storageClass": "-", "annotations": {"backup": "daily"}},
        "podAntiAffinity": "none",
        "zoneSpread": {"enabled": False},
        "topologySpreadConstraints": [
            {"maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "storage"}}}
        ],
        "extraEnv": [{"name": "RUST_BACKTRACE", "value": "1"}],
        "tolerations": [{"key": "storage", "operator": "Exists", "effect": "NoSchedule"}],
        "nodeSelector": {"disk": "ssd"},
        "pdb": {"enabled": False},
    },
    "gateway": {
        "chunkSize": "4194304",
        "extraArgs": ["--region=eu-central-1"],
        "domains": ["s3.internal", "objects.internal"],
        "podAntiAffinity": "hard",
        "autoscaling": {"enabled": True, "targetCPUUtilizationPercentage": "", "targetMemoryUtilizationPercentage": 80},
    },
    "service": {"type": "LoadBalancer", "nodePort": 30900, "externalTrafficPolicy": "Local",
                "loadBalancerSourceRanges": ["203.0.113.0/24"], "annotations": {"lb": "internal"}},
    "adminService": {"enabled": False},
    "ingress": {"enabled": True, "hosts": ["s3.internal"]},
    "metrics": {"podAnnotations": True},
}


def load_values(file: str | dict[str, Any] | None) -> dict[str, Any]:
    if file is None:
        return {}
    if isinstance(file, dict):
        return file
    return helm.values_from_yaml((CHART / file).read_text())


def lint(values: dict[str, Any]) -> None:
    report = helm.lint(
        str(CHART),
        values,
        strict=True,
        namespace=NAMESPACE,
        kube_version="v" + KUBE_VERSIONS[0],
    )
    # Severity 1 is INFO (e.g. "icon is recommended"); 2 WARNING, 3 ERROR.
    problems = [
        f"[{m.get('severity')}] {m.get('path')}: {m.get('error')}"
        for m in report.get("messages", [])
        if int(m.get("severity", 0)) >= 2
    ]
    problems += [str(e) for e in report.get("errors", []) if str(e) not in "\n".join(problems)]
    if problems:
        raise AssertionError(f"{len(problems)} lint finding(s)\n" + "\n".join(problems))


def render(values: dict[str, Any]) -> dict[str, str]:
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def documents(rendered: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(rendered):
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(rendered[path]):
            if doc:
                docs.append((path.split("/templates/")[-1], doc))
    return docs


def validate(doc: dict[str, Any], version: str) -> None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        where = ".".join(str(p) for p in e.path) or "(top)"
        raise AssertionError(f"{where}: {e.message}") from None
    except kubernetes_validate.SchemaNotFoundError as e:
        raise AssertionError(e.message) from None


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def wiring(docs: list[dict[str, Any]], values_name: str, values: dict[str, Any], report: Report) -> None:
    """Cross-object checks that schema validation cannot make."""
    auth = values.get("auth", {})
    existing = {auth.get(k) for k in ("existingClusterSecret", "existingAdminTokenSecret",
                                      "existingRootCredentialsSecret")} - {None, ""}
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    workloads = by_kind.get("StatefulSet", []) + by_kind.get("Deployment", [])
    pod_labels = [w["spec"]["template"]["metadata"]["labels"] for w in workloads]
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    prefix = f"{values_name}: "

    def one(kind: str) -> dict[str, Any]:
        found = by_kind.get(kind, [])
        assert len(found) == 1, f"expected one {kind}, found {len(found)}"
        return found[0]

    def workload_selectors_match() -> None:
        for w in workloads:
            sel = w["spec"]["selector"]["matchLabels"]
            assert matches(sel, w["spec"]["template"]["metadata"]["labels"]), (
                f"{w['kind']}/{w['metadata']['name']}: selector does not match its pod labels"
            )

    report.check(prefix + "workload selectors match their pod templates", workload_selectors_match)

    for svc in by_kind.get("Service", []):
        name = svc["metadata"]["name"]

        def service_selects(svc: dict[str, Any] = svc) -> None:
            sel = svc["spec"].get("selector", {})
            assert any(matches(sel, labels) for labels in pod_labels), f"selector {sel} matches no pod"
            for port in svc["spec"]["ports"]:
                target = port.get("targetPort")
                pods = [w for w, labels in zip(workloads, pod_labels) if matches(sel, labels)]
                for w in pods:
                    ports = {
                        p.get("name")
                        for c in w["spec"]["template"]["spec"]["containers"]
                        for p in c.get("ports", [])
                    }
                    assert target in ports, (
                        f"port {port['name']}: targetPort {target} is not a port of {w['metadata']['name']}"
                    )

        report.check(prefix + f"Service/{name} selects pods that have its ports", service_selects)

    for pdb in by_kind.get("PodDisruptionBudget", []):

        def pdb_selects(pdb: dict[str, Any] = pdb) -> None:
            sel = pdb["spec"]["selector"]["matchLabels"]
            assert any(matches(sel, labels) for labels in pod_labels), f"selector {sel} matches no pod"
            assert pdb["spec"].get("maxUnavailable") == 1, "maxUnavailable is not 1"

        report.check(prefix + f"PodDisruptionBudget/{pdb['metadata']['name']} selects pods, maxUnavailable 1", pdb_selects)

    for hpa in by_kind.get("HorizontalPodAutoscaler", []):

        def hpa_target(hpa: dict[str, Any] = hpa) -> None:
            ref = hpa["spec"]["scaleTargetRef"]
            assert (ref["kind"], ref["name"]) in names, f"scale target {ref['kind']}/{ref['name']} not rendered"
            dep = next(d for d in docs if d["kind"] == ref["kind"] and d["metadata"]["name"] == ref["name"])
            assert "replicas" not in dep["spec"], "the Deployment sets replicas although the HPA owns them"

        report.check(prefix + f"HorizontalPodAutoscaler/{hpa['metadata']['name']} targets the gateways", hpa_target)

    for ing in by_kind.get("Ingress", []):

        def ingress_backends(ing: dict[str, Any] = ing) -> None:
            for rule in ing["spec"]["rules"]:
                for p in rule["http"]["paths"]:
                    svc = p["backend"]["service"]
                    assert ("Service", svc["name"]) in names, f"backend Service {svc['name']} not rendered"
                    target = next(d for d in by_kind["Service"] if d["metadata"]["name"] == svc["name"])
                    assert svc["port"]["name"] in {q["name"] for q in target["spec"]["ports"]}, (
                        f"Service {svc['name']} has no port {svc['port']['name']}"
                    )

        report.check(prefix + f"Ingress/{ing['metadata']['name']} routes to the S3 Service", ingress_backends)

    for sm in by_kind.get("ServiceMonitor", []):

        def servicemonitor_selects(sm: dict[str, Any] = sm) -> None:
            sel = sm["spec"]["selector"]["matchLabels"]
            targets = [s for s in by_kind.get("Service", []) if matches(sel, s["metadata"].get("labels", {}))]
            assert targets, f"selector {sel} matches no Service"
            for ep in sm["spec"]["endpoints"]:
                assert ep["path"] == "/metrics", f"endpoint path {ep['path']}"
                for s in targets:
                    assert ep["port"] in {p["name"] for p in s["spec"]["ports"]}, f"{s['metadata']['name']} has no port {ep['port']}"
                    sel_pods = [l for l in pod_labels if matches(s["spec"]["selector"], l)]
                    assert len(sel_pods) == len(workloads), "the metrics Service does not cover every workload"

        report.check(prefix + f"ServiceMonitor/{sm['metadata']['name']} selects the metrics Service of every pod", servicemonitor_selects)

    def roles_follow_the_contract() -> None:
        sts = one("StatefulSet")
        headless = next(
            s for s in by_kind["Service"] if s["metadata"]["name"] == sts["spec"]["serviceName"]
        )
        assert headless["spec"].get("clusterIP") == "None", "storage Service is not headless"
        assert headless["spec"].get("publishNotReadyAddresses") is True, "headless Service does not publish not-ready addresses"
        assert {(p["port"], p["protocol"]) for p in headless["spec"]["ports"]} >= {(9300, "UDP"), (9200, "TCP")}, (
            "headless Service lacks UDP 9300 or TCP 9200"
        )
        assert sts["spec"].get("podManagementPolicy") == "Parallel", "podManagementPolicy is not Parallel"
        assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data", "no data volumeClaimTemplate"
        seeds = f"--seeds={headless['metadata']['name']}.{NAMESPACE}.svc.cluster.local:9300"
        for w in workloads:
            role = "storage" if w["kind"] == "StatefulSet" else "gateway"
            spec = w["spec"]["template"]["spec"]
            c = next(c for c in spec["containers"] if c["name"] == role)
            args = c["args"]
            assert args[0] == role, f"{role}: first argument is {args[0]}"
            for flag in (f"--admin-addr=0.0.0.0:{ADMIN_PORT}", "--gossip-addr=0.0.0.0:9300",
                         "--advertise-addr=$(POD_IP):9300", seeds):
                assert flag in args, f"{role}: missing {flag}"
            if role == "storage":
                assert "--data-dir=/data" in args and "--http-addr=0.0.0.0:9200" in args, "storage: data dir / http addr"
                assert any(m["mountPath"] == "/data" and m["name"] == "data" for m in c["volumeMounts"]), "storage: /data not mounted"
            else:
                assert "--s3-addr=0.0.0.0:9000" in args, "gateway: --s3-addr"
            env = {e["name"] for e in c["env"]}
            need = {"POD_IP", "FLEXDRIVE_CLUSTER_SECRET", "FLEXDRIVE_ADMIN_TOKEN"}
            if role == "gateway":
                need |= {"FLEXDRIVE_ROOT_ACCESS_KEY", "FLEXDRIVE_ROOT_SECRET_KEY"}
            assert need <= env, f"{role}: missing env {sorted(need - env)}"
            # Upgrading from 0.1 is the only reason for legacy gossip: every
            # pod has it then, or none.
            legacy = [e.get("value") for e in c["env"] if e["name"] == "FLEXDRIVE_LEGACY_PEERS"]
            want = ["true"] if values.get("legacyPeers") else []
            assert legacy == want, f"{role}: FLEXDRIVE_LEGACY_PEERS is {legacy}, values say {want}"
            admin = {p["name"]: p for p in c["ports"]}.get("admin")
            assert admin and admin["containerPort"] == ADMIN_PORT, f"{role}: no admin port {ADMIN_PORT}"
            assert c["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "admin"}, f"{role}: readiness probe"
            assert c["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "admin"}, f"{role}: liveness probe"
            sc = c["securityContext"]
            assert sc.get("readOnlyRootFilesystem") and sc.get("allowPrivilegeEscalation") is False, f"{role}: securityContext"
            assert spec["securityContext"].get("runAsNonRoot") and spec["securityContext"].get("runAsUser") == 10001, f"{role}: not uid 10001"
            for ref in (e["valueFrom"]["secretKeyRef"] for e in c["env"] if "secretKeyRef" in e.get("valueFrom", {})):
                if ref["name"] in existing:
                    continue
                assert ("Secret", ref["name"]) in names, f"{role}: Secret {ref['name']} is not rendered"
                secret = next(d for d in by_kind["Secret"] if d["metadata"]["name"] == ref["name"])
                assert ref["key"] in secret.get("data", {}), f"Secret {ref['name']} has no key {ref['key']}"

    report.check(prefix + "roles follow the contract (flags, env, ports, probes, seeds, security)", roles_follow_the_contract)


def expect_render_failure(values: dict[str, Any], needle: str) -> None:
    try:
        render(values)
    except helm.HelmError as e:
        assert needle in str(e), f"failed, but not with {needle!r}: {e}"
        return
    raise AssertionError("rendered, but should have been refused")


def main() -> int:
    report = Report()
    print(f"helm engine {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__}), "
          f"kubernetes-validate {kubernetes_validate.__version__ if hasattr(kubernetes_validate, '__version__') else ''}, "
          f"Kubernetes {', '.join(KUBE_VERSIONS)}")
    for values_name, file in (("defaults", None), ("production", "values-production.yaml"), ("options", OPTIONS)):
        values = report.check(f"{values_name}: read values", lambda f=file: load_values(f))
        if values is None:
            continue
        report.check(f"{values_name}: helm lint --strict (Kubernetes {KUBE_VERSIONS[0]})", lambda v=values: lint(v))
        rendered = report.check(f"{values_name}: helm template", lambda v=values: render(v))
        if rendered is None:
            continue

        def notes(r: dict[str, str] = rendered) -> None:
            text = next((t for p, t in r.items() if p.endswith("NOTES.txt")), "")
            assert "base64 -d" in text and "port-forward" in text, "NOTES.txt lacks the credentials or port-forward"

        report.check(f"{values_name}: NOTES.txt tells how to get credentials and connect", notes)
        docs = report.check(f"{values_name}: rendered manifests parse as YAML", lambda r=rendered: documents(r))
        if docs is None:
            continue
        for path, doc in docs:
            kind, api = doc.get("kind"), doc.get("apiVersion")
            what = f"{kind}/{doc.get('metadata', {}).get('name')} ({path})"
            if (api, kind) in NO_SCHEMA:
                report.skip(f"{values_name}: {what}", f"no schema for {api} {kind} in kubernetes-validate (a CRD)")
                continue
            for version in KUBE_VERSIONS:
                report.check(f"{values_name}: {what} valid for Kubernetes {version} (strict)",
                             lambda d=doc, v=version: validate(d, v))
        wiring([d for _, d in docs], values_name, values, report)

    refusals = [
        ("2 storage nodes", {"storage": {"replicas": 2}}, "at least 3"),
        ("half of the root credentials", {"auth": {"rootAccessKey": "FDONLYHALF"}}, "both"),
        ("a cluster secret under 16 characters", {"auth": {"clusterSecret": "short"}}, "16 characters"),
        ("an unknown podAntiAffinity", {"storage": {"podAntiAffinity": "maybe"}}, "soft, hard or none"),
    ]
    for what, values, needle in refusals:
        report.check(f"refuses {what}", lambda v=values, n=needle: expect_render_failure(v, n))

    print(f"{report.passed} passed, {report.failed} failed, {report.skipped} skipped")
    return 1 if report.failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        print("0 passed, 1 failed")
        sys.exit(1)
