"""A pear-server started for a check, and a minimal JSON-stream client over TCP.

Used by parity.py and speed.py; nothing here is imported by the server or its tests.
"""
import json
import socket
import subprocess
import time
from pathlib import Path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path, classifier, detector, images, port, threshold=0.5, workers=0,
                 max_batch=1, log="server.log"):
    path = Path(path)
    path.write_text(f"""server:
  host: "127.0.0.1"
  port: {port}
  max_inflight_per_connection: 64
model:
  model_path: "{Path(classifier).resolve()}"
  preprocessor_path: "{Path(detector).resolve()}"
  img_path: "{Path(images).resolve()}"
  confidence_threshold: {threshold}
  normal_threshold: null
  no_pear_result: 0
inference:
  workers: {workers}
  max_batch: {max_batch}
  time_limit_ms: 120000
logging:
  level: "INFO"
  file: "{(path.parent / log).resolve()}"
""")
    return path


class Server:
    """Starts `binary --config cfg` and waits (deadline 300 s) until it accepts."""

    def __init__(self, binary, cfg, port):
        self.port = port
        self.proc = subprocess.Popen([str(binary), "--config", str(cfg)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 300
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"pear-server exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit("pear-server did not start listening in 300 s")
                time.sleep(0.1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Client:
    """One connection; `classify(names)` sends one 0x01 request and returns its items."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=600)
        self.buf = b""
        self.dec = json.JSONDecoder()

    def classify(self, names):
        req = json.dumps({"cmd": 1, "request_data": list(names)}) + "\n"
        self.sock.sendall(req.encode())
        while True:
            text = self.buf.lstrip()
            try:
                obj, end = self.dec.raw_decode(text.decode())
                self.buf = text[len(text.decode()[:end].encode()):]
                return obj["response_data"]
            except (ValueError, UnicodeDecodeError):
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                self.buf += chunk

    def close(self):
        self.sock.close()
