"""ScoreClient over a real TLS connection negotiating HTTP/2 with ALPN (tiny h2 server in a thread)."""

import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import httpx
import numpy as np
import pytest

from scenescore_client import ScoreClient
from test_client import FakeServer, _arrays

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def _make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a localhost certificate it signed (like certs/dev-ca.pem)."""
    ca_key, ca_cert = directory / "ca-key.pem", directory / "ca.pem"
    key, csr, cert = directory / "key.pem", directory / "server.csr", directory / "server.pem"
    ext = directory / "ext.cnf"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-subj", "/CN=SceneScore test CA", "-days", "1", "-keyout", str(ca_key), "-out", str(ca_cert))
    run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(csr))
    run("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "1", "-extfile", str(ext), "-out", str(cert))
    return ca_cert, cert, key


class H2Server:
    """Serves one FakeServer over TLS + HTTP/2 (ALPN "h2" only) until closed."""

    def __init__(self, cert: Path, key: Path, handler: FakeServer):
        self.handler = handler
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.context.set_alpn_protocols(["h2"])
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=5)

    def _accept_loop(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(raw, server_side=True) as tls:
                    self._serve(tls)
            except (OSError, ssl.SSLError):
                continue

    def _serve(self, sock: ssl.SSLSocket) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        while True:
            data = sock.recv(65536)
            if not data:
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    streams[event.stream_id] = (dict(event.headers), bytearray())
                elif isinstance(event, h2.events.DataReceived):
                    streams[event.stream_id][1].extend(event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    self._respond(conn, event.stream_id, *streams.pop(event.stream_id))
                elif isinstance(event, h2.events.ConnectionTerminated):
                    sock.sendall(conn.data_to_send())
                    return
            sock.sendall(conn.data_to_send())

    def _respond(self, conn, stream_id: int, headers: dict[str, str], body: bytearray) -> None:
        request = httpx.Request(
            headers[":method"],
            f"https://localhost{headers[':path']}",
            headers={k: v for k, v in headers.items() if not k.startswith(":")},
            content=bytes(body),
        )
        response = self.handler(request)
        content = response.content
        reply = [(":status", str(response.status_code))]
        reply += [(k, v) for k, v in response.headers.items() if k not in ("content-length", "connection")]
        reply.append(("content-length", str(len(content))))
        conn.send_headers(stream_id, reply, end_stream=not content)
        step = conn.max_outbound_frame_size
        for start in range(0, len(content), step):
            conn.send_data(stream_id, content[start : start + step], end_stream=start + step >= len(content))


@pytest.fixture(scope="module")
def h2_server(tmp_path_factory):
    ca_cert, cert, key = _make_certificates(tmp_path_factory.mktemp("certs"))
    server = H2Server(cert, key, FakeServer())
    yield server, ca_cert
    server.close()


def test_score_over_tls_and_http2(h2_server):
    server, ca_cert = h2_server
    with ScoreClient(f"https://localhost:{server.port}", verify=ca_cert) as client:
        assert client.health() == {"status": "ready"}
        binary = client.score("apparel", *_arrays(n=16), request_id=77)
        as_json = client.score_json("apparel", *_arrays(n=16), request_id=78)
    assert binary.request_id == 77 and binary.scores.shape == (16, 2)
    np.testing.assert_array_equal(binary.scores, as_json.scores)


def test_untrusted_certificate_is_refused(h2_server, tmp_path):
    server, _ = h2_server
    other_ca, _, _ = _make_certificates(tmp_path)
    with ScoreClient(f"https://localhost:{server.port}", verify=other_ca) as client:
        with pytest.raises(httpx.ConnectError):
            client.health()
