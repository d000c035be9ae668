"""The HTTP side shared by the fakes of AWS services (fake_sts, fake_kms), stdlib only.

A FakeAws serves POST on a loopback port from a thread; the subclass answers
each call with _respond(req, body) -> (status, content type, bytes), and
checks its signature with signature_error() (harness/sigv4.py) against the
expected base credentials.
"""
import threading
from http.server import BaseHTTPRequestHandler

from .ports import LoopbackServer
from .sigv4 import check_signature


class FakeAws(LoopbackServer):
    def __init__(self, access_key_id, secret_access_key, session_token=None):
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.session_token = session_token
        self.lock = threading.Lock()
        self.calls = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, ctype, data = fake._respond(self, body)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.serve(Handler)

    def signature_error(self, req, body, service, secret_access_key=None):
        """None when req is signed by the base credentials for service, else the reason."""
        return check_signature(req, body, service, self.access_key_id,
                               secret_access_key or self.secret_access_key,
                               self.session_token)

    def _respond(self, req, body):
        raise NotImplementedError
