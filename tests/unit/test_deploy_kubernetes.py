"""deploy/kubernetes/: what `kubectl kustomize` builds from the base and each overlay is valid Kubernetes 1.31 and
keeps the properties the deployment relies on (probes, non-root, referenced secrets, rendered Envoy config,
Services that select pods).

No cluster here: nothing is applied and no probe runs; see deploy/kubernetes/README.md for what that leaves.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support.envoy_configs import load_render_deploy

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
ISTIO = ROOT / "deploy" / "istio"
BUILDS = {
    "base": K8S / "base",
    "standalone-envoy": K8S / "overlays" / "standalone-envoy",
    "istio": K8S / "overlays" / "istio",
}
KUBERNETES_VERSION = "1.31.0"  # the oldest release we claim to support; schemas ship with kubernetes-validate
# Istio CRDs: kubernetes-validate has no schema for them. Skipped by (apiVersion group, kind), and only these.
SKIPPED_KINDS = {
    ("networking.istio.io", "DestinationRule"),
    ("networking.istio.io", "EnvoyFilter"),
    ("networking.istio.io", "Gateway"),
    ("networking.istio.io", "ServiceEntry"),
    ("networking.istio.io", "VirtualService"),
}
# Files in deploy/istio/ that are patches of Istio's own gateway Deployment, not resources to apply.
ISTIO_PATCH_FILES: set[str] = set()
SECRET_ENV = {"DATABASE_URL": "database-url", "POOLER_SECRET_KEYS": "secret-keys", "POOLER_KEY_PEPPER": "key-pepper"}
# Jobs run to completion and serve nothing: readiness has no meaning there.
NO_READINESS_KINDS = {"Job"}
# Every in-cluster Envoy target has a Service in the base (none exempt).
ENVOY_TARGETS_WITHOUT_SERVICE: set[str] = set()


def kubectl() -> str:
    found = shutil.which("kubectl") or ("/usr/bin/kubectl" if Path("/usr/bin/kubectl").exists() else None)
    if found is None:
        pytest.fail("kubectl is not installed: these tests build the manifests with `kubectl kustomize`")
    return found


def kustomize(path: Path) -> list[dict[str, Any]]:
    done = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"kubectl kustomize {path} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def builds() -> dict[str, list[dict[str, Any]]]:
    return {name: kustomize(path) for name, path in BUILDS.items()}


@pytest.fixture(scope="module")
def render_deploy() -> ModuleType:
    return load_render_deploy()


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, pod template) of every object that runs pods."""
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield o, o["spec"]["template"]
        elif o["kind"] == "CronJob":
            yield o, o["spec"]["jobTemplate"]["spec"]["template"]


def containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def group_of(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""


def validate(obj: dict[str, Any]) -> None:
    # strict: unknown fields (a typo like `readinesProbe`) fail instead of being ignored.
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


# --- schema -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_every_object_is_valid_kubernetes(builds: dict[str, list[dict[str, Any]]], build: str) -> None:
    skipped = set()
    for obj in builds[build]:
        key = (group_of(obj["apiVersion"]), obj["kind"])
        if key in SKIPPED_KINDS:
            skipped.add(key)
            continue
        try:
            validate(obj)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{build}: {obj['kind']}/{obj['metadata'].get('name')}: {exc.message} at {list(exc.path)}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            pytest.fail(f"{build}: no schema and not in SKIPPED_KINDS: {exc.message}")
    # Only the Istio overlay brings CRDs; elsewhere nothing may be skipped.
    assert skipped == (SKIPPED_KINDS if build == "istio" else set())


def test_the_validator_rejects_what_it_should(builds: dict[str, list[dict[str, Any]]]) -> None:
    """A validator that accepts anything would make the test above pass vacuously."""
    deployment = named(builds["base"], "Deployment", "pooler-extproc")
    validate(deployment)
    typo = yaml.safe_load(yaml.safe_dump(deployment))
    typo["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"grpc": {"port": 9000}}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(typo)
    wrong_type = yaml.safe_load(yaml.safe_dump(deployment))
    wrong_type["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(wrong_type)


# --- workloads ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_every_long_running_container_has_a_readiness_probe(
    builds: dict[str, list[dict[str, Any]]], build: str
) -> None:
    checked = 0
    for workload, template in pod_specs(builds[build]):
        if workload["kind"] in NO_READINESS_KINDS:
            continue
        for c in template["spec"]["containers"]:
            assert c.get("readinessProbe"), f"{workload['metadata']['name']}/{c['name']} has no readinessProbe"
            checked += 1
    assert checked >= 3  # extproc, admin, scheduler (+ envoy)


def test_extproc_runs_replica_mode_with_grpc_probes_on_9000(builds: dict[str, list[dict[str, Any]]]) -> None:
    for build, objects in builds.items():
        deployment = named(objects, "Deployment", "pooler-extproc")
        assert deployment["spec"]["replicas"] == 2, build
        (c,) = deployment["spec"]["template"]["spec"]["containers"]
        assert c["command"] == ["python", "-m", "extproc"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["grpc"] == {"port": 9000}, f"{build}: {probe}"
        env = env_of(c)
        assert env["POOLER_EXTPROC_SHARED"]["value"] == "1"
        assert env["POOLER_EXTPROC_LISTEN"]["value"] == "0.0.0.0:9000"
        assert env["POOLER_METRICS_LISTEN"]["value"] == "0.0.0.0:9464"
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == {"grpc": 9000, "metrics": 9464}

        service = named(objects, "Service", "pooler-extproc")
        # Headless: Envoy must see (and health-check) each replica, not one virtual IP.
        assert service["spec"]["clusterIP"] == "None"
        by_port = {p["port"]: p for p in service["spec"]["ports"]}
        assert by_port[9000]["name"].startswith("grpc")  # Istio protocol selection by port name
        assert by_port[9000]["appProtocol"] == "grpc"
        assert 9464 in by_port

        pdb = named(objects, "PodDisruptionBudget", "pooler-extproc")
        assert pdb["spec"]["selector"]["matchLabels"].items() <= template_labels(deployment).items()
        assert pdb["spec"]["maxUnavailable"] == 1


def template_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_no_container_runs_as_root_or_can_escalate(builds: dict[str, list[dict[str, Any]]], build: str) -> None:
    for workload, template in pod_specs(builds[build]):
        pod = template["spec"].get("securityContext", {})
        assert template["spec"].get("hostNetwork") is not True
        for c in containers(template):
            where = f"{build}: {workload['metadata']['name']}/{c['name']}"
            sc = c.get("securityContext", {})
            run_as_user = sc.get("runAsUser", pod.get("runAsUser"))
            assert sc.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, where
            assert run_as_user == 10001, where  # the Dockerfile's user: files in the image belong to it
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("privileged") is not True, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c.get("resources", {}).get(kind, {})), f"{where}: {kind}"


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_writable_paths_are_empty_dirs(builds: dict[str, list[dict[str, Any]]], build: str) -> None:
    """With a read-only root, POOLER_DATA_DIR and /tmp (sockets, gunicorn heartbeats) must be volumes."""
    for workload, template in pod_specs(builds[build]):
        volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
        for c in containers(template):
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert "emptyDir" in volumes[mounts["/tmp"]], workload["metadata"]["name"]
            data_dir = env_of(c).get("POOLER_DATA_DIR")
            if data_dir is not None:
                assert "emptyDir" in volumes[mounts[data_dir["value"]]], workload["metadata"]["name"]


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_secrets_are_referenced_never_inlined(builds: dict[str, list[dict[str, Any]]], build: str) -> None:
    objects = builds[build]
    assert not of_kind(objects, "Secret"), "secrets are created out of band (secret.example.yaml is not applied)"
    python = 0
    for workload, template in pod_specs(objects):
        for c in containers(template):
            assert "envFrom" not in c
            env = env_of(c)
            if c["command"][0] == "envoy":
                assert not set(SECRET_ENV) & set(env), "Envoy needs no secret"
                continue
            python += 1
            for name, key in SECRET_ENV.items():
                where = f"{workload['metadata']['name']}/{c['name']} {name}"
                assert "value" not in env[name], where
                assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "pooler", "key": key}, where
    assert python >= 4  # migrate, extproc, admin, scheduler


def test_the_example_secret_has_the_referenced_keys_and_is_in_no_kustomization() -> None:
    example = yaml.safe_load((K8S / "base" / "secret.example.yaml").read_text())
    assert example["kind"] == "Secret" and example["metadata"]["name"] == "pooler"
    assert set(example["stringData"]) == set(SECRET_ENV.values())
    for path in K8S.rglob("kustomization.yaml"):
        assert "secret.example.yaml" not in str(yaml.safe_load(path.read_text())), path


def test_migration_job_upgrades_with_the_same_image(builds: dict[str, list[dict[str, Any]]]) -> None:
    for build, objects in builds.items():
        job = named(objects, "Job", "pooler-migrate")
        (c,) = job["spec"]["template"]["spec"]["containers"]
        assert c["command"] == ["pooler", "db", "upgrade"]
        images = {x["image"] for _, t in pod_specs(objects) for x in containers(t)}
        assert images == {"codex-pooler:latest"}, build


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_every_service_and_pdb_selects_a_pod_template(builds: dict[str, list[dict[str, Any]]], build: str) -> None:
    objects = builds[build]
    pods = [(w["metadata"].get("namespace"), t["metadata"].get("labels", {})) for w, t in pod_specs(objects)]
    selectors = [(s, s["spec"]["selector"]) for s in of_kind(objects, "Service")]
    selectors += [(p, p["spec"]["selector"]["matchLabels"]) for p in of_kind(objects, "PodDisruptionBudget")]
    assert selectors
    for obj, selector in selectors:
        assert selector, f"{obj['kind']}/{obj['metadata']['name']} selects nothing"
        namespace = obj["metadata"].get("namespace")
        matches = [labels for ns, labels in pods if ns == namespace and selector.items() <= labels.items()]
        assert matches, f"{build}: {obj['kind']}/{obj['metadata']['name']} selects no pod template"
        if obj["kind"] == "Service":
            # Named target ports must exist on the selected pods' containers.
            named_ports = {
                p["name"]
                for w, t in pod_specs(objects)
                if selector.items() <= t["metadata"].get("labels", {}).items()
                for c in t["spec"]["containers"]
                for p in c.get("ports", [])
            }
            for port in obj["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                if isinstance(target, str):
                    assert target in named_ports, f"{build}: Service {obj['metadata']['name']} port {target}"


def test_image_is_overridable_with_kustomize_images(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                # kustomize refuses absolute roots
                "resources": [os.path.relpath(K8S / "overlays" / "standalone-envoy", tmp_path)],
                "images": [{"name": "codex-pooler", "newName": "registry.example.com/pooler", "newTag": "1.2.3"}],
            }
        )
    )
    objects = kustomize(tmp_path)
    images = {c["image"] for _, t in pod_specs(objects) for c in containers(t)}
    assert images == {"registry.example.com/pooler:1.2.3"}


# --- standalone Envoy ---------------------------------------------------------------------------------------


def test_committed_envoy_yaml_is_what_the_renderer_gives(render_deploy: ModuleType) -> None:
    committed = (K8S / "overlays" / "standalone-envoy" / "envoy.yaml").read_text()
    assert committed == render_deploy.render_envoy(), "stale: run .venv/bin/python scripts/render-deploy.py"
    assert render_deploy.main(["--check"]) == 0


def test_envoy_configmap_carries_the_rendered_config(
    builds: dict[str, list[dict[str, Any]]], render_deploy: ModuleType
) -> None:
    objects = builds["standalone-envoy"]
    (configmap,) = [c for c in of_kind(objects, "ConfigMap") if c["metadata"]["name"].startswith("pooler-envoy-")]
    assert configmap["data"] == {"envoy.yaml": render_deploy.render_envoy()}

    deployment = named(objects, "Deployment", "pooler-envoy")
    spec = deployment["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert c["command"][:4] == ["envoy", "-c", "/etc/pooler/envoy.yaml", "--disable-hot-restart"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/etc/pooler")
    # The generated (hash-suffixed) name: kustomize rewrote the reference, so a new config rolls the pods.
    assert volumes[mount["name"]]["configMap"]["name"] == configmap["metadata"]["name"]
    assert {p["containerPort"] for p in c["ports"]} == {8080}  # Envoy's admin is never a container port
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    service = named(objects, "Service", "pooler-envoy")
    assert [p["port"] for p in service["spec"]["ports"]] == [8080]


def _socket_addresses(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "socket_address" in node:
            yield node["socket_address"]
        for value in node.values():
            yield from _socket_addresses(value)
    elif isinstance(node, list):
        for value in node:
            yield from _socket_addresses(value)


def test_rendered_envoy_reaches_the_services_of_the_manifests(
    builds: dict[str, list[dict[str, Any]]], render_deploy: ModuleType
) -> None:
    objects = builds["standalone-envoy"]
    services = {s["metadata"]["name"]: {p["port"] for p in s["spec"]["ports"]} for s in of_kind(objects, "Service")}
    config = yaml.safe_load(render_deploy.render_envoy())
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    names = ("pooler_extproc", "pooler_accesslog", "pooler_metrics", "pooler_admin", "pooler_mcp")
    targets = {name: next(_socket_addresses(clusters[name])) for name in names}
    for name, address in targets.items():
        host, port = address["address"], address["port_value"]
        if host in ENVOY_TARGETS_WITHOUT_SERVICE:
            continue
        assert host in services, f"cluster {name} points at {host}, which is no Service here"
        assert port in services[host], f"cluster {name}: Service {host} has no port {port}"
    # Envoy's admin can stop the server: loopback only.
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    listeners = [x["address"].get("socket_address") for x in config["static_resources"]["listeners"]]
    assert {"address": "0.0.0.0", "port_value": 8080} in listeners


# --- Istio --------------------------------------------------------------------------------------------------


def test_istio_kustomization_lists_every_manifest_in_deploy_istio() -> None:
    listed = set(yaml.safe_load((ISTIO / "kustomization.yaml").read_text())["resources"])
    present = {p.name for p in ISTIO.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed | ISTIO_PATCH_FILES == present, "a file in deploy/istio/ is neither a resource nor a known patch"
    assert not listed & ISTIO_PATCH_FILES


def test_istio_overlay_injects_sidecars_and_keeps_istio_resources_in_place(
    builds: dict[str, list[dict[str, Any]]],
) -> None:
    objects = builds["istio"]
    (namespace,) = of_kind(objects, "Namespace")
    assert namespace["metadata"]["name"] == "pooler"
    assert namespace["metadata"]["labels"]["istio-injection"] == "enabled"
    for obj in objects:
        if obj["kind"] == "Namespace":
            continue
        expected = "istio-system" if group_of(obj["apiVersion"]) == "networking.istio.io" else "pooler"
        assert obj["metadata"].get("namespace") == expected, f"{obj['kind']}/{obj['metadata']['name']}"
    job = named(objects, "Job", "pooler-migrate")
    # A sidecar would keep the Job's pod running after the migration ends.
    assert job["spec"]["template"]["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    for workload, template in pod_specs(objects):
        if workload["kind"] != "Job":
            annotations = template["metadata"].get("annotations", {})
            assert "sidecar.istio.io/inject" not in annotations
            # The processes connect to PostgreSQL at start: only once the sidecar can carry it.
            assert yaml.safe_load(annotations["proxy.istio.io/config"]) == {"holdApplicationUntilProxyStarts": True}
    # The VirtualService sends /admin to the admin Service of this namespace.
    virtual_service = named(objects, "VirtualService", "pooler")
    hosts = {r["destination"]["host"] for h in virtual_service["spec"]["http"] for r in h["route"]}
    assert "pooler-admin.pooler.svc.cluster.local" in hosts
    assert not of_kind(objects, "ConfigMap"), "no Envoy of ours under Istio"


def test_the_standalone_envoy_config_is_valid_for_the_real_envoy() -> None:
    """What the Envoy pod mounts loads in the Envoy binary the image ships (DNS-named clusters: STRICT_DNS)."""
    envoy = Path(sys.executable).parent / "envoy"
    done = subprocess.run(
        [str(envoy), "--mode", "validate", "-c", str(K8S / "overlays" / "standalone-envoy" / "envoy.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
