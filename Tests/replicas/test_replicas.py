"""Several replicas of the real server sharing one PostgreSQL scene registry, behind HAProxy
(deploy/haproxy/haproxy.cfg):

a.  scoring through HAProxy (httpx and curl over TLS + h2) reaches every replica; one registry;
a2. HAProxy hides a replica SIGKILLed and one drained (SIGTERM) under load: no failed request;
b.  a push (and a rollback, a label move) through one replica is served by all within 2 s,
    with that version's scores; b2. the canary share routes the same request ids everywhere;
c.  a load through HAProxy sees no failed request while ten heads are pushed;
d.  PostgreSQL stopped and restarted mid-run: scoring and /readyz unaffected, writes 503 with
    the reason, scenescore_registry_reachable 0 then 1, logs, recovery without restart;
    d2. a replica cut off from PostgreSQL (a TCP proxy) misses a push and catches up when the
    connection returns; the registry password never shows (503 detail, /metrics, log);
e.  a replica SIGKILLed mid-publish (16 MiB head) and restarted serves what PostgreSQL holds:
    the version entirely there or not at all, on every replica; HAProxy keeps it out until ready;
f.  concurrent pushes with the same if-match through two replicas: one 200, one 409; the retry
    with the new generation keeps both versions;
g.  a replica started later (fresh state directory) is ready only when it serves every stable
    version, canary and removal included.

Each test uses scenes of its own (rep-<letter>...). Heads are made with Tests/e2e/heads.py for
the served backbone (ReferenceHeads remembers their weights, so scores are checked against
numpy). Which head version answered is read from each replica directly (h2c,
`x-scenescore-head-version`); the 100 ms propagation target is scripts/bench_replicas.py's.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
import time

import httpx
import numpy as np
import pytest

import cluster
import heads
from conftest import REPLICAS, Deployment
from h2util import H2Conn, random_arrays, wire
from scenes_util import assert_admin_problem, h2_client
from scenescore_client import canary_chosen
from scenescore_client.admin import ADMIN_PREFIX

OCTETS = {"content-type": "application/octet-stream"}
PROPAGATION_BOUND = 2.0  # seconds; the 100 ms target is measured by scripts/bench_replicas.py
SERVED_TIMEOUT = 10.0  # for heads of many MiB, and for recovery after an outage


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def admin_request(server, method: str, path: str, **kw) -> httpx.Response:
    with server.admin() as admin:
        return admin.request(method, path, **kw)


def register(server, ref, scene: str, version: str, *, seed: int, **kw) -> dict:
    r = admin_request(server, "PUT", f"{ADMIN_PREFIX}/scenes/{scene}", headers=OCTETS,
                      content=ref.make(scene, version, seed=seed, **kw))
    assert r.status_code == 201, f"register {scene} through {server.name}: {r.status_code} {r.text[:400]}"
    return r.json()


def push(server, ref, scene: str, version: str, *, seed: int, if_match: int | None = None,
         label: str | None = None, body: bytes | None = None) -> httpx.Response:
    headers = dict(OCTETS)
    if if_match is not None:
        headers["if-match"] = str(if_match)
    return admin_request(server, "POST", f"{ADMIN_PREFIX}/scenes/{scene}/versions",
                         params={"label": label} if label else None, headers=headers,
                         content=body if body is not None else ref.make(scene, version, seed=seed))


def push_ok(server, ref, scene: str, version: str, *, seed: int, **kw) -> dict:
    r = push(server, ref, scene, version, seed=seed, **kw)
    assert r.status_code == 200, f"push {scene} {version} through {server.name}: {r.status_code} {r.text[:400]}"
    doc = r.json()
    assert doc["stable"] == version, doc
    return doc


def scene_doc(server, scene: str) -> dict | None:
    r = admin_request(server, "GET", f"{ADMIN_PREFIX}/scenes/{scene}")
    if r.status_code == 404:
        return None
    assert r.status_code == 200, f"GET scene {scene} on {server.name}: {r.status_code} {r.text[:300]}"
    return r.json()


def all_scenes(server) -> list[dict]:
    r = admin_request(server, "GET", f"{ADMIN_PREFIX}/scenes")
    assert r.status_code == 200, f"GET scenes on {server.name}: {r.status_code} {r.text[:300]}"
    return sorted(r.json()["scenes"], key=lambda s: s["scene"])


def wait_served(dep: Deployment, servers, scene: str, version: str, timeout: float,
                since: float | None = None) -> dict[str, float]:
    """Poll each replica (score request over its h2c port) until every one answers `scene` with
    `version`. Returns name -> seconds from `since` (default: now) to the first such answer."""
    start = since if since is not None else time.monotonic()
    deadline = time.monotonic() + timeout
    seen: dict[str, str | None] = {}
    done: dict[str, float] = {}
    while True:
        for server in servers:
            if server.name in done:
                continue
            got = dep.probe.version(server.h2c_port, scene)
            seen[server.name] = got
            if got == version:
                done[server.name] = time.monotonic() - start
        if len(done) == len(servers):
            return done
        if time.monotonic() > deadline:
            pytest.fail(f"{scene} {version} not served by every replica within {timeout}s: last seen {seen}, "
                        f"served after {done}\n{dep.describe()}")
        time.sleep(0.005)


def check_scores(dep: Deployment, ref, server, scene: str, version: str) -> None:
    """The replica's scores for `scene` are those of `version`'s weights (numpy reference)."""
    r = dep.probe.score(server.h2c_port, scene)
    assert r.status == 200, r
    decoded = wire.decode_response(bytes(r.body))
    assert decoded.head_version == version, (server.name, decoded.head_version, version)
    arrays = random_arrays(2, 7, dep.model.schema)  # what Probe.body encodes
    ref.check(scene, version, arrays, np.asarray(decoded.scores))


def registry_reachable(dep: Deployment, server) -> float | None:
    try:
        return dep.probe.gauge(server.h2c_port, "scenescore_registry_reachable")
    except Exception:  # noqa: BLE001
        return None


def wait_reachable(dep: Deployment, servers, value: float, timeout: float) -> dict[str, float]:
    start = time.monotonic()
    done: dict[str, float] = {}
    last: dict[str, float | None] = {}
    while len(done) < len(servers):
        for server in servers:
            if server.name not in done:
                last[server.name] = got = registry_reachable(dep, server)
                if got == value:
                    done[server.name] = time.monotonic() - start
        if time.monotonic() - start > timeout:
            pytest.fail(f"scenescore_registry_reachable did not become {value} on every replica within {timeout}s: "
                        f"{last}\n{dep.describe()}")
        time.sleep(0.05)
    return done


def same_listing(servers, scene: str, timeout: float) -> dict:
    """GET /admin/v1/scenes/{scene} answers the same document on every replica (waiting for
    replicas still fetching a change); that document."""
    deadline = time.monotonic() + timeout
    while True:
        docs = {s.name: scene_doc(s, scene) for s in servers}
        first = next(iter(docs.values()))
        if all(d == first for d in docs.values()):
            return first
        if time.monotonic() > deadline:
            pytest.fail(f"replicas disagree about {scene}: {json.dumps(docs, indent=1)[:3000]}")
        time.sleep(0.05)


def pg_versions(pg: cluster.PgCluster, scene: str) -> tuple[list[str], dict[str, str]] | None:
    """(versions oldest first, label -> version) of a scene as PostgreSQL holds them, read with psql
    from the registry's tables; None when the schema is not the one this query knows."""
    try:
        versions = [r[0] for r in pg.psql(f"SELECT version FROM scenescore_versions WHERE scene = '{scene}' "
                                          f"ORDER BY seq")]
        labels = {r[0]: r[1] for r in pg.psql(f"SELECT label, version FROM scenescore_labels WHERE scene = '{scene}'")}
    except RuntimeError:
        return None
    return versions, labels


# ---------------------------------------------------------------------------------------------
# a. three replicas, one PostgreSQL, HAProxy in front
# ---------------------------------------------------------------------------------------------


@pytest.mark.haproxy
def test_a_scoring_through_haproxy_reaches_every_replica(deployment, model, certs, pg):
    ha = deployment.need_haproxy()
    assert ha.server_states() == {f"r{k}": "UP" for k in range(1, REPLICAS + 1)}, ha.log()
    before = ha.server_sessions()

    # httpx over HTTP/2 + TLS through HAProxy, every served scene.
    with h2_client(certs.ca, timeout=10) as http:
        for k in range(30):
            scene = model.scenes[k % len(model.scenes)]
            body = wire.encode_request(scene, *random_arrays(3, k, model.schema), request_id=k + 1)
            r = http.post(f"https://localhost:{ha.port}/v1/score", content=body,
                          headers={"content-type": wire.CONTENT_TYPE})
            assert r.status_code == 200 and r.http_version == "HTTP/2", (r.status_code, r.text[:300])
            decoded = wire.decode_response(r.content)
            assert decoded.request_id == k + 1 and decoded.scene == scene and decoded.n_candidates == 3
            assert r.headers[wire.HEAD_VERSION_HEADER] == decoded.head_version == model.version(scene)

    # curl --http2, the JSON body from the README.
    result = subprocess.run(["curl", "-sS", "--http2", "--cacert", str(certs.ca), "-o", "-", "-w", "\n%{http_code} %{http_version}",
                             "-H", "content-type: application/json", "--data-binary",
                             f"@{cluster.REPO / 'Proto' / 'golden' / 'request-1cand.json'}",
                             f"https://localhost:{ha.port}/v1/score"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout.rstrip().endswith("200 2"), result.stdout + result.stderr

    after = ha.server_sessions()
    assert all(after[name] > before.get(name, 0) for name in after), \
        f"HAProxy did not spread requests over every replica: before {before}, after {after}"

    if deployment.registry_url is not None:
        # One registry: every replica lists the same scenes, and each holds connections to PostgreSQL.
        listings = [all_scenes(r) for r in deployment.replicas]
        assert all(l == listings[0] for l in listings), listings
        assert {s["scene"] for s in listings[0]} >= set(model.scenes)
        rows = pg.psql("SELECT count(*) FROM pg_stat_activity WHERE datname = 'scenescore' AND pid <> pg_backend_pid()")
        assert int(rows[0][0]) >= REPLICAS, f"only {rows[0][0]} connections to the registry database"


@pytest.mark.haproxy
def test_a2_haproxy_hides_a_replica_crash_and_a_drain(deployment, certs, model, load_client):
    """Under load through HAProxy, r2 is SIGKILLed (and restarted), then r3 is stopped with
    SIGTERM (GOAWAY, drain; restarted): not one client request fails (HAProxy's checks take the
    replica out, its retry-on replays what was in flight on another one)."""
    ha = deployment.need_haproxy()
    scene = model.scenes[0]
    client = load_client(ha.port, certs.ca, scene, model.schema, connections=2, streams=8)
    time.sleep(1.0)
    deployment.replicas[1].kill9()
    ha.wait_states({"r2": "DOWN"}, timeout=10)
    time.sleep(0.5)
    deployment.restart(1)
    ha.wait_up(timeout=20)
    time.sleep(0.5)
    assert deployment.replicas[2].stop() == (0, False), deployment.replicas[2].describe()
    ha.wait_states({"r3": "DOWN"}, timeout=10)
    deployment.restart(2)
    ha.wait_up(timeout=20)
    time.sleep(0.5)
    stats = client.stop()
    print(f"\nload through a crash and a drain: {stats['ok']} requests, max {stats['max_latency'] * 1000:.0f} ms")
    assert stats["n_failures"] == 0, f"failed requests through HAProxy: {stats}\n{ha.log()}"
    assert stats["ok"] >= 500, stats
    assert set(stats["versions"]) == {model.version(scene)}, stats["versions"]


# ---------------------------------------------------------------------------------------------
# b. a push through one replica is served by all
# ---------------------------------------------------------------------------------------------


@pytest.mark.registry
def test_b_a_push_through_one_replica_is_served_by_all(deployment, ref):
    scene = "rep-b"
    reps = deployment.replicas
    register(reps[0], ref, scene, "rep-b-1", seed=1)
    wait_served(deployment, reps, scene, "rep-b-1", PROPAGATION_BOUND)
    worst = 0.0
    for k, via in enumerate([reps[0], reps[1], reps[2], reps[1], reps[0]]):
        version = f"rep-b-{k + 2}"
        push_ok(via, ref, scene, version, seed=k + 2)
        answered = time.monotonic()
        # The replica that took the write serves it as soon as it answered (published before the 200).
        assert deployment.probe.version(via.h2c_port, scene) == version, f"{via.name} answered 200 before serving {version}"
        times = wait_served(deployment, reps, scene, version, PROPAGATION_BOUND, since=answered)
        worst = max(worst, max(times.values()))
    print(f"\nslowest propagation of 5 pushes to {len(reps)} replicas: {worst * 1000:.0f} ms")
    for server in reps:
        check_scores(deployment, ref, server, scene, "rep-b-6")
        assert deployment.probe.scenes(server.h2c_port)[scene]["head_version"] == "rep-b-6"
    doc = same_listing(reps, scene, PROPAGATION_BOUND)
    assert doc["stable"] == "rep-b-6"
    assert [v["version"] for v in doc["versions"]][-1] == "rep-b-6"
    # Rollback and label moves are shared the same way.
    r = admin_request(reps[2], "POST", f"{ADMIN_PREFIX}/scenes/{scene}/rollback")
    assert r.status_code == 200 and r.json()["stable"] == "rep-b-5", r.text
    wait_served(deployment, reps, scene, "rep-b-5", PROPAGATION_BOUND)
    r = admin_request(reps[1], "PUT", f"{ADMIN_PREFIX}/scenes/{scene}/labels", content=b'{"stable": "rep-b-4"}',
                      headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json()["stable"] == "rep-b-4", r.text
    wait_served(deployment, reps, scene, "rep-b-4", PROPAGATION_BOUND)
    check_scores(deployment, ref, reps[0], scene, "rep-b-4")
    assert same_listing(reps, scene, PROPAGATION_BOUND) == r.json()


@pytest.mark.registry
def test_b2_every_replica_routes_the_canary_alike(deployment, ref, model):
    """A canary pushed through one replica: every replica sends the same request ids to it
    (the share travels with the registry; the routing rule is a function of the request id)."""
    scene = "rep-b2"
    reps = deployment.replicas
    register(reps[0], ref, scene, "rep-b2-1", seed=21)
    r = push(reps[2], ref, scene, "rep-b2-2", seed=22, label="canary")
    assert r.status_code == 200, r.text
    r = admin_request(reps[1], "PUT", f"{ADMIN_PREFIX}/scenes/{scene}/labels", content=b'{"canary_share": 0.3}',
                      headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json()["canary"] == "rep-b2-2", r.text
    doc = same_listing(reps, scene, PROPAGATION_BOUND)
    assert doc["canary_share"] == 0.3, doc
    deadline = time.monotonic() + PROPAGATION_BOUND
    while True:
        answers = {}
        for server in reps:
            for rid in range(1, 41):
                body = wire.encode_request(scene, *random_arrays(1, rid, model.schema), request_id=rid)
                resp = deployment.probe.request(server.h2c_port, "POST", "/v1/score",
                                                [("content-type", wire.CONTENT_TYPE)], body)
                assert resp.status == 200, resp
                answers[(server.name, rid)] = resp.header(wire.HEAD_VERSION_HEADER)
        expected = {(s.name, rid): "rep-b2-2" if canary_chosen(rid, 0.3) else "rep-b2-1"
                    for s in reps for rid in range(1, 41)}
        if answers == expected:
            break
        assert time.monotonic() < deadline, {k: (v, expected[k]) for k, v in answers.items() if v != expected[k]}
        time.sleep(0.05)
    assert 0 < sum(v == "rep-b2-2" for v in answers.values()) < len(answers)


# ---------------------------------------------------------------------------------------------
# c. load through HAProxy while heads are pushed
# ---------------------------------------------------------------------------------------------


@pytest.mark.registry
@pytest.mark.haproxy
def test_c_no_failed_request_through_haproxy_while_heads_are_pushed(deployment, ref, certs, model, load_client):
    ha = deployment.need_haproxy()
    scene = "rep-c"
    reps = deployment.replicas
    register(reps[0], ref, scene, "rep-c-0", seed=100)
    wait_served(deployment, reps, scene, "rep-c-0", PROPAGATION_BOUND)
    before = ha.server_sessions()
    client = load_client(ha.port, certs.ca, scene, model.schema, connections=2, streams=4)
    pushed = ["rep-c-0"]
    start = time.monotonic()
    for k in range(1, 11):
        version = f"rep-c-{k}"
        push_ok(reps[k % len(reps)], ref, scene, version, seed=100 + k)
        pushed.append(version)
        time.sleep(max(0.0, start + 0.5 * k - time.monotonic()))  # ~10 pushes over ~5 s
    wait_served(deployment, reps, scene, pushed[-1], PROPAGATION_BOUND)
    time.sleep(max(0.0, start + 5.5 - time.monotonic()))
    stats = client.stop()
    print(f"\nload through HAProxy: {stats['ok']} requests, p50 {stats['p50_latency'] * 1000:.1f} ms, "
          f"p99 {stats['p99_latency'] * 1000:.1f} ms, max {stats['max_latency'] * 1000:.1f} ms; versions {stats['versions']}")
    assert stats["n_failures"] == 0, f"failed requests during the pushes: {stats}\n{deployment.describe()}"
    assert stats["statuses"] == {"200": stats["ok"]}, stats
    assert stats["ok"] >= 100, f"too little load to mean anything: {stats}"
    assert set(stats["versions"]) <= set(pushed), f"versions never pushed were served: {stats['versions']}"
    assert len(stats["versions"]) >= 3, f"the load did not see the versions change: {stats['versions']}"
    after = ha.server_sessions()
    assert all(after[n] > before.get(n, 0) for n in after), (before, after)


# ---------------------------------------------------------------------------------------------
# d. PostgreSQL stopped and restarted mid-run
# ---------------------------------------------------------------------------------------------


@pytest.mark.registry
@pytest.mark.haproxy
def test_d_postgres_down_and_back(deployment, ref, certs, model, pg, load_client):
    ha = deployment.need_haproxy()
    scene = "rep-d"
    reps = deployment.replicas
    register(reps[1], ref, scene, "rep-d-1", seed=201)
    wait_served(deployment, reps, scene, "rep-d-1", PROPAGATION_BOUND)
    wait_reachable(deployment, reps, 1.0, 5)
    log_marks = {s.name: len(s.log(10**9)) for s in reps}
    ha_mark = len(ha.log(10**9))
    client = load_client(ha.port, certs.ca, scene, model.schema, connections=2, streams=2)

    pg.stop("fast")
    try:
        down = wait_reachable(deployment, reps, 0.0, 20)
        print(f"\nregistry_reachable 0 after (s): { {k: round(v, 2) for k, v in down.items()} }")
        # While it is down (at least 2 s): ready, scoring the last version, writes refused with 503.
        outage_end = time.monotonic() + 2.0
        for k, server in enumerate(reps):
            r = push(server, ref, scene, f"rep-d-x{k}", seed=210 + k)
            doc = assert_admin_problem(r, 503, "registry", what=f"push through {server.name} while PostgreSQL is down")
            assert any(w in doc["detail"].lower() for w in ("unreachable", "unavailable", "down", "connect")), doc
        for method, path, body in [("PUT", "/labels", b'{"stable": "rep-d-1"}'), ("DELETE", "", None)]:
            r = admin_request(reps[0], method, f"{ADMIN_PREFIX}/scenes/{scene}{path}", content=body,
                              headers={"content-type": "application/json"} if body else {})
            assert_admin_problem(r, 503, "registry", what=f"{method} {path} while PostgreSQL is down")
        while time.monotonic() < outage_end:
            for server in reps:
                assert deployment.probe.readyz(server.h2c_port) == 200, f"{server.name} not ready during the outage"
                assert deployment.probe.version(server.h2c_port, scene) == "rep-d-1", server.name
            time.sleep(0.1)
        assert ha.server_states() == {f"r{k}": "UP" for k in range(1, REPLICAS + 1)}
    finally:
        if not pg.running():
            pg.start()

    up = wait_reachable(deployment, reps, 1.0, 30)
    print(f"registry_reachable 1 after (s): { {k: round(v, 2) for k, v in up.items()} }")
    for server in reps:
        text = server.log(10**9)[log_marks[server.name]:]
        assert "registry.unreachable" in text and "registry.reachable" in text.split("registry.unreachable", 1)[1], \
            f"{server.name} logged no registry.unreachable then registry.reachable:\n{text[-3000:]}"
    doc = push_ok(reps[2], ref, scene, "rep-d-2", seed=202)
    wait_served(deployment, reps, scene, "rep-d-2", PROPAGATION_BOUND)
    assert same_listing(reps, scene, PROPAGATION_BOUND) == doc
    # None of the refused writes left a trace.
    assert not any(v["version"].startswith("rep-d-x") for v in doc["versions"]), doc
    stats = client.stop()
    print(f"load through the outage: {stats['ok']} requests, max {stats['max_latency'] * 1000:.0f} ms")
    assert stats["n_failures"] == 0, f"failed score requests while PostgreSQL was down: {stats}"
    assert stats["ok"] >= 50, stats
    assert "is DOWN" not in ha.log(10**9)[ha_mark:], f"HAProxy took a replica out during the outage:\n{ha.log()}"


@pytest.mark.registry
def test_d2_a_replica_cut_off_from_postgres_catches_up_without_restart(deployment, ref, pg):
    """A change made while one replica cannot reach PostgreSQL (it misses the NOTIFY) is picked
    up when the connection returns, without a restart."""
    proxy = cluster.CuttableProxy(pg.port)
    lone = None
    password = "pw-" + secrets.token_hex(8)  # trust auth ignores it; it must never be shown
    try:
        lone = deployment.start_replica(
            "r-cut", registry_url=f"postgres://{cluster.PG_USER}:{password}@127.0.0.1:{proxy.port}/{cluster.PG_DB}")
        deployment.extra.append(lone)
        scene = "rep-d2"
        reps = deployment.replicas
        register(reps[0], ref, scene, "rep-d2-1", seed=301)
        wait_served(deployment, reps + [lone], scene, "rep-d2-1", PROPAGATION_BOUND)

        proxy.cut()
        wait_reachable(deployment, [lone], 0.0, 20)
        push_ok(reps[0], ref, scene, "rep-d2-2", seed=302)
        wait_served(deployment, reps, scene, "rep-d2-2", PROPAGATION_BOUND)
        assert deployment.probe.version(lone.h2c_port, scene) == "rep-d2-1"
        assert deployment.probe.readyz(lone.h2c_port) == 200
        r = push(lone, ref, scene, "rep-d2-x", seed=303)
        doc = assert_admin_problem(r, 503, "registry", what="push through the cut-off replica")
        assert password not in r.text, f"the 503 shows the registry password: {doc}"

        proxy.restore()
        wait_reachable(deployment, [lone], 1.0, 30)
        wait_served(deployment, [lone], scene, "rep-d2-2", SERVED_TIMEOUT)
        check_scores(deployment, ref, lone, scene, "rep-d2-2")
        assert scene_doc(lone, scene) == scene_doc(reps[0], scene)
        metrics = deployment.probe.request(lone.h2c_port, "GET", "/metrics")
        assert password not in bytes(metrics.body).decode(), "/metrics shows the registry password"
        assert password not in lone.log(10**9), f"{lone.name} logged the registry password"
    finally:
        if lone is not None:
            rc, killed = lone.stop()
            assert (rc, killed) == (0, False), lone.describe()
        proxy.close()


# ---------------------------------------------------------------------------------------------
# e. kill -9 mid-publish
# ---------------------------------------------------------------------------------------------


def send_head(server, scene: str, body: bytes) -> tuple[H2Conn, int, float]:
    """POST a head version through `server`'s admin port on a connection of its own; returns once
    the last byte is on the wire: (connection, stream id, monotonic time of the last byte)."""
    conn = H2Conn.tls(server.admin_port, server.cafile, timeout=10)
    sid = conn.send("POST", f"{ADMIN_PREFIX}/scenes/{scene}/versions",
                    [("authorization", f"Bearer {server.admin_token}"), ("content-type", "application/octet-stream")],
                    body)
    deadline = time.monotonic() + 30
    while sid in conn.pending and time.monotonic() < deadline:
        conn.poll(0.005)
    assert sid not in conn.pending, f"the upload to {server.name} did not finish sending within 30 s"
    return conn, sid, time.monotonic()


def haproxy_gates_on_readiness(dep: Deployment, server, name: str, timeout: float = 60) -> int:
    """While `server` starts, HAProxy never shows it UP before its /readyz answers 200 (the state
    is read first, so an UP followed by a non-200 is a real violation: readiness does not go back).
    Returns how many times /readyz was seen not 200."""
    not_ready = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = dep.haproxy.server_states()[name]
        ready = dep.probe.readyz(server.h2c_port)
        if ready == 200:
            return not_ready
        not_ready += 1
        assert not state.startswith("UP"), f"HAProxy had {name} {state} while its /readyz answered {ready}"
        assert server.alive(), server.describe()
        time.sleep(0.005)
    pytest.fail(f"{server.name} not ready within {timeout}s\n{server.describe()}")


@pytest.mark.registry
def test_e_replica_killed_mid_publish_comes_back_with_the_registry_state(deployment, ref, pg):
    """SIGKILL replica r1 while a 16 MiB head pushed through it is in flight (validated, warmed,
    committed: the kill lands at fractions of a normal push's time), restart it: every replica
    serves what PostgreSQL holds, the version either fully there or not at all."""
    scene = "rep-e"
    reps = deployment.replicas
    register(reps[1], ref, scene, "rep-e-1", seed=401)
    wait_served(deployment, reps, scene, "rep-e-1", PROPAGATION_BOUND)

    # How long a push of this size takes, from its last byte to the 200.
    big = heads.big_head_bytes(ref.backbone_spec, scene, "rep-e-cal", at_least=16 << 20, seed=400)
    conn, sid, sent = send_head(reps[0], scene, big)
    r = conn.wait([sid], 60)[sid]
    took = time.monotonic() - sent
    conn.close()
    assert r.status == 200, r
    wait_served(deployment, reps, scene, "rep-e-cal", SERVED_TIMEOUT)

    outcomes = []
    for round_, fraction in enumerate((0.0, 0.5, 0.8, 0.95, 1.1)):
        victim = deployment.replicas[0]
        before = scene_doc(reps[1], scene)
        version = f"rep-e-big{round_}"
        big = heads.big_head_bytes(ref.backbone_spec, scene, version, at_least=16 << 20, seed=410 + round_)
        conn, sid, sent = send_head(victim, scene, big)
        while time.monotonic() < sent + fraction * took and not conn.responses[sid].done:
            conn.poll(0.002)
        answered = conn.responses[sid].status
        victim.kill9()
        killed_after = time.monotonic() - sent
        conn.close()
        if deployment.haproxy is not None and round_ == 0:
            deployment.haproxy.wait_states({"r1": "DOWN"}, timeout=10)  # a dead replica gets no traffic
            victim = deployment.restart(0, wait=False)
            gate_checks = haproxy_gates_on_readiness(deployment, victim, "r1")
            victim.wait_ready()
        else:
            victim = deployment.restart(0)  # waits for /readyz
        reps = deployment.replicas

        doc = same_listing(reps, scene, SERVED_TIMEOUT)
        names = [v["version"] for v in doc["versions"]]
        committed = version in names
        outcomes.append(f"SIGKILL {killed_after * 1000:.0f} ms after the last byte (a push takes {took * 1000:.0f} ms): "
                        f"{'committed' if committed else 'not committed'}, answer before the kill: {answered}")
        if committed:
            assert doc["stable"] == version and doc["generation"] > before["generation"], doc
            old = [v["version"] for v in before["versions"]]
            assert names[:-1] == old[len(old) + 1 - len(names):], (old, names)
            entry = next(v for v in doc["versions"] if v["version"] == version)
            assert entry["bytes"] == len(big), entry
        else:
            assert doc == before, f"an upload cut short by kill -9 changed the registry: {before} -> {doc}"
            assert answered is None, f"the push was answered {answered} but is not in the registry"
        # Every replica serves exactly the registry's stable version, the restarted one included.
        wait_served(deployment, reps, scene, doc["stable"], SERVED_TIMEOUT)
        # No dangling version: PostgreSQL holds exactly the listed versions and labels.
        in_pg = pg_versions(pg, scene)
        if in_pg is not None:
            versions, labels = in_pg
            assert versions == names, f"PostgreSQL has versions {versions}, the replicas list {names}"
            assert labels.get("stable") == doc["stable"] and labels.get("canary") == doc.get("canary"), labels
        if not committed:
            # The version name is not half taken: the same push through the restarted replica lands.
            r = push(victim, ref, scene, version, seed=0, body=big)
            assert r.status_code == 200, f"re-push of {version} after the kill: {r.status_code} {r.text[:300]}"
            wait_served(deployment, reps, scene, version, SERVED_TIMEOUT)
        if deployment.haproxy is not None and round_ == 0:
            deployment.haproxy.wait_states({"r1": "UP"}, timeout=10)
    print("\n" + "\n".join(outcomes))
    if deployment.haproxy is not None:
        print(f"HAProxy kept r1 out while its /readyz was not 200 ({gate_checks} checks)")
    # And the restarted replica takes writes that the others serve.
    push_ok(deployment.replicas[0], ref, scene, "rep-e-after", seed=499)
    wait_served(deployment, deployment.replicas, scene, "rep-e-after", PROPAGATION_BOUND)


# ---------------------------------------------------------------------------------------------
# f. concurrent publishes with the same if-match from two replicas
# ---------------------------------------------------------------------------------------------


@pytest.mark.registry
def test_f_same_if_match_from_two_replicas_one_wins_none_is_lost(deployment, ref):
    scene = "rep-f"
    reps = deployment.replicas
    doc = register(reps[0], ref, scene, "rep-f-1", seed=501)
    wait_served(deployment, reps, scene, "rep-f-1", PROPAGATION_BOUND)

    # Sequential: a generation another replica has moved on is refused, however fresh the news.
    g = doc["generation"]
    doc = push_ok(reps[0], ref, scene, "rep-f-2", seed=502, if_match=g)
    r = push(reps[1], ref, scene, "rep-f-stale", seed=503, if_match=g)
    assert_admin_problem(r, 409, what="stale if-match through another replica right after a push")

    for round_, (a, b) in enumerate([(0, 1), (1, 2), (2, 0)]):
        g = doc["generation"]
        va, vb = f"rep-f-r{round_}a", f"rep-f-r{round_}b"
        bodies = {va: ref.make(scene, va, seed=510 + 2 * round_), vb: ref.make(scene, vb, seed=511 + 2 * round_)}
        clients = {va: reps[a].admin(), vb: reps[b].admin()}
        results: dict[str, httpx.Response] = {}
        barrier = threading.Barrier(2)
        try:
            for c in clients.values():  # connections up before the race
                assert c.request("GET", f"{ADMIN_PREFIX}/scenes/{scene}").status_code == 200

            def race(version: str) -> None:
                barrier.wait(10)
                results[version] = clients[version].request(
                    "POST", f"{ADMIN_PREFIX}/scenes/{scene}/versions", content=bodies[version],
                    headers={**OCTETS, "if-match": str(g)})

            threads = [threading.Thread(target=race, args=(v,)) for v in (va, vb)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        finally:
            for c in clients.values():
                c.close()
        statuses = {v: r.status_code for v, r in results.items()}
        assert sorted(statuses.values()) == [200, 409], f"round {round_}, if-match {g}: {statuses} " \
            f"{ {v: r.text[:200] for v, r in results.items()} }"
        winner = next(v for v, s in statuses.items() if s == 200)
        loser = vb if winner == va else va
        assert_admin_problem(results[loser], 409, what=f"the losing push {loser}")
        won = results[winner].json()
        assert won["stable"] == winner and won["generation"] > g, won
        wait_served(deployment, reps, scene, winner, PROPAGATION_BOUND)

        # The loser retries with the generation the winner made: both versions are kept.
        loser_server = reps[a] if loser == va else reps[b]
        doc = push_ok(loser_server, ref, scene, loser, seed=0, if_match=won["generation"], body=bodies[loser])
        wait_served(deployment, reps, scene, loser, PROPAGATION_BOUND)
        listed = same_listing(reps, scene, PROPAGATION_BOUND)
        assert listed == doc, (listed, doc)
        names = [v["version"] for v in listed["versions"]]
        assert names[-2:] == [winner, loser], names
        check_scores(deployment, ref, reps[(round_ + 2) % len(reps)], scene, loser)


# ---------------------------------------------------------------------------------------------
# g. a replica started after changes were made
# ---------------------------------------------------------------------------------------------


@pytest.mark.registry
def test_g_a_replica_started_later_is_ready_only_when_it_serves_everything(deployment, ref, model):
    reps = deployment.replicas
    # More state: scenes whose heads take a moment to load, one with a canary, one removed.
    for k in range(3):
        scene = f"rep-g{k}"
        body = heads.big_head_bytes(ref.backbone_spec, scene, f"{scene}-1", at_least=4 << 20, seed=600 + k)
        r = admin_request(reps[k], "PUT", f"{ADMIN_PREFIX}/scenes/{scene}", headers=OCTETS, content=body)
        assert r.status_code == 201, r.text
    push_ok(reps[1], ref, "rep-g0", "rep-g0-2", seed=610)
    r = push(reps[2], ref, "rep-g1", "rep-g1-2", seed=611, label="canary")
    assert r.status_code == 200 and r.json()["canary"] == "rep-g1-2", r.text
    register(reps[0], ref, "rep-gone", "rep-gone-1", seed=612)
    assert admin_request(reps[1], "DELETE", f"{ADMIN_PREFIX}/scenes/rep-gone").status_code == 200
    for server in reps:  # the removal is served everywhere
        deadline = time.monotonic() + PROPAGATION_BOUND
        while deployment.probe.score(server.h2c_port, "rep-gone").status != 404:
            assert time.monotonic() < deadline, f"{server.name} still serves the removed scene rep-gone"
            time.sleep(0.01)
    expected = all_scenes(reps[0])
    for server in reps[1:]:
        deadline = time.monotonic() + SERVED_TIMEOUT
        while all_scenes(server) != expected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all_scenes(server) == expected, f"{server.name} disagrees with {reps[0].name}"

    late = deployment.start_replica("r-late", wait=False)
    deployment.extra.append(late)
    try:
        seen = []
        deadline = time.monotonic() + 60
        while True:
            assert late.alive(), late.describe()
            status = deployment.probe.readyz(late.h2c_port)
            if not seen or seen[-1] != status:
                seen.append(status)
            if status == 200:
                break
            assert time.monotonic() < deadline, f"{late.name} not ready within 60 s: {seen}\n{late.describe()}"
            time.sleep(0.01)
        # Ready: at once, every stable version of the registry is what it serves.
        served = deployment.probe.scenes(late.h2c_port)
        for doc in expected:
            scene = doc["scene"]
            assert scene in served, f"{late.name} ready but does not serve {scene} (readyz went {seen})"
            assert served[scene]["head_version"] == doc["stable"], (scene, served[scene], doc)
            assert deployment.probe.version(late.h2c_port, scene) in {doc["stable"], doc.get("canary")}
            canary = served[scene].get("canary")
            canary = canary.get("version") if isinstance(canary, dict) else canary
            assert canary == doc.get("canary"), (scene, served[scene], doc)
        assert "rep-gone" not in served
        r = deployment.probe.score(late.h2c_port, "rep-gone")
        assert r.status == 404, r
        print(f"\n{late.name} /readyz went {seen}")
        late.wait_ready(30)  # the admin port too
        assert all_scenes(late) == expected
        for server in reps:
            assert all_scenes(server) == expected
    finally:
        rc, killed = late.stop()
        assert (rc, killed) == (0, False), late.describe()
