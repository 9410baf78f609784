"""Deployment files, checked without a Docker engine or a cluster: Kubernetes manifests against
the Kubernetes schemas, the compose file against the compose specification, and every command
line they run against the real CLI parser."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from chordcast.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.30"


def k8s_docs() -> list[dict]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def assert_cli(argv: list[str]) -> None:
    """The arguments parse as a real `chordcast` invocation."""
    args = build_parser().parse_args(argv)
    assert callable(args.func)


def test_kubernetes_manifests_match_the_schema() -> None:
    kinds = []
    for doc in k8s_docs():
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        kinds.append(doc["kind"])
    assert sorted(kinds) == ["PodDisruptionBudget", "Service", "Service", "StatefulSet"]


def test_kubernetes_schema_check_catches_mistakes() -> None:
    sts = next(d for d in k8s_docs() if d["kind"] == "StatefulSet")
    broken = json.loads(json.dumps(sts))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProb"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_kubernetes_wiring() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in k8s_docs()}
    headless = docs[("Service", "chordcast-peers")]["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    sts = docs[("StatefulSet", "chordcast")]["spec"]
    assert sts["serviceName"] == "chordcast-peers"
    pod = sts["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    container = pod["spec"]["containers"][0]
    assert "grpc" in container["readinessProbe"] and "grpc" in container["livenessProbe"]
    assert container["resources"]["requests"]
    args = [re.sub(r"\$\((\w+)\)", "x", a) for a in container["args"]]
    assert_cli(args)
    assert "--join-dns" in args and "--advertise" in args
    assert data_dir_of(container, sts["volumeClaimTemplates"]) == "/var/lib/chordcast"
    assert pod["spec"]["securityContext"]["fsGroup"] == 10001  # the volume is the node's
    assert docs[("PodDisruptionBudget", "chordcast")]["spec"]["maxUnavailable"] == 1


def compose_schema() -> dict:
    ref = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(ref.read_text())


def test_compose_file_matches_the_compose_spec() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    jsonschema.validate(compose, compose_schema())
    broken = json.loads(json.dumps(compose))
    broken["services"]["node1"]["restart_policy"] = "always"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, compose_schema())


def test_compose_runs_five_nodes_prometheus_and_grafana() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    nodes = [s for s in services if s.startswith("node")]
    assert len(nodes) == 5
    for name in nodes:
        command = services[name]["command"]
        assert_cli(command)
        assert "--join" not in command  # they find each other by broadcast
        # Each keeps its data in its own named volume, mounted at its --data-dir.
        volume = f"{name}-data:{command[command.index('--data-dir') + 1]}"
        assert services[name]["volumes"] == [volume] and f"{name}-data" in compose["volumes"]
    grafana = services["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert grafana["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    for volume in services["grafana"]["volumes"] + services["prometheus"]["volumes"]:
        assert (DEPLOY / volume.split(":")[0]).exists(), volume


def test_dockerfile_entrypoint_is_a_real_cli_invocation() -> None:
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    assert entry == ["chordcast"]
    assert_cli(cmd)
    assert re.search(r"^USER (?!root|0\b)\S+", text, re.M), "the image must not run as root"
    assert all(":" in line.split()[1] and "latest" not in line
               for line in text.splitlines() if line.startswith("FROM "))


def test_systemd_unit_runs_the_cli() -> None:
    text = (DEPLOY / "systemd" / "chordcast.service").read_text().replace("\\\n", " ")
    exec_start = re.search(r"^ExecStart=(.*)$", text, re.M).group(1)
    argv = shlex.split(exec_start.replace("${ADVERTISE}", "10.0.0.1:7000")
                       .replace("$SEEDS", "").replace("${STATE_DIRECTORY}", "/var/lib/chordcast"))
    assert argv[0].endswith("/chordcast")
    assert_cli(argv[1:])
    # The data dir is the unit's state directory (writable under ProtectSystem=strict).
    assert re.search(r"^StateDirectory=chordcast$", text, re.M)
    assert argv[argv.index("--data-dir") + 1] == "/var/lib/chordcast"


def data_dir_of(container: dict, claims: list[dict]) -> str:
    """The node's --data-dir, checked to be the mount of a claimed volume."""
    args = container["args"]
    path = args[args.index("--data-dir") + 1]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[path] in {c["metadata"]["name"] for c in claims}
    return str(path)


def test_dashboard_is_generated_and_uses_the_provisioned_datasource() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_dashboard",
                                                  DEPLOY / "grafana" / "make_dashboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = json.loads((DEPLOY / "grafana" / "dashboards" / "chordcast.json").read_text())
    assert committed == module.build(), "run python deploy/grafana/make_dashboard.py"
    ds = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" /
                         "prometheus.yml").read_text())["datasources"][0]
    for panel in committed["panels"]:
        assert panel["datasource"]["uid"] == ds["uid"]


def test_promtool_accepts_the_shipped_prometheus_config() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool missing: install the Debian package `prometheus`")
    out = subprocess.run([promtool, "check", "config", str(DEPLOY / "prometheus" /
                                                          "prometheus.yml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_tls_statefulset_matches_the_schema_and_the_cli() -> None:
    """deploy/k8s/tls: the same StatefulSet with certificates from a Secret and probes on the
    plaintext health port (kubelet's gRPC probe cannot do mutual TLS)."""
    docs = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "tls" / "chordcast-tls.yaml")
                                          .read_text()) if d]
    assert [d["kind"] for d in docs] == ["StatefulSet"]
    kubernetes_validate.validate(docs[0], K8S_VERSION, strict=True)
    pod = docs[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    args = [re.sub(r"\$\((\w+)\)", "x", a) for a in container["args"]]
    assert_cli(args)
    health = args[args.index("--health-port") + 1]
    assert container["readinessProbe"]["grpc"]["port"] == int(health)
    assert container["livenessProbe"]["grpc"]["port"] == int(health)
    for flag in ("--tls-cert", "--tls-key", "--tls-ca"):
        assert args[args.index(flag) + 1].startswith("/tls/")
    assert container["volumeMounts"][0]["mountPath"] == "/tls"
    assert pod["volumes"][0]["secret"]["secretName"] == "chordcast-tls"
    assert data_dir_of(container, docs[0]["spec"]["volumeClaimTemplates"]) == "/var/lib/chordcast"


def test_the_tls_compose_override_gives_each_node_only_its_own_key() -> None:
    """deploy/docker-compose.tls.yml on top of docker-compose.yml: the merged file matches
    the compose specification, every node command parses and points at its own secrets, and
    the secrets it names are the files `chordcast certs` writes for the header's commands."""
    base = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    override = yaml.safe_load((DEPLOY / "docker-compose.tls.yml").read_text())
    jsonschema.validate(override, compose_schema())
    merged = json.loads(json.dumps(base))
    for name, service in override["services"].items():
        merged["services"][name].update(service)  # compose replaces command and secrets
    merged["secrets"] = override["secrets"]
    jsonschema.validate(merged, compose_schema())
    nodes = [s for s in merged["services"] if s.startswith("node")]
    assert sorted(override["services"]) == sorted(nodes)
    for name in nodes:
        service = merged["services"][name]
        command = service["command"]
        assert_cli(command)
        assert command[command.index("--tls-cert") + 1] == f"/run/secrets/{name}_cert"
        assert command[command.index("--tls-key") + 1] == f"/run/secrets/{name}_key"
        assert service["secrets"] == ["ca", f"{name}_cert", f"{name}_key"]
        advertised = command[command.index("--advertise") + 1]
        assert advertised == f"{name}:7000"
        assert (name == "node1") == ("--join" not in command)  # the others join node1
        assert override["secrets"][f"{name}_cert"]["file"] == f"./pki/{name}.pem"
    # The header's commands make exactly those files.
    header = (DEPLOY / "docker-compose.tls.yml").read_text()
    assert "certs node node$i:7000 --dir deploy/pki --name node$i" in header
