"""Hot swap under load (Proto/ADMIN.md): clients score continuously over several HTTP/2
connections (binary protocol, several streams in flight each) while 100 head versions are pushed
and labels flipped through the admin API.

Checked: not one request fails; every response's head version is one the scene served at some
moment of that request's lifetime (what each admin write published is taken from its response,
with the time it was sent and answered; the canary rule picks between stable and canary by
request id); the scores are that version's (numpy reference forward pass); afterwards
`scenescore_live_head_versions` equals the labelled versions (retired versions were freed).

SCENESCORE_SWAP_SECONDS shortens or lengthens the run (default 20).
"""

from __future__ import annotations

import os
import struct
import threading
import time
from dataclasses import dataclass

import numpy as np

from h2util import H2Conn, wire
from scenes_util import ReferenceHeads, Scoring, labelled_versions, metric, wait_for
from scenescore_client import SceneDescription, canary_chosen, random_inputs

SECONDS = float(os.environ.get("SCENESCORE_SWAP_SECONDS", "20"))
VERSIONS = 100
CONNECTIONS = 4
STREAMS = 4  # in flight per connection
BODIES = 8  # distinct request bodies (request ids differ per request)
CANDIDATES = 4
SCENE = "swap"


@dataclass(frozen=True)
class Published:
    """What one admin write made the scene serve, and when it could have become visible."""

    sent: float
    answered: float
    stable: str
    canary: str | None
    share: float
    what: str

    def version_for(self, request_id: int) -> str:
        if self.canary is not None and canary_chosen(request_id, self.share):
            return self.canary
        return self.stable


@dataclass
class Outcome:
    request_id: int
    body: int
    started: float
    finished: float | None
    status: int | None
    version: str | None = None
    scores: np.ndarray | None = None
    error: str | None = None


def published(doc: dict, sent: float, answered: float, what: str) -> Published:
    return Published(sent, answered, doc["stable"], doc.get("canary"), float(doc.get("canary_share") or 0), what)


def load_worker(srv, bodies: list[bytes], stop: threading.Event, seed: int, out: list[Outcome],
                errors: list[str]) -> None:
    rng = np.random.default_rng(seed)
    try:
        conn = H2Conn.tls(srv.port, srv.cafile, timeout=10)
    except Exception as error:  # noqa: BLE001
        errors.append(f"worker {seed}: connect failed: {error!r}")
        return
    inflight: dict[int, tuple[int, int]] = {}
    drain_until: float | None = None  # after the stop: 15 s for what is in flight
    try:
        while not stop.is_set() or inflight:
            if stop.is_set() and drain_until is None:
                drain_until = time.monotonic() + 15
            while not stop.is_set() and len(inflight) < STREAMS:
                k = int(rng.integers(BODIES))
                request_id = int(rng.integers(0, 2**63)) * 2 + 1
                body = bytearray(bodies[k])
                struct.pack_into("<Q", body, 8, request_id)  # the header's request_id
                sid = conn.send("POST", "/v1/score", [("content-type", wire.CONTENT_TYPE)], bytes(body))
                inflight[sid] = (request_id, k)
            if conn.closed:
                errors.append(f"worker {seed}: connection closed (goaway={conn.goaway})")
                break
            conn.poll(0.05)
            for sid in [s for s in inflight if conn.responses[s].done]:
                r = conn.responses.pop(sid)
                request_id, k = inflight.pop(sid)
                o = Outcome(request_id, k, r.started, r.finished, r.status)
                if r.reset is not None or r.status != 200:
                    o.error = f"status {r.status}, reset {r.reset}, body {bytes(r.body[:200])!r}"
                else:
                    try:
                        decoded = wire.decode_response(bytes(r.body))
                        header = r.header(wire.HEAD_VERSION_HEADER)
                        if header != decoded.head_version or decoded.request_id != request_id:
                            o.error = f"header {header!r} vs body {decoded.head_version!r}, id {decoded.request_id}"
                        o.version, o.scores = decoded.head_version, decoded.scores
                    except wire.WireError as error:
                        o.error = f"undecodable 200 body: {error.detail}"
                out.append(o)
            if drain_until is not None and inflight and time.monotonic() > drain_until:
                errors.append(f"worker {seed}: {len(inflight)} requests unanswered 15 s after the run")
                break
    except Exception as error:  # noqa: BLE001 - every failure is reported
        errors.append(f"worker {seed}: {error!r}")
    finally:
        conn.close()


def admin_writer(srv, ref: ReferenceHeads, bodies: dict[str, bytes], deadline: float,
                 log: list[Published], errors: list[str]) -> None:
    """100 pushes and label flips, paced to fill the run; every answer recorded."""
    names = list(bodies)
    rng = np.random.default_rng(99)
    writes_planned = VERSIONS + VERSIONS // 4 * 3
    pace = max(0.0, (deadline - time.monotonic()) * 0.9 / writes_planned)
    try:
        with srv.admin(timeout=60) as admin:
            def do(what: str, call) -> dict:
                sent = time.monotonic()
                doc = call()
                log.append(published(doc, sent, time.monotonic(), what))
                time.sleep(pace)
                return doc

            for k, version in enumerate(names, start=1):
                body = bodies[version]
                if k % 4 == 1:
                    share = float(rng.choice([0.1, 0.25, 0.5, 0.9]))
                    do(f"push {version} canary {share}", lambda: admin.push(SCENE, body, label="canary", share=share))
                elif k % 4 == 2:
                    do(f"push {version} stable", lambda: admin.push(SCENE, body, label="stable"))
                elif k % 4 == 3:
                    do(f"push {version} none", lambda: admin.push(SCENE, body, label="none"))
                    do(f"canary {version} 0.3", lambda: admin.set_labels(SCENE, canary=version, canary_share=0.3))
                else:
                    doc = do(f"push {version} stable", lambda: admin.push(SCENE, body))
                    older = [v["version"] for v in doc["versions"] if v["version"] not in (doc["stable"], doc["canary"])]
                    if older:
                        target = older[-1]
                        do(f"stable {target}", lambda: admin.set_labels(SCENE, stable=target))
                        do("rollback", lambda: admin.rollback(SCENE))
    except Exception as error:  # noqa: BLE001
        errors.append(f"admin writer: {error!r}")


def allowed_versions(log: list[Published], o: Outcome) -> set[str]:
    """Versions the scene could have served this request: those of every state that may have been
    in effect at some moment between the request's start and its end."""
    allowed = set()
    for i, state in enumerate(log):
        became_visible_by = state.sent  # earliest moment it can have been published
        replaced_by = log[i + 1].answered if i + 1 < len(log) else float("inf")  # latest moment it can end
        if became_visible_by <= o.finished and replaced_by >= o.started:
            allowed.add(state.version_for(o.request_id))
    return allowed


def test_hot_swap_under_load(launcher, model_dir):
    srv = launcher.start(admin=True, name="swap")
    ref = ReferenceHeads(model_dir)
    scoring = Scoring(srv)
    with srv.admin() as admin:
        first = admin.register(SCENE, ref.make(SCENE, f"{SCENE}-0", seed=1000))
        log = [published(first, float("-inf"), time.monotonic(), "register")]
    desc: SceneDescription = scoring.describe(SCENE)
    rng = np.random.default_rng(5)
    arrays = [random_inputs(desc, CANDIDATES, rng) for _ in range(BODIES)]
    bodies = [wire.encode_request(SCENE, *a, request_id=0) for a in arrays]
    heads = {f"{SCENE}-{k}": ref.make(SCENE, f"{SCENE}-{k}", seed=1000 + k, parent=f"{SCENE}-{k - 1}")
             for k in range(1, VERSIONS + 1)}

    stop = threading.Event()
    outcomes: list[list[Outcome]] = [[] for _ in range(CONNECTIONS)]
    errors: list[str] = []
    workers = [threading.Thread(target=load_worker, args=(srv, bodies, stop, i, outcomes[i], errors), daemon=True)
               for i in range(CONNECTIONS)]
    started = time.monotonic()
    for w in workers:
        w.start()
    time.sleep(0.5)  # traffic first, then swaps
    writer = threading.Thread(target=admin_writer, args=(srv, ref, heads, started + SECONDS, log, errors), daemon=True)
    writer.start()
    writer.join(SECONDS + 120)
    time.sleep(max(0.0, started + SECONDS - time.monotonic()))
    stop.set()
    for w in workers:
        w.join(30)
    assert not writer.is_alive() and not any(w.is_alive() for w in workers), "a thread did not finish"
    assert not errors, "\n".join(errors[:10])

    results = [o for per in outcomes for o in per]
    pushes = sum(1 for p in log if p.what.startswith("push"))
    assert pushes == VERSIONS, f"{pushes} pushes published, expected {VERSIONS}: {[p.what for p in log][-5:]}"
    failed = [o for o in results if o.error]
    assert not failed, f"{len(failed)} of {len(results)} requests failed, e.g. {failed[:3]}"
    assert len(results) >= 20 * SECONDS, f"only {len(results)} requests in {SECONDS}s"

    wrong = []
    exact = 0  # requests for which exactly one version was possible
    for o in results:
        allowed = allowed_versions(log, o)
        exact += len(allowed) == 1
        if o.version not in allowed:
            wrong.append((o.request_id, o.version, sorted(allowed), round(o.started - started, 4),
                          round(o.finished - started, 4)))
    assert not wrong, f"{len(wrong)} responses named a version not served during the request, e.g. {wrong[:5]}"

    # Scores are the named version's (each (version, body) pair checked once).
    checked: set[tuple[str, int]] = set()
    for o in results:
        key = (o.version, o.body)
        if key not in checked:
            ref.check(SCENE, o.version, arrays[o.body], o.scores)
            checked.add(key)
    seen = {o.version for o in results}
    assert len(seen) >= VERSIONS // 4, f"traffic saw only {len(seen)} versions: the swaps were not exercised"

    # Retired versions are freed once their last request finished.
    with srv.admin() as admin:
        labelled = labelled_versions(admin.scenes())

    def settled():
        _, samples = scoring.metrics()
        return metric(samples, "scenescore_live_head_versions") == len(labelled)

    if not wait_for(settled, 5.0):
        _, samples = scoring.metrics()
        raise AssertionError(f"scenescore_live_head_versions is {metric(samples, 'scenescore_live_head_versions')}, "
                             f"the labelled versions are {len(labelled)}: {sorted(labelled)}")
    scoring.close()
    srv.assert_alive()
    print(f"swap under load: {len(results)} requests over {CONNECTIONS} connections in {SECONDS:.0f}s, "
          f"{len(log) - 1} admin writes, {len(seen)} versions answered, {exact} with one possible version, "
          f"0 failures")
