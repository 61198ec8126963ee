"""The checks can fail: each test breaks a copy of the manifests or of the Dockerfile in one way
a real edit could, and asserts that the validator or check meant to catch it refuses it (and
that the unbroken original passes the same check)."""

from __future__ import annotations

import json
import re

import pytest

import deploylib

try:
    import kubernetes_validate
except ImportError:
    kubernetes_validate = None


def _container(b):
    return b.container()


def _args(b):
    return _container(b)["args"]


def _set_arg(b, flag, value):
    args = _args(b)
    args[args.index(flag) + 1] = value


def _config(b, change):
    cm = b.get("ConfigMap", "scenescore-config")
    data = json.loads(cm["data"]["config.json"])
    change(data)
    cm["data"]["config.json"] = json.dumps(data)


def _rename(obj, old, new):
    obj[new] = obj.pop(old)


# ----------------------------------------------------------------------------- kubernetes-validate
# (The schemas do not enumerate every value: a probe `scheme: https`, which the API server
# refuses, passes them; check_probes catches it below.)

SCHEMA_BREAKS = {
    "misspelled field (readynessProbe)": lambda d: _rename(_container_of(d), "readinessProbe", "readynessProbe"),
    "misspelled nested field (httpGet.pth)": lambda d: _rename(_container_of(d)["livenessProbe"]["httpGet"], "path", "pth"),
    "field at the wrong level (terminationGracePeriodSeconds in the container)":
        lambda d: _container_of(d).__setitem__("terminationGracePeriodSeconds", 40),
    "wrong type (containerPort as text)": lambda d: _container_of(d)["ports"][0].__setitem__("containerPort", "https"),
    "missing required field (container image name)": lambda d: _container_of(d).pop("name"),
}


def _container_of(deployment):
    return deployment["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("break_it", SCHEMA_BREAKS.values(), ids=SCHEMA_BREAKS.keys())
def test_kubernetes_validate_refuses_a_broken_deployment(bundle, break_it):
    if kubernetes_validate is None:
        pytest.fail("the PyPI package kubernetes-validate is not installed (scripts/setup.sh installs it)")
    deployment = bundle.deployment()
    kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)  # the original passes
    broken = bundle.copy().deployment()
    break_it(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_kubernetes_validate_refuses_an_unknown_service_field(bundle):
    if kubernetes_validate is None:
        pytest.fail("the PyPI package kubernetes-validate is not installed (scripts/setup.sh installs it)")
    service = bundle.copy().get("Service", "scenescore")
    service["spec"]["ports"][0]["appProtcol"] = "https"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, kubernetes_validate.latest_version(), strict=True)


# ----------------------------------------------------------------------------- semantic checks

def _remove_prestop(b):
    del _container(b)["lifecycle"]


def _image_user_root(b):
    _container(b)["securityContext"]["runAsUser"] = 0
    b.pod()["securityContext"]["runAsUser"] = 0


def _drop_run_as_non_root(b):
    del _container(b)["securityContext"]["runAsNonRoot"]
    del b.pod()["securityContext"]["runAsNonRoot"]


def _add_to_kustomization(name):
    return lambda b: b.kustomization["resources"].append(name)


SEMANTIC_BREAKS = [
    # (id, check, break, expected words in a problem)
    ("readiness path that does not exist", deploylib.check_probes,
     lambda b: _container(b)["readinessProbe"]["httpGet"].__setitem__("path", "/v2/health/readyy"), "not served"),
    ("liveness probe on the readiness route", deploylib.check_probes,
     lambda b: _container(b)["livenessProbe"]["httpGet"].__setitem__("path", "/readyz"), "'readyz' route"),
    ("readiness probe on the liveness route", deploylib.check_probes,
     lambda b: _container(b)["readinessProbe"]["httpGet"].__setitem__("path", "/healthz"), "'live' route"),
    ("startup probe on the readiness route (restarts replicas waiting for PostgreSQL)", deploylib.check_probes,
     lambda b: _container(b)["startupProbe"]["httpGet"].__setitem__("path", "/v2/health/ready"), "'readyz' route"),
    ("probe over cleartext HTTP", deploylib.check_probes,
     lambda b: _container(b)["startupProbe"]["httpGet"].__setitem__("scheme", "HTTP"), "scheme"),
    ("probe scheme in lower case (the schemas let it through)", deploylib.check_probes,
     lambda b: _container(b)["readinessProbe"]["httpGet"].__setitem__("scheme", "https"), "scheme"),
    ("probe on the admin port", deploylib.check_probes,
     lambda b: _container(b)["livenessProbe"]["httpGet"].__setitem__("port", "admin"), "not the TLS listener"),
    ("--port moved, containerPort not", deploylib.check_ports,
     lambda b: _set_arg(b, "--port", "8080"), "no containerPort declares it"),
    ("Service targets a port nobody listens on", deploylib.check_ports,
     lambda b: b.get("Service", "scenescore")["spec"]["ports"][0].__setitem__("targetPort", 8444), "no listener"),
    ("admin Service targets a misspelled port name", deploylib.check_ports,
     lambda b: b.get("Service", "scenescore-admin")["spec"]["ports"][0].__setitem__("targetPort", "admn"), "no listener"),
    ("grace period shorter than preStop + drain", deploylib.check_timing,
     lambda b: b.pod().__setitem__("terminationGracePeriodSeconds", 20), "terminationGracePeriodSeconds 20"),
    ("drain timeout raised past the grace period", deploylib.check_timing,
     lambda b: _set_arg(b, "--drain-timeout", "40"), "drain timeout 40"),
    ("drain timeout from the ConfigMap, flag removed, too long", deploylib.check_timing,
     lambda b: (_args(b).__delitem__(slice(_args(b).index("--drain-timeout"), _args(b).index("--drain-timeout") + 2)),
                _config(b, lambda c: c.__setitem__("drainTimeout", 35))), "config key drainTimeout"),
    ("drain timeout shorter than a request may take", deploylib.check_timing,
     lambda b: _set_arg(b, "--drain-timeout", "3"), "below the stream timeout"),
    ("no preStop sleep", deploylib.check_timing, _remove_prestop, "no preStop sleep"),
    ("rolling update may drop capacity", deploylib.check_timing,
     lambda b: b.deployment()["spec"]["strategy"]["rollingUpdate"].__setitem__("maxUnavailable", 1), "maxUnavailable"),
    ("runs as root", deploylib.check_security, _image_user_root, "runAsUser is 0"),
    ("runAsNonRoot removed", deploylib.check_security, _drop_run_as_non_root, "runAsNonRoot"),
    ("writable root filesystem", deploylib.check_security,
     lambda b: _container(b)["securityContext"].__setitem__("readOnlyRootFilesystem", False), "readOnlyRootFilesystem"),
    ("privilege escalation allowed", deploylib.check_security,
     lambda b: _container(b)["securityContext"].pop("allowPrivilegeEscalation"), "allowPrivilegeEscalation"),
    ("capabilities kept", deploylib.check_security,
     lambda b: _container(b)["securityContext"].pop("capabilities"), "drop ALL"),
    ("Secret volume names a missing Secret", deploylib.check_references,
     lambda b: b.pod()["volumes"][1]["secret"].__setitem__("secretName", "scenescore-tsl"), "'scenescore-tsl' does not exist"),
    ("env reads a missing Secret key", deploylib.check_references,
     lambda b: _container(b)["env"][0]["valueFrom"]["secretKeyRef"].__setitem__("key", "uri"), "no key 'uri'"),
    ("ConfigMap volume names a missing ConfigMap", deploylib.check_references,
     lambda b: b.pod()["volumes"][0]["configMap"].__setitem__("name", "scenescore-conf"), "'scenescore-conf' does not exist"),
    ("Service selector typo", deploylib.check_selectors,
     lambda b: b.get("Service", "scenescore")["spec"]["selector"].__setitem__("app.kubernetes.io/component", "sever"),
     "Service 'scenescore' selector"),
    ("PDB selects other pods", deploylib.check_selectors,
     lambda b: b.get("PodDisruptionBudget", "scenescore")["spec"]["selector"]["matchLabels"].__setitem__(
         "app.kubernetes.io/name", "other"), "PodDisruptionBudget"),
    ("Deployment selector not matching its pods", deploylib.check_selectors,
     lambda b: b.deployment()["spec"]["template"]["metadata"]["labels"].pop("app.kubernetes.io/component"),
     "Deployment selector"),
    ("unknown flag", deploylib.check_settings,
     lambda b: _args(b).extend(["--drain-timeout-seconds", "15"]), "--drain-timeout-seconds is not"),
    ("unknown config key", deploylib.check_settings,
     lambda b: _config(b, lambda c: c.__setitem__("maxCandidate", 10)), "'maxCandidate' is not a ServerConfig key"),
    ("unknown SCENESCORE_ variable", deploylib.check_settings,
     lambda b: _container(b)["env"].append({"name": "SCENESCORE_MAX_CANDIDATE", "value": "10"}), "SCENESCORE_MAX_CANDIDATE"),
    ("not the serve command", deploylib.check_settings, lambda b: _args(b).__setitem__(0, "server"), "serve command"),
    ("service links left on", deploylib.check_service_links,
     lambda b: b.pod().pop("enableServiceLinks"), "SCENESCORE_PORT"),
    ("TLS key file name not in the Secret", deploylib.check_files,
     lambda b: _set_arg(b, "--tls-cert", "/etc/scenescore/tls/tls.cert"), "no key 'tls.cert'"),
    ("token file outside every mount", deploylib.check_files,
     lambda b: _set_arg(b, "--admin-token-file", "/run/secrets/token"), "on no mounted Secret"),
    ("state directory on the read-only root", deploylib.check_files,
     lambda b: _set_arg(b, "--state-dir", "/opt/scenescore/state"), "not on a writable volume"),
    ("listening on loopback only", deploylib.check_files,
     lambda b: _config(b, lambda c: c.__setitem__("host", "127.0.0.1")), "loopback"),
    ("registry URL as a literal", deploylib.check_files,
     lambda b: _container(b)["env"].__setitem__(0, {"name": "SCENESCORE_REGISTRY", "value": "postgres://u:p@h/db"}),
     "does not come from a Secret"),
    ("more event loops than CPUs", deploylib.check_resources,
     lambda b: _config(b, lambda c: c.__setitem__("threads", 8)), "threads 8"),
    ("no memory limit", deploylib.check_resources,
     lambda b: _container(b)["resources"]["limits"].pop("memory"), "no memory limit"),
    ("replicas beside the autoscaler", deploylib.check_scaling,
     lambda b: b.deployment()["spec"].__setitem__("replicas", 3), "every kubectl apply"),
    ("autoscaler allows a single replica", deploylib.check_scaling,
     lambda b: b.get("HorizontalPodAutoscaler", "scenescore")["spec"].__setitem__("minReplicas", 1), "at least 2 replicas"),
    ("PDB that blocks every drain", deploylib.check_scaling,
     lambda b: b.get("PodDisruptionBudget", "scenescore")["spec"].__setitem__("maxUnavailable", 0), "blocks every node drain"),
    ("example Secret applied by kustomize", deploylib.check_kustomization,
     _add_to_kustomization("secret-tls.example.yaml"), "overwrite the real Secret"),
    ("manifest missing from kustomize", deploylib.check_kustomization,
     lambda b: b.kustomization["resources"].remove("poddisruptionbudget.yaml"), "poddisruptionbudget.yaml is not listed"),
    ("kustomization resource that does not exist", deploylib.check_kustomization,
     _add_to_kustomization("networkpolicy.yaml"), "does not exist"),
]


@pytest.mark.parametrize("check,break_it,expected", [s[1:] for s in SEMANTIC_BREAKS], ids=[s[0] for s in SEMANTIC_BREAKS])
def test_semantic_check_refuses_a_broken_copy(bundle, check, break_it, expected):
    assert check(bundle) == [], "the committed manifests must pass before the copy is broken"
    broken = bundle.copy()
    break_it(broken)
    problems = check(broken)
    assert any(expected in p for p in problems), f"expected a problem mentioning {expected!r}, got {problems}"


def test_probe_check_follows_the_routes_of_the_server(bundle):
    """If Routes.swift stopped serving the OIP paths, the manifests would fail."""
    routes = {p: r for p, r in deploylib.server_routes().items() if not p.startswith("/v2/")}
    problems = deploylib.check_probes(bundle, routes=routes)
    assert any("/v2/health/ready is not served" in p for p in problems), problems


def test_flag_check_follows_the_flags_of_the_server(bundle):
    flags = deploylib.serve_flags_from_source() - {"--drain-timeout"}
    assert any("--drain-timeout is not" in p for p in deploylib.check_settings(bundle, flags=flags))


# ----------------------------------------------------------------------------- Dockerfile

def _swap(text, old, new, count=1):
    assert old in text, old
    return text.replace(old, new, count)


DOCKERFILE_BREAKS = [
    ("runtime on Ubuntu", lambda t: _swap(t, "ARG RUNTIME_IMAGE=debian:bookworm-slim", "ARG RUNTIME_IMAGE=ubuntu:24.04"),
     "not Debian 12"),
    ("runtime on Debian 11", lambda t: _swap(t, "FROM ${RUNTIME_IMAGE} AS runtime", "FROM debian:bullseye-slim AS runtime"),
     "not Debian 12"),
    ("older Swift", lambda t: _swap(t, "ARG SWIFT_IMAGE=swift:6.3.1-bookworm", "ARG SWIFT_IMAGE=swift:6.2-bookworm"),
     "not the Swift 6.3.1"),
    ("no USER", lambda t: _swap(t, "USER 10001:10001\n", ""), "sets no USER"),
    ("USER by name", lambda t: _swap(t, "USER 10001:10001", "USER scenescore"), "not a numeric non-root UID"),
    ("USER root", lambda t: _swap(t, "USER 10001:10001", "USER 0"), "not a numeric non-root UID"),
    ("debug build", lambda t: _swap(t, "swift build -c release --product scenescore", "swift build --product scenescore"),
     "swift build -c release --product scenescore"),
    ("a plugin left out", lambda t: _swap(t, "for product in ApparelPlugin ElectronicsPlugin BeautyPlugin",
                                          "for product in ApparelPlugin BeautyPlugin"), "ElectronicsPlugin"),
    ("no target CPU ARG", lambda t: _swap(t, "ARG SCENESCORE_TARGET_CPU=haswell\n", ""), "SCENESCORE_TARGET_CPU is not"),
    ("target CPU default differs from Package.swift", lambda t: _swap(t, "ARG SCENESCORE_TARGET_CPU=haswell",
                                                                      "ARG SCENESCORE_TARGET_CPU=x86-64"), "defaults to 'x86-64'"),
    ("static Swift runtime", lambda t: _swap(t, "swift build -c release --product scenescore",
                                             "swift build -c release --static-swift-stdlib --product scenescore"),
     "second runtime"),
    ("ENTRYPOINT in shell form", lambda t: _swap(t, 'ENTRYPOINT ["/usr/local/bin/scenescore"]',
                                                 "ENTRYPOINT /usr/local/bin/scenescore"), "shell form"),
    ("ENTRYPOINT runs something else", lambda t: _swap(t, 'ENTRYPOINT ["/usr/local/bin/scenescore"]',
                                                       'ENTRYPOINT ["/bin/bash"]'), "not scenescore"),
    ("ENTRYPOINT names a file the image lacks", lambda t: _swap(t, 'ENTRYPOINT ["/usr/local/bin/scenescore"]',
                                                                'ENTRYPOINT ["/usr/bin/scenescore"]'), "not a file the runtime"),
    ("libpq5 missing", lambda t: _swap(t, "libnghttp2-14 libssl3 libpq5", "libnghttp2-14 libssl3"), "libpq5"),
    ("headers in the runtime", lambda t: _swap(t, "libnghttp2-14 libssl3 libpq5", "libnghttp2-14 libssl3 libpq5 libssl-dev"),
     "build tools or headers"),
    ("settings as image ENV", lambda t: _swap(t, "WORKDIR /var/lib/scenescore\n",
                                              "WORKDIR /var/lib/scenescore\nENV SCENESCORE_HOST=0.0.0.0\n"), "silently override"),
    ("admin port not exposed", lambda t: _swap(t, "EXPOSE 8443 9443", "EXPOSE 8443"), "EXPOSE 9443"),
    ("model elsewhere than the Deployment's --model-dir",
     lambda t: _swap(t, "COPY --from=model / /opt/scenescore/models/default/", "COPY --from=model / /models/"),
     "modelDir"),
    ("Swift runtime not copied", lambda t: _swap(t, "COPY --from=build /out/swift-runtime/ /usr/lib/swift/linux/\n", ""),
     "Swift runtime libraries"),
    ("single stage", lambda t: re.sub(r"(?s)^.*?(FROM \$\{RUNTIME_IMAGE\} AS runtime)", r"\1", t), "multi-stage"),
]


@pytest.mark.parametrize("break_it,expected", [b[1:] for b in DOCKERFILE_BREAKS], ids=[b[0] for b in DOCKERFILE_BREAKS])
def test_dockerfile_check_refuses_a_broken_copy(bundle, break_it, expected):
    text = deploylib.DOCKERFILE.read_text()
    assert deploylib.check_dockerfile(deploylib.parse_dockerfile(text), bundle) == []
    problems = deploylib.check_dockerfile(deploylib.parse_dockerfile(break_it(text)), bundle)
    assert any(expected in p for p in problems), f"expected a problem mentioning {expected!r}, got {problems}"


def test_dockerfile_check_refuses_a_dockerignore_that_drops_sources(dockerfile, bundle):
    patterns = deploylib.dockerignore_patterns() + ["Sources"]
    problems = deploylib.check_dockerfile(dockerfile, bundle, ignore=patterns)
    assert any("COPY source Sources" in p and ".dockerignore" in p for p in problems), problems


def test_dockerfile_check_refuses_a_dockerignore_that_keeps_build_outputs(dockerfile, bundle):
    patterns = [p for p in deploylib.dockerignore_patterns() if p != ".build*"]
    problems = deploylib.check_dockerfile(dockerfile, bundle, ignore=patterns)
    assert any("does not exclude .build/" in p for p in problems), problems


def test_image_user_must_match_the_pods_uid(dockerfile, bundle):
    text = _swap(deploylib.DOCKERFILE.read_text(), "USER 10001:10001", "USER 20000:20000")
    problems = deploylib.check_dockerfile(deploylib.parse_dockerfile(text), bundle)
    assert any("differs from the image's USER 20000" in p for p in problems), problems
