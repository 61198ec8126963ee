"""Offline checks of the Kubernetes manifests (deploy/kubernetes/) and the Dockerfile.

Everything the checks compare against is read from the repository itself, so a change on either
side that breaks the pairing fails a test:

- the server's routes (Sources/Server/Routes.swift), settings and their defaults
  (Sources/Server/ServerConfig.swift, Sources/H2/H2Limits.swift), the environment variable
  names it derives from them, and the `serve` flags (Sources/scenescore/ServeCommand.swift, or
  `scenescore serve --help` of a built binary);
- the plugin products scripts/install-plugins.sh installs, Package.swift's default target CPU.

Each `check_*` function returns a list of problems (strings naming what is wrong); the tests
assert that the committed files have none, and that deliberately broken copies do.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import math
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
KUBE_DIR = REPO / "deploy" / "kubernetes"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
BINARY = REPO / ".build" / "release" / "scenescore"

# The name of the server's container in the Deployment, and the Deployment's.
DEPLOYMENT = "scenescore"
CONTAINER = "scenescore"


# --------------------------------------------------------------------------------------------
# What the server is, read from its sources
# --------------------------------------------------------------------------------------------

def server_routes(source: Path = REPO / "Sources/Server/Routes.swift") -> dict[str, str]:
    """Exact paths of the serving listener → the route they map to (`live`, `readyz`, …)."""
    routes: dict[str, str] = {}
    for match in re.finditer(r'case\s+((?:"[^"]*"\s*,?\s*)+):\s*self\s*=\s*\.(\w+)', source.read_text()):
        for path in re.findall(r'"([^"]*)"', match.group(1)):
            routes[path] = match.group(2)
    return routes


def server_config_keys(source: Path = REPO / "Sources/Server/ServerConfig.swift") -> list[str]:
    """ServerConfig.keys: every setting of the config file (camelCase)."""
    match = re.search(r"static let keys\s*=\s*\[(.*?)\]", source.read_text(), re.S)
    if not match:
        raise AssertionError(f"{source}: no `static let keys = [...]`")
    return re.findall(r'"(\w+)"', match.group(1))


def environment_name(key: str) -> str:
    """ServerConfig.environmentName: `SCENESCORE_` + the key in UPPER_SNAKE case."""
    out = "SCENESCORE_"
    for c in key:
        if c.isupper():
            out += "_"
        out += c.upper()
    return out.replace("C_A", "CA")


def _literal(text: str) -> Any:
    text = text.strip()
    if m := re.fullmatch(r'"([^"]*)"', text):
        return m.group(1)
    if m := re.fullmatch(r"\.seconds\((\d+)\)", text):
        return float(m.group(1))
    if re.fullmatch(r"[\d.\s*<+]+", text):
        return eval(text, {"__builtins__": {}})  # digits and * << + only
    return None


def server_defaults() -> dict[str, Any]:
    """Literal defaults of ServerConfig and H2Limits (e.g. port 8443, drainTimeout 10.0)."""
    defaults: dict[str, Any] = {}
    for source in (REPO / "Sources/H2/H2Limits.swift", REPO / "Sources/Server/ServerConfig.swift"):
        for name, value in re.findall(r'public var (\w+)(?:\s*:\s*[\w?]+)?\s*=\s*("[^"\n]*"|[^\n/]+)', source.read_text()):
            parsed = _literal(value)
            if parsed is not None:
                defaults[name] = parsed
    return defaults


def serve_flags_from_source(source: Path = REPO / "Sources/scenescore/ServeCommand.swift") -> set[str]:
    """The long flags of `scenescore serve`, from its @Option declarations."""
    flags = {"--help"}
    for options, name in re.findall(r"@Option\(([^\n]*?)\)\s*var\s+(\w+)", source.read_text()):
        custom = re.search(r'customLong\("([^"]+)"\)', options)
        flags.add("--" + (custom.group(1) if custom else re.sub(r"(?<!^)([A-Z])", r"-\1", name).lower()))
    return flags


def serve_flags_from_help(binary: Path = BINARY) -> set[str]:
    """The long flags `scenescore serve --help` lists."""
    result = subprocess.run([str(binary), "serve", "--help"], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise AssertionError(f"{binary} serve --help exited {result.returncode}: {result.stderr[:300]}")
    return set(re.findall(r"(?m)^\s+(?:-\w, )?(--[a-z0-9-]+)", result.stdout))


def plugin_products(script: Path = REPO / "scripts/install-plugins.sh") -> list[str]:
    """The library products scripts/install-plugins.sh installs (ApparelPlugin, …)."""
    match = re.search(r"plugins=\(([^)]*)\)", script.read_text())
    if not match:
        raise AssertionError(f"{script}: no plugins=(...) list")
    return [entry.split(":")[0] for entry in re.findall(r'"([^"]+)"', match.group(1))]


def package_default_target_cpu(manifest: Path = REPO / "Package.swift") -> str:
    match = re.search(r'environment\["SCENESCORE_TARGET_CPU"\]\s*\?\?\s*"([^"]+)"', manifest.read_text())
    if not match:
        raise AssertionError("Package.swift: no SCENESCORE_TARGET_CPU default")
    return match.group(1)


# --------------------------------------------------------------------------------------------
# Manifests
# --------------------------------------------------------------------------------------------

@dataclass
class Bundle:
    """Every resource of deploy/kubernetes/*.yaml (examples included), by file."""
    docs: list[tuple[str, dict]]
    kustomization: dict = field(default_factory=dict)

    def all(self, kind: str) -> list[dict]:
        return [doc for _, doc in self.docs if doc.get("kind") == kind]

    def get(self, kind: str, name: str) -> dict | None:
        return next((d for d in self.all(kind) if d.get("metadata", {}).get("name") == name), None)

    def deployment(self) -> dict:
        found = self.get("Deployment", DEPLOYMENT)
        if found is None:
            raise AssertionError(f"no Deployment {DEPLOYMENT!r} in the manifests")
        return found

    def pod(self) -> dict:
        return self.deployment()["spec"]["template"]["spec"]

    def container(self) -> dict:
        found = next((c for c in self.pod().get("containers", []) if c.get("name") == CONTAINER), None)
        if found is None:
            raise AssertionError(f"Deployment {DEPLOYMENT!r} has no container {CONTAINER!r}")
        return found

    def copy(self) -> "Bundle":
        return copy.deepcopy(self)


def load_bundle(directory: Path = KUBE_DIR) -> Bundle:
    docs: list[tuple[str, dict]] = []
    kustomization: dict = {}
    for path in sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml")):
        loaded = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        if path.name in ("kustomization.yaml", "kustomization.yml"):
            kustomization = loaded[0]
            continue
        docs += [(path.name, d) for d in loaded]
    return Bundle(docs, kustomization)


def check_kustomization(bundle: Bundle, directory: Path = KUBE_DIR) -> list[str]:
    """Every manifest is a resource, except the example Secrets, which must never be applied."""
    problems = []
    k = bundle.kustomization
    if not k:
        return ["no kustomization.yaml"]
    resources = k.get("resources", [])
    files = {name for name, _ in bundle.docs}
    for resource in resources:
        if not (directory / resource).is_file():
            problems.append(f"kustomization resource {resource} does not exist")
        if ".example." in resource:
            problems.append(f"kustomization applies the example {resource}: it would overwrite the real Secret")
    for name in sorted(files - set(resources)):
        if ".example." not in name:
            problems.append(f"{name} is not listed in kustomization.yaml resources")
    images = {c.get("image", "").split(":")[0].split("@")[0] for c in bundle.pod().get("containers", [])}
    for image in k.get("images", []):
        if image.get("name") not in images:
            problems.append(f"kustomization images entry {image.get('name')!r} matches no container image ({sorted(images)})")
    return problems


# --------------------------------------------------------------------------------------------
# The container's command line and settings
# --------------------------------------------------------------------------------------------

def parse_args(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """`serve --port 8443 --x=y` → (['serve'], {'--port': '8443', '--x': 'y'})."""
    positional: list[str] = []
    flags: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = str(args[i])
        if arg.startswith("--"):
            if "=" in arg:
                name, value = arg.split("=", 1)
            else:
                name, value = arg, (str(args[i + 1]) if i + 1 < len(args) else "")
                i += 1
            flags[name] = value
        else:
            positional.append(arg)
        i += 1
    return positional, flags


def flag_to_key(flag: str) -> str:
    """`--admin-token-file` → `adminTokenFile` (ServeCommand's flag → ServerConfig key)."""
    special = {"--tls-client-ca": "tlsClientCA", "--admin-client-ca": "adminClientCA",
               "--max-queue-delay-us": "maxQueueDelayMicroseconds"}
    if flag in special:
        return special[flag]
    parts = flag.lstrip("-").split("-")
    return parts[0] + "".join(p.capitalize() for p in parts[1:])


@dataclass
class Mounted:
    """What a file path inside the container is: which volume, which key of it."""
    volume: dict
    mount: dict
    relative: str


def mounted(bundle: Bundle, path: str) -> Mounted | None:
    """The volume mount (longest matching mountPath) that provides `path`."""
    container, pod = bundle.container(), bundle.pod()
    best = None
    for mount in container.get("volumeMounts", []):
        root = mount["mountPath"].rstrip("/")
        if path == root or path.startswith(root + "/"):
            if best is None or len(root) > len(best["mountPath"].rstrip("/")):
                best = mount
    if best is None:
        return None
    volume = next((v for v in pod.get("volumes", []) if v["name"] == best["name"]), None)
    if volume is None:
        return None
    return Mounted(volume, best, path[len(best["mountPath"].rstrip("/")) + 1:])


def _object_keys(obj: dict | None) -> set[str]:
    if obj is None:
        return set()
    return set(obj.get("data") or {}) | set(obj.get("stringData") or {}) | set(obj.get("binaryData") or {})


def volume_file(bundle: Bundle, path: str) -> tuple[str, str, str] | None:
    """(kind, object name, key) of a ConfigMap or Secret file at `path`, else None."""
    m = mounted(bundle, path)
    if m is None:
        return None
    for kind, source, name_field in (("ConfigMap", "configMap", "name"), ("Secret", "secret", "secretName")):
        if source in m.volume:
            spec = m.volume[source]
            key = m.relative
            for item in spec.get("items") or []:
                if item.get("path") == m.relative:
                    key = item["key"]
            return kind, spec.get(name_field, ""), key
    return None


class Settings:
    """The server's effective settings in the container, with ServeCommand's precedence:
    defaults < --config file (the ConfigMap) < SCENESCORE_* environment < flags."""

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        container = bundle.container()
        self.positional, self.flags = parse_args(list(container.get("command", [])) + list(container.get("args", [])))
        self.env = {e["name"]: e for e in container.get("env", [])}
        self.config: dict[str, Any] = {}
        self.config_problem: str | None = None
        if "--config" in self.flags:
            found = volume_file(bundle, self.flags["--config"])
            if found is None or found[0] != "ConfigMap":
                self.config_problem = f"--config {self.flags['--config']} is not a file of a mounted ConfigMap"
            else:
                cm = bundle.get("ConfigMap", found[1])
                text = ((cm or {}).get("data") or {}).get(found[2])
                if text is None:
                    self.config_problem = f"--config {self.flags['--config']}: ConfigMap {found[1]!r} has no key {found[2]!r}"
                else:
                    try:
                        self.config = json.loads(text)
                    except json.JSONDecodeError as error:
                        self.config_problem = f"ConfigMap {found[1]!r} key {found[2]!r} is not JSON: {error}"
        self.defaults = server_defaults()

    def source(self, key: str) -> str:
        flag = next((f for f in self.flags if flag_to_key(f) == key), None)
        if flag:
            return f"flag {flag}"
        if environment_name(key) in self.env:
            return f"env {environment_name(key)}"
        if key in self.config:
            return f"config key {key}"
        return "default"

    def get(self, key: str) -> Any:
        flag = next((f for f in self.flags if flag_to_key(f) == key), None)
        if flag:
            return self.flags[flag]
        env = self.env.get(environment_name(key))
        if env is not None:
            return env.get("value", env.get("valueFrom"))
        if key in self.config:
            return self.config[key]
        return self.defaults.get(key)

    def number(self, key: str) -> float:
        value = self.get(key)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise AssertionError(f"setting {key} ({self.source(key)}) is not a number: {value!r}")


def check_settings(bundle: Bundle, flags: set[str] | None = None) -> list[str]:
    """The container runs `serve`; its flags, config keys and SCENESCORE_* variables all exist."""
    problems = []
    settings = Settings(bundle)
    if settings.positional[:1] != ["serve"]:
        problems.append(f"the container's args do not start with the serve command: {settings.positional}")
    known_flags = flags if flags is not None else serve_flags_from_source()
    for flag in settings.flags:
        if flag not in known_flags:
            problems.append(f"flag {flag} is not a `scenescore serve` flag")
    if settings.config_problem:
        problems.append(settings.config_problem)
    keys = server_config_keys()
    for key in settings.config:
        if key not in keys:
            problems.append(f"config key {key!r} is not a ServerConfig key")
    known_env = {environment_name(k) for k in keys}
    for name in settings.env:
        if name.startswith("SCENESCORE_") and name not in known_env and name != "SCENESCORE_REGISTRY":
            problems.append(f"environment variable {name} is not a server setting")
    return problems


def check_service_links(bundle: Bundle) -> list[str]:
    """Service links (docker-link variables) must not collide with the server's SCENESCORE_*
    settings: with enableServiceLinks on, a Service named `scenescore` gives every pod
    SCENESCORE_PORT=tcp://IP:PORT, which the server parses as its `port` setting."""
    if bundle.pod().get("enableServiceLinks") is False:
        return []
    settings_env = {environment_name(k) for k in server_config_keys()} | {"SCENESCORE_REGISTRY"}
    problems = []
    for service in bundle.all("Service"):
        if service.get("spec", {}).get("clusterIP") == "None":
            continue  # headless Services get no link variables
        prefix = service["metadata"]["name"].upper().replace("-", "_")
        names = {f"{prefix}_SERVICE_HOST", f"{prefix}_SERVICE_PORT", f"{prefix}_PORT"}
        for port in service["spec"].get("ports", []):
            proto = port.get("protocol", "TCP")
            base = f"{prefix}_PORT_{port['port']}_{proto}"
            names |= {base, f"{base}_PROTO", f"{base}_PORT", f"{base}_ADDR"}
            if port.get("name"):
                names.add(f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}")
        for name in sorted(names & settings_env):
            problems.append(f"enableServiceLinks is not false: Service {service['metadata']['name']!r} sets "
                            f"{name}, a server setting the server would fail to parse")
    return problems


# --------------------------------------------------------------------------------------------
# Semantic checks of the manifests
# --------------------------------------------------------------------------------------------

def _labels_match(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def check_selectors(bundle: Bundle) -> list[str]:
    problems = []
    deployment = bundle.deployment()
    labels = deployment["spec"]["template"]["metadata"].get("labels", {})
    selector = deployment["spec"]["selector"]
    if selector.get("matchExpressions"):
        problems.append("the Deployment selector uses matchExpressions: these checks expect matchLabels")
    if not selector.get("matchLabels") or not _labels_match(selector["matchLabels"], labels):
        problems.append(f"Deployment selector {selector.get('matchLabels')} does not match its pod labels {labels}")
    for service in bundle.all("Service"):
        sel = service["spec"].get("selector") or {}
        if not sel or not _labels_match(sel, labels):
            problems.append(f"Service {service['metadata']['name']!r} selector {sel} does not match the pod labels {labels}")
    for pdb in bundle.all("PodDisruptionBudget"):
        sel = pdb["spec"].get("selector", {}).get("matchLabels") or {}
        if not sel or not _labels_match(sel, labels):
            problems.append(f"PodDisruptionBudget {pdb['metadata']['name']!r} selector {sel} does not match the pod labels {labels}")
    for constraint in bundle.pod().get("topologySpreadConstraints", []):
        sel = constraint.get("labelSelector", {}).get("matchLabels") or {}
        if not sel or not _labels_match(sel, labels):
            problems.append(f"topologySpreadConstraint on {constraint.get('topologyKey')} selects {sel}, not the pods")
    return problems


def _container_ports(bundle: Bundle) -> dict[str, int]:
    return {p.get("name", str(p["containerPort"])): int(p["containerPort"]) for p in bundle.container().get("ports", [])}


def resolve_port(bundle: Bundle, port: Any) -> int | None:
    if isinstance(port, int):
        return port
    return _container_ports(bundle).get(str(port))


def listener_ports(bundle: Bundle) -> dict[str, int]:
    """The ports the server really listens on, from its effective settings."""
    settings = Settings(bundle)
    listeners = {"port": int(settings.number("port"))}
    admin_on = any(settings.get(k) for k in ("adminTokenFile", "adminToken", "adminClientCA"))
    if admin_on and int(settings.number("adminPort")) > 0:
        listeners["adminPort"] = int(settings.number("adminPort"))
    h2c = settings.get("h2cPort")
    if h2c and int(float(h2c)) > 0:
        listeners["h2cPort"] = int(float(h2c))
    return listeners


def check_ports(bundle: Bundle) -> list[str]:
    problems = []
    listeners = listener_ports(bundle)
    declared = _container_ports(bundle)
    for key, port in listeners.items():
        if port not in declared.values():
            problems.append(f"the server listens on {port} ({key}, {Settings(bundle).source(key)}) but no containerPort declares it")
    for name, port in declared.items():
        if port not in listeners.values():
            problems.append(f"containerPort {name}={port} is not a port the server listens on ({listeners})")
    for service in bundle.all("Service"):
        for p in service["spec"].get("ports", []):
            target = resolve_port(bundle, p.get("targetPort", p.get("port")))
            if target is None or target not in listeners.values():
                problems.append(f"Service {service['metadata']['name']!r} port {p.get('name')} targets "
                                f"{p.get('targetPort')!r}, which is no listener of the server ({listeners})")
            if p.get("appProtocol") == "kubernetes.io/h2c" and target != listeners.get("h2cPort"):
                problems.append(f"Service {service['metadata']['name']!r} says h2c for a TLS listener")
    return problems


# Which route each probe may use. Startup is liveness too: the server binds, then loads behind
# readiness for as long as it takes (waiting, alive and unready, while PostgreSQL is unreachable at
# start), so a startup probe on the readiness route would restart replicas that only wait.
PROBE_ROUTES = {"readinessProbe": {"readyz"}, "livenessProbe": {"live"}, "startupProbe": {"live"}}


def check_probes(bundle: Bundle, routes: dict[str, str] | None = None) -> list[str]:
    """Each probe GETs a path the server serves, of the right kind, over TLS on the TLS port."""
    routes = routes if routes is not None else server_routes()
    problems = []
    container = bundle.container()
    tls_port = listener_ports(bundle)["port"]
    for probe_name, kinds in PROBE_ROUTES.items():
        probe = container.get(probe_name)
        if probe is None:
            problems.append(f"no {probe_name}")
            continue
        get = probe.get("httpGet")
        if get is None:
            problems.append(f"{probe_name} is not an httpGet probe")
            continue
        path = get.get("path", "/")
        route = routes.get(path.split("?")[0])
        if route is None:
            problems.append(f"{probe_name} path {path} is not served by the server (Routes.swift: {sorted(routes)})")
        elif route not in kinds:
            problems.append(f"{probe_name} path {path} is the server's {route!r} route, expected one of {sorted(kinds)}")
        if get.get("scheme", "HTTP") != "HTTPS":
            problems.append(f"{probe_name} scheme is {get.get('scheme', 'HTTP')}: the port speaks TLS only (HTTPS)")
        port = resolve_port(bundle, get.get("port"))
        if port != tls_port:
            problems.append(f"{probe_name} port {get.get('port')!r} is {port}, not the TLS listener {tls_port}")
        if probe.get("timeoutSeconds", 1) >= probe.get("periodSeconds", 10):
            problems.append(f"{probe_name} timeoutSeconds is not below periodSeconds")
    return problems


def prestop_sleep_seconds(container: dict) -> float:
    """The preStop hook's sleep: the sleep action, or an exec of `sleep N`; 0 without one."""
    pre = (container.get("lifecycle") or {}).get("preStop") or {}
    if "sleep" in pre:
        return float(pre["sleep"]["seconds"])
    command = (pre.get("exec") or {}).get("command") or []
    words = shlex.split(" ".join(command[2:])) if command[:2] in (["sh", "-c"], ["/bin/sh", "-c"]) else command
    if words and PurePosixPath(words[0]).name == "sleep" and len(words) > 1:
        return float(words[1])
    return 0.0


def check_timing(bundle: Bundle) -> list[str]:
    problems = []
    settings = Settings(bundle)
    container, pod = bundle.container(), bundle.pod()
    prestop = prestop_sleep_seconds(container)
    drain = settings.number("drainTimeout")
    stream = settings.number("streamTimeout")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if prestop <= 0:
        problems.append("no preStop sleep: endpoints are still being removed when SIGTERM arrives")
    if grace <= prestop + drain:
        problems.append(f"terminationGracePeriodSeconds {grace} is not above preStop {prestop:g} s + "
                        f"drain timeout {drain:g} s ({settings.source('drainTimeout')})")
    if drain < stream:
        problems.append(f"drain timeout {drain:g} s is below the stream timeout {stream:g} s: "
                        "a request still arriving at SIGTERM may be cut off")
    strategy = bundle.deployment()["spec"].get("strategy", {})
    if strategy.get("type", "RollingUpdate") != "RollingUpdate" or \
            str(strategy.get("rollingUpdate", {}).get("maxUnavailable", "25%")) not in ("0", "0%"):
        problems.append("the rolling update may take pods away before new ones are ready (maxUnavailable is not 0)")
    return problems


def _cpu(quantity: Any) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def _bytes(quantity: Any) -> float:
    m = re.fullmatch(r"([\d.]+)([A-Za-z]*)", str(quantity))
    if not m or (m.group(2) and m.group(2) not in _UNITS):
        raise AssertionError(f"cannot read quantity {quantity!r}")
    return float(m.group(1)) * _UNITS.get(m.group(2), 1)


def check_resources(bundle: Bundle) -> list[str]:
    problems = []
    resources = bundle.container().get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    for kind in ("cpu", "memory"):
        if kind not in requests:
            problems.append(f"no {kind} request")
        if kind not in limits:
            problems.append(f"no {kind} limit")
    if problems:
        return problems
    if _cpu(requests["cpu"]) > _cpu(limits["cpu"]):
        problems.append("cpu request above its limit")
    if _bytes(requests["memory"]) > _bytes(limits["memory"]):
        problems.append("memory request above its limit")
    threads = Settings(bundle).get("threads")
    if isinstance(threads, (int, float, str)) and str(threads).isdigit():
        if int(threads) > math.ceil(_cpu(limits["cpu"])):
            problems.append(f"threads {threads} is more event loops than the CPU limit {limits['cpu']}")
    else:
        problems.append("threads is not set: the server would start one event loop per node core, not per CPU of its limit")
    return problems


def check_security(bundle: Bundle, image_user: str | None = None) -> list[str]:
    """Non-root with a numeric UID, read-only root, no privilege escalation, no capabilities:
    what the namespace's Pod Security "restricted" profile enforces, plus the image's USER."""
    problems = []
    pod, container = bundle.pod(), bundle.container()
    pod_sc, sc = pod.get("securityContext") or {}, container.get("securityContext") or {}
    if not (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True):
        problems.append("runAsNonRoot is not true")
    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    if not isinstance(uid, int) or uid == 0:
        problems.append(f"runAsUser is {uid!r}: a non-zero numeric UID is needed")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    if sc.get("privileged"):
        problems.append("privileged container")
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.append("readOnlyRootFilesystem is not true")
    if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
        problems.append("capabilities do not drop ALL")
    if (sc.get("capabilities") or {}).get("add"):
        problems.append("capabilities are added")
    seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        problems.append(f"seccompProfile is {seccomp!r}, not RuntimeDefault")
    for volume in pod.get("volumes", []):
        if "hostPath" in volume:
            problems.append(f"volume {volume['name']} is a hostPath")
    if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
        problems.append("the pod shares a host namespace")
    if image_user is not None:
        image_uid = image_user.split(":")[0]
        if not image_uid.isdigit() or int(image_uid) == 0:
            problems.append(f"the image's USER {image_user!r} is not a numeric non-root UID "
                            "(runAsNonRoot cannot verify a user name)")
        elif isinstance(uid, int) and int(image_uid) != uid:
            problems.append(f"runAsUser {uid} differs from the image's USER {image_uid} (owner of its writable directory)")
    return problems


def check_references(bundle: Bundle) -> list[str]:
    """Every Secret and ConfigMap the pod uses exists in the manifests, with the keys used."""
    problems = []
    pod, container = bundle.pod(), bundle.container()

    def need(kind: str, name: str, key: str | None, where: str) -> None:
        obj = bundle.get(kind, name)
        if obj is None:
            problems.append(f"{where}: {kind} {name!r} does not exist in deploy/kubernetes")
        elif key is not None and key not in _object_keys(obj):
            problems.append(f"{where}: {kind} {name!r} has no key {key!r} (keys: {sorted(_object_keys(obj))})")

    for volume in pod.get("volumes", []):
        where = f"volume {volume['name']}"
        if "secret" in volume:
            need("Secret", volume["secret"].get("secretName", ""), None, where)
            for item in volume["secret"].get("items") or []:
                need("Secret", volume["secret"]["secretName"], item["key"], where)
        if "configMap" in volume:
            need("ConfigMap", volume["configMap"].get("name", ""), None, where)
            for item in volume["configMap"].get("items") or []:
                need("ConfigMap", volume["configMap"]["name"], item["key"], where)
        for source in (volume.get("projected") or {}).get("sources", []):
            for kind, field_name in (("Secret", "secret"), ("ConfigMap", "configMap")):
                if field_name in source:
                    need(kind, source[field_name]["name"], None, where)
    for env in container.get("env", []):
        ref = env.get("valueFrom") or {}
        if "secretKeyRef" in ref:
            need("Secret", ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"], f"env {env['name']}")
        if "configMapKeyRef" in ref:
            need("ConfigMap", ref["configMapKeyRef"]["name"], ref["configMapKeyRef"]["key"], f"env {env['name']}")
    for env_from in container.get("envFrom", []):
        if "secretRef" in env_from:
            need("Secret", env_from["secretRef"]["name"], None, "envFrom")
        if "configMapRef" in env_from:
            need("ConfigMap", env_from["configMapRef"]["name"], None, "envFrom")
    return problems


def check_files(bundle: Bundle) -> list[str]:
    """Files named by the settings are there: certificate, key, token and config in their
    Secrets/ConfigMap (key by key), the state directory on a writable volume."""
    problems = []
    settings = Settings(bundle)
    expected = {"tlsCert": "Secret", "tlsKey": "Secret", "adminTokenFile": "Secret"}
    for key, kind in expected.items():
        path = settings.get(key)
        if not path:
            problems.append(f"{key} is not set")
            continue
        found = volume_file(bundle, str(path))
        if found is None:
            problems.append(f"{key} {path} is on no mounted Secret or ConfigMap")
            continue
        if found[0] != kind:
            problems.append(f"{key} {path} comes from a {found[0]}, not a {kind}")
        obj = bundle.get(found[0], found[1])
        if obj is not None and found[2] not in _object_keys(obj):
            problems.append(f"{key} {path}: {found[0]} {found[1]!r} has no key {found[2]!r} (keys: {sorted(_object_keys(obj))})")
    tls = bundle.get("Secret", (volume_file(bundle, str(settings.get("tlsCert") or "")) or ("", "", ""))[1])
    if tls is not None and tls.get("type") != "kubernetes.io/tls":
        problems.append(f"Secret {tls['metadata']['name']!r} holds the TLS certificate but is not of type kubernetes.io/tls")
    state = str(settings.get("stateDir") or "")
    m = mounted(bundle, state) if state.startswith("/") else None
    if m is None or ("emptyDir" not in m.volume and "persistentVolumeClaim" not in m.volume) or m.mount.get("readOnly"):
        problems.append(f"stateDir {state!r} is not on a writable volume (the root filesystem is read-only)")
    if settings.get("host") in (None, "127.0.0.1", "localhost", "::1"):
        problems.append(f"host is {settings.get('host')!r}: the probes and Services cannot reach a loopback listener")
    env = settings.env.get("SCENESCORE_REGISTRY")
    if env is None or "secretKeyRef" not in (env.get("valueFrom") or {}):
        problems.append("SCENESCORE_REGISTRY does not come from a Secret (the URL carries a password)")
    if "--registry" in settings.flags:
        problems.append("--registry on the command line exposes the database password: use SCENESCORE_REGISTRY from a Secret")
    return problems


def check_scaling(bundle: Bundle) -> list[str]:
    problems = []
    deployment = bundle.deployment()
    hpas = [h for h in bundle.all("HorizontalPodAutoscaler")
            if h["spec"]["scaleTargetRef"].get("kind") == "Deployment" and h["spec"]["scaleTargetRef"].get("name") == DEPLOYMENT]
    if len(bundle.all("HorizontalPodAutoscaler")) != len(hpas):
        problems.append("a HorizontalPodAutoscaler targets something other than the Deployment")
    minimum = deployment["spec"].get("replicas", 1)
    if hpas:
        if "replicas" in deployment["spec"]:
            problems.append("the Deployment sets replicas while a HorizontalPodAutoscaler scales it: "
                            "every kubectl apply would reset the replica count")
        minimum = hpas[0]["spec"].get("minReplicas", 1)
        requests = (bundle.container().get("resources") or {}).get("requests") or {}
        for metric in hpas[0]["spec"].get("metrics", []):
            name = (metric.get("resource") or {}).get("name")
            if name and name not in requests:
                problems.append(f"the HorizontalPodAutoscaler scales on {name} utilisation but the container requests no {name}")
    if minimum < 2:
        problems.append(f"at least 2 replicas are needed to survive a disruption, minimum is {minimum}")
    pdbs = bundle.all("PodDisruptionBudget")
    if not pdbs:
        problems.append("no PodDisruptionBudget")
    for pdb in pdbs:
        spec = pdb["spec"]
        if "maxUnavailable" in spec:
            if str(spec["maxUnavailable"]) in ("0", "0%"):
                problems.append("PodDisruptionBudget maxUnavailable 0 blocks every node drain")
        elif "minAvailable" in spec and isinstance(spec["minAvailable"], int) and spec["minAvailable"] >= minimum:
            problems.append(f"PodDisruptionBudget minAvailable {spec['minAvailable']} >= replicas {minimum} blocks every node drain")
    return problems


ALL_CHECKS = (check_kustomization, check_references, check_selectors, check_ports, check_probes, check_timing,
              check_resources, check_security, check_settings, check_service_links, check_files, check_scaling)


# --------------------------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------------------------

@dataclass
class Instruction:
    command: str       # upper case: FROM, RUN, COPY, …
    rest: str          # the arguments, continuation lines joined
    line: int

    def flags(self) -> dict[str, str]:
        return dict(re.findall(r"--(\w[\w-]*)=(\S+)", self.rest))

    def words(self) -> list[str]:
        """Arguments without --flags; the JSON (exec) form is decoded."""
        text = re.sub(r"^(\s*--\w[\w-]*=\S+\s*)+", "", self.rest).strip()
        if text.startswith("["):
            return [str(w) for w in json.loads(text)]
        return text.split()


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction]

    def all(self, command: str) -> list[Instruction]:
        return [i for i in self.instructions if i.command == command]


@dataclass
class Dockerfile:
    args: dict[str, str]          # global ARGs (before the first FROM) and their defaults
    stages: list[Stage]

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)

    def resolve(self, text: str, extra: dict[str, str] | None = None) -> str:
        values = {**self.args, **(extra or {})}
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m.group(1) or m.group(2), m.group(0)), text)

    def base_image(self, stage: Stage) -> str:
        """A stage's base image, following FROM <earlier stage> to its image."""
        seen = set()
        base = self.resolve(stage.base)
        while (earlier := self.stage(base)) is not None and base not in seen:
            seen.add(base)
            base = self.resolve(earlier.base)
        return base


def parse_dockerfile(text: str) -> Dockerfile:
    logical: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buffer):
            continue  # comments (inside continuations too) and blank lines
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        buffer += stripped
        logical.append((start, buffer))
        buffer = ""
    if buffer:
        logical.append((start, buffer))
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, line in logical:
        command, _, rest = line.partition(" ")
        command = command.upper()
        rest = rest.strip()
        if command == "FROM":
            words = re.sub(r"--\w+=\S+\s*", "", rest).split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name, []))
        elif not stages:
            if command == "ARG":
                name, _, default = rest.partition("=")
                global_args[name.strip()] = default.strip().strip('"')
        else:
            stages[-1].instructions.append(Instruction(command, rest, number))
    return Dockerfile(global_args, stages)


def load_dockerfile(path: Path = DOCKERFILE) -> Dockerfile:
    return parse_dockerfile(path.read_text())


def dockerignore_patterns(path: Path = DOCKERIGNORE) -> list[str]:
    if not path.exists():
        return []
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def dockerignored(relative: str, patterns: list[str]) -> bool:
    """Whether `relative` (or a directory above it) is excluded (last matching pattern wins)."""
    parts = PurePosixPath(relative).parts
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        p = pattern.lstrip("!").strip("/")
        for candidate in candidates:
            if fnmatch.fnmatchcase(candidate, p) or (p.startswith("**/") and
                                                      fnmatch.fnmatchcase(PurePosixPath(candidate).name, p[3:])):
                excluded = not negate
    return excluded


def user_of(stage: Stage) -> str | None:
    users = stage.all("USER")
    return users[-1].words()[0] if users else None


def _is_debian12(image: str) -> bool:
    return bool(re.fullmatch(r"(docker\.io/(library/)?)?debian:(bookworm|12)([-.][\w.-]*)?(@sha256:[0-9a-f]+)?", image))


def check_dockerfile(df: Dockerfile, bundle: Bundle | None = None, repo: Path = REPO,
                     ignore: list[str] | None = None) -> list[str]:
    """The Dockerfile, statically (no Docker engine here); with `bundle`, against the Deployment.
    `ignore`: .dockerignore patterns (default: the repository's file)."""
    problems = []
    if len(df.stages) < 2:
        return ["not a multi-stage build: the runtime image would carry the compiler"]
    final = df.stages[-1]
    runtime_base = df.base_image(final)
    if not _is_debian12(runtime_base):
        problems.append(f"the runtime stage's base is {runtime_base!r}, not Debian 12 (bookworm)")

    # The build stage: the one whose RUN builds the release product.
    builds = [(stage, run) for stage in df.stages for run in stage.all("RUN") if "swift build" in run.rest]
    release = [(s, r) for s, r in builds if re.search(r"swift build\b[^&;|]*-c release[^&;|]*--product scenescore\b", r.rest)
               or re.search(r"swift build\b[^&;|]*--product scenescore\b[^&;|]*-c release", r.rest)]
    if not release:
        problems.append("no stage runs `swift build -c release --product scenescore`")
    else:
        stage, run = release[0]
        base = df.base_image(stage)
        if not re.fullmatch(r"(docker\.io/(library/)?)?swift:6\.3\.1-bookworm(@sha256:[0-9a-f]+)?", base):
            problems.append(f"the build stage's base is {base!r}, not the Swift 6.3.1 Debian 12 image swift:6.3.1-bookworm")
        for product in plugin_products(repo / "scripts/install-plugins.sh"):
            if product not in run.rest:
                problems.append(f"the build does not build the plugin product {product}")
        if "install-plugins.sh" not in run.rest:
            problems.append("the build does not install the plugins with scripts/install-plugins.sh")
        args_before = {i.rest.split("=")[0].strip(): i.rest.partition("=")[2].strip().strip('"')
                       for i in stage.instructions if i.command == "ARG" and i.line < run.line}
        if "SCENESCORE_TARGET_CPU" not in args_before:
            problems.append("SCENESCORE_TARGET_CPU is not a build ARG of the build stage")
        elif args_before["SCENESCORE_TARGET_CPU"] != package_default_target_cpu(repo / "Package.swift"):
            problems.append(f"ARG SCENESCORE_TARGET_CPU defaults to {args_before['SCENESCORE_TARGET_CPU']!r}, "
                            f"Package.swift to {package_default_target_cpu(repo / 'Package.swift')!r}")
        if "static-swift-stdlib" in run.rest or "static-stdlib" in run.rest:
            problems.append("a static Swift runtime in the server would be a second runtime beside the Swift plugins'")
        if final is stage:
            problems.append("the final stage is the build stage")

    user = user_of(final)
    if user is None:
        problems.append("the final stage sets no USER: the container would run as root")
    else:
        uid = user.split(":")[0]
        if not uid.isdigit() or int(uid) == 0:
            problems.append(f"the final stage's USER {user!r} is not a numeric non-root UID")

    runtime_runs = " ".join(r.rest for r in final.all("RUN"))
    for package in ("libnghttp2-14", "libssl3", "libpq5"):
        if not re.search(rf"apt-get install[^&;]*\b{re.escape(package)}\b", runtime_runs):
            problems.append(f"the runtime stage does not install {package}")
    if re.search(r"\b(swiftlang|libnghttp2-dev|libssl-dev|libpq-dev|build-essential|clang)\b", runtime_runs):
        problems.append("the runtime stage installs build tools or headers")
    copies = final.all("COPY")
    destinations = [c.words()[-1] for c in copies]
    if not any(d.startswith("/usr/lib/swift/") for d in destinations):
        problems.append("the runtime stage does not copy the Swift runtime libraries")
    for env in final.all("ENV"):
        if "SCENESCORE_" in env.rest:
            problems.append(f"ENV {env.rest!r} in the runtime image: SCENESCORE_* variables outrank the "
                            "ConfigMap's config file and would silently override it")

    entry = final.all("ENTRYPOINT")
    cmd = final.all("CMD")
    program = None
    if entry:
        if not entry[-1].rest.startswith("["):
            problems.append("ENTRYPOINT is in shell form: SIGTERM would reach /bin/sh, not the server")
        program = entry[-1].words()[0]
    elif cmd:
        program = cmd[-1].words()[0]
    if program is None or PurePosixPath(program).name != "scenescore":
        problems.append(f"ENTRYPOINT/CMD runs {program!r}, not scenescore")
    elif not any(program == d or (d.endswith("/") and program.startswith(d)) for d in destinations):
        problems.append(f"ENTRYPOINT program {program} is not a file the runtime stage copies in")

    # Build-context sources exist and are not excluded by .dockerignore.
    patterns = ignore if ignore is not None else dockerignore_patterns(repo / ".dockerignore")
    for stage in df.stages:
        for c in stage.all("COPY") + stage.all("ADD"):
            if "from" in c.flags():
                continue
            for source in c.words()[:-1]:
                matches = list(repo.glob(source)) if any(ch in source for ch in "*?[") else [repo / source]
                if not any(m.exists() for m in matches) and "*" not in source:
                    problems.append(f"COPY source {source} (line {c.line}) does not exist in the repository")
                if dockerignored(source.rstrip("/"), patterns):
                    problems.append(f"COPY source {source} (line {c.line}) is excluded by .dockerignore")
    for must in (".build", "var"):
        if not dockerignored(must, patterns):
            problems.append(f".dockerignore does not exclude {must}/")

    if bundle is not None:
        exposed = {int(w.split("/")[0]) for e in final.all("EXPOSE") for w in e.words()}
        for port in listener_ports(bundle).values():
            if port not in exposed:
                problems.append(f"the image does not EXPOSE {port}, a port the Deployment's server listens on")
        settings = Settings(bundle)
        for key in ("modelDir", "pluginDir"):
            path = str(settings.get(key) or "")
            if not any(path.rstrip("/") == d.rstrip("/") for d in destinations):
                problems.append(f"the Deployment's {key} {path!r} is not a directory the image provides "
                                f"(runtime COPY destinations: {destinations})")
        if user is not None:
            problems += [p for p in check_security(bundle, user) if "image's USER" in p]
    return problems


def all_problems(bundle: Bundle) -> list[str]:
    return [p for check in ALL_CHECKS for p in check(bundle)]
