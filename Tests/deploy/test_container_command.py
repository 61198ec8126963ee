"""The Deployment's command line, run for real with the locally built binary (no container):
what the image would run, with the pod's files laid out in a temporary directory.

Every container path of the manifests is mapped into the temporary directory: the ConfigMap's
config.json as committed, a fresh certificate and key for the TLS Secret, a fresh token for the
admin Secret, emptyDirs, a small random model for the image's model directory and the bundled
plugins for its plugin directory. The listeners move to free ports on 127.0.0.1 (the ConfigMap's
0.0.0.0 is checked statically). SCENESCORE_REGISTRY is left out: there is no PostgreSQL here.

Then, as the kubelet would: the startup, readiness and liveness probes' paths answer 200 over TLS
with ALPN h2 (curl, like the kubelet's Go client, offers h2 and http/1.1 and verifies nothing),
the admin listener takes the token from the mounted file, and SIGTERM ends the process with
status 0 well within the drain timeout. Skipped when the binary has not been built.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

import deploylib

IMAGE_MODEL_DIR = "/opt/scenescore/models/default"
IMAGE_PLUGIN_DIR = "/opt/scenescore/plugins"
IMAGE_WORKDIR = "/var/lib/scenescore"
STARTUP_SECONDS = 60


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _curl(url: str, *headers: str) -> tuple[int, str]:
    command = ["curl", "-sk", "--http2", "--max-time", "3", "-o", "/dev/null", "-w", "%{http_code} %{http_version}", url]
    for header in headers:
        command += ["-H", header]
    result = subprocess.run(command, capture_output=True, text=True, timeout=10)
    code, _, version = result.stdout.partition(" ")
    return (int(code) if code.isdigit() else 0), version


@pytest.fixture
def pod_files(tmp_path, bundle):
    """Local directories standing in for the container's paths: container path → local path."""
    if not deploylib.BINARY.is_file():
        pytest.skip(f"{deploylib.BINARY} is not built (swift build -c release --product scenescore)")
    for tool in ("curl", "openssl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/setup.sh installs it)")
    mapping: dict[str, Path] = {}
    pod, container = bundle.pod(), bundle.container()
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        local = tmp_path / "pod" / mount["name"]
        local.mkdir(parents=True)
        mapping[mount["mountPath"]] = local
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            cm = bundle.get("ConfigMap", volume["configMap"]["name"])
            for key, value in cm["data"].items():
                (local / key).write_text(value)
        elif "secret" in volume:
            secret = bundle.get("Secret", volume["secret"]["secretName"])
            if secret["type"] == "kubernetes.io/tls":
                subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                                "-nodes", "-days", "1", "-subj", "/CN=scenescore.scenescore.svc",
                                "-addext", "subjectAltName=DNS:scenescore.scenescore.svc,IP:127.0.0.1",
                                "-keyout", str(local / "tls.key"), "-out", str(local / "tls.crt")],
                               check=True, capture_output=True, timeout=30)
            else:
                for key in (secret.get("stringData") or {}):
                    (local / key).write_text(secrets.token_hex(24) + "\n")
    model = tmp_path / "image" / "model"
    subprocess.run([str(deploylib.BINARY), "model", "init", "--random", "--dir", str(model)],
                   check=True, capture_output=True, timeout=60)
    mapping[IMAGE_MODEL_DIR] = model
    plugins = tmp_path / "image" / "plugins"
    plugins.mkdir(parents=True)
    if all((deploylib.BINARY.parent / f"lib{p}.so").is_file() for p in deploylib.plugin_products()):
        subprocess.run([str(deploylib.REPO / "scripts/install-plugins.sh"), str(deploylib.BINARY.parent), str(plugins)],
                       check=True, capture_output=True, timeout=60)
    mapping[IMAGE_PLUGIN_DIR] = plugins
    return mapping


def _local(path: str, mapping: dict[str, Path]) -> str:
    best = max((root for root in mapping if path == root or path.startswith(root.rstrip("/") + "/")), key=len, default=None)
    if best is None:
        return path
    return str(mapping[best] / path[len(best):].lstrip("/"))


def test_deployment_command_line_serves_the_probes_and_drains(bundle, pod_files):
    container = bundle.container()
    listeners = deploylib.listener_ports(bundle)
    local_port = dict(zip(sorted(set(listeners.values())), _free_ports(len(set(listeners.values())))))
    args, i = [], 0
    raw = [str(a) for a in container.get("args", [])]
    while i < len(raw):
        arg = raw[i]
        if arg in ("--port", "--admin-port", "--h2c-port"):
            args += [arg, str(local_port[int(raw[i + 1])])]
            i += 2
            continue
        args.append(_local(arg, pod_files) if arg.startswith("/") else arg)
        i += 1
    args += ["--host", "127.0.0.1"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(pod_files[IMAGE_WORKDIR])}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
    workdir = pod_files[IMAGE_WORKDIR]
    log = workdir / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([str(deploylib.BINARY)] + args, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        def url(probe: str) -> str:
            get = container[probe]["httpGet"]
            port = local_port[deploylib.resolve_port(bundle, get["port"])]
            return f"https://127.0.0.1:{port}{get['path']}"

        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert process.poll() is None, f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            # Ready, not merely alive: the readiness path answers 200 only once the models are loaded.
            if _curl(url("readinessProbe"))[0] == 200:
                break
            assert time.monotonic() < deadline, f"readiness probe not 200 after {STARTUP_SECONDS} s:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert _curl(url(probe)) == (200, "2"), (probe, url(probe))

        admin = f"https://127.0.0.1:{local_port[listeners['adminPort']]}/admin/v1/scenes"
        token_file = Path(_local(str(deploylib.Settings(bundle).get("adminTokenFile")), pod_files))
        assert _curl(admin)[0] == 401
        assert _curl(admin, f"authorization: Bearer {token_file.read_text().strip()}")[0] == 200

        drain = deploylib.Settings(bundle).number("drainTimeout")
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=drain + 10)
        assert code == 0, log.read_text()[-3000:]
        assert time.monotonic() - started < drain + 5
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
