"""A small client of the management API (stdlib only)."""
import http.client
import json
import urllib.parse

_STORED = object()

# Every secret a test handed to or got from a management API (connection secrets, API
# keys, passwords, login tokens), for the tests that look for leaks (t/gateway/test_secrets.py).
ISSUED_SECRETS = set()
SECRET_FIELDS = ("apiKey", "password", "secretAccessKey", "sessionToken")


def _harvest(obj):
    """Adds the secrets in a request or answer body to ISSUED_SECRETS."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, str) and len(v) >= 8 and v != "********" and (
                    k in SECRET_FIELDS or (k == "key" and v.startswith("vmx-"))
                    or (k == "token" and len(v) >= 32)):
                ISSUED_SECRETS.add(v)
            else:
                _harvest(v)
    elif isinstance(obj, list):
        for v in obj:
            _harvest(v)


class Api:
    def __init__(self, base_url: str):
        """base_url without /api/v1, e.g. "http://127.0.0.1:8090"."""
        u = urllib.parse.urlsplit(base_url)
        self.host = u.hostname
        self.port = u.port or 80
        self.token = None

    def request(self, method, path, body=None, token=_STORED, headers=None) -> tuple:
        """(status, parsed JSON or text, headers dict with lowercase names).

        body: a dict/list (sent as JSON), bytes or str (sent as is), or None.
        token: the stored login token by default; None sends no Authorization.
        """
        if token is _STORED:
            token = self.token
        hdrs = {}
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = body
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        hdrs.update(headers or {})
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
            out_headers = {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()
        text = raw.decode("utf-8", "replace")
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text
        if isinstance(body, (dict, list)):
            _harvest(body)
        _harvest(parsed)
        return resp.status, parsed, out_headers

    def login(self, username="admin", password="admin-test-password") -> str:
        status, body, _ = self.request("POST", "/api/v1/auth/login",
                                       {"username": username, "password": password},
                                       token=None)
        assert status == 200, (status, body)
        self.token = body["token"]
        return self.token

    def _create(self, path, fields):
        status, body, _ = self.request("POST", path, fields)
        assert status == 201, (path, status, body)
        return body

    def create_workspace(self, name) -> dict:
        return self._create("/api/v1/workspaces", {"name": name})

    def create_environment(self, ws_id, name) -> dict:
        return self._create(f"/api/v1/workspaces/{ws_id}/environments", {"name": name})

    def create_connection(self, ws_id, env_id, **fields) -> dict:
        return self._create(
            f"/api/v1/workspaces/{ws_id}/environments/{env_id}/connections", fields)

    def create_resource(self, ws_id, env_id, **fields) -> dict:
        return self._create(
            f"/api/v1/workspaces/{ws_id}/environments/{env_id}/resources", fields)

    def create_api_key(self, ws_id, env_id, **fields) -> dict:
        """The created key, including "key" itself."""
        return self._create(
            f"/api/v1/workspaces/{ws_id}/environments/{env_id}/api-keys", fields)
