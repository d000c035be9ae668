"""A fake AWS STS (query API, AssumeRole only) for tests, stdlib only.

It checks each call as AWS would: the SigV4 Authorization header is
recomputed from the request with the expected base credentials (service
sts), the security token must match and be signed, and the form must be
Action=AssumeRole&Version=2011-06-15 with RoleArn, RoleSessionName,
DurationSeconds.  It answers the real XML shapes: AssumeRoleResponse with
fresh credentials, or ErrorResponse.

  roles      {role_arn: lifetime_seconds} or absent: the default lifetime
  bad_roles  {role_arn: (code, message)}: answered 403 ErrorResponse
  fail_next  {role_arn: n}: the next n calls answer 503 (then it recovers)
  calls      every call, valid or not: {"role", "external_id", "session",
             "duration", "region", "ok", "error", "issued"}
  listeners  callables called with each issued set {"AccessKeyId",
             "SecretAccessKey", "SessionToken"} (e.g. a fake Bedrock's accept)
"""
import datetime
import hashlib
import hmac
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .ports import free_port

NS = "https://sts.amazonaws.com/doc/2011-06-15/"


def _sign(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sigv4_signature(secret_key, method, path, query, headers, signed_headers, body,
                    amz_date, scope):
    """The hex SigV4 signature; headers: {lowercase name: value}."""
    canonical_headers = "".join(f"{h}:{' '.join(headers[h].strip().split())}\n"
                                for h in signed_headers)
    canonical_query = "&".join(sorted(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
        for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True)))
    canonical = "\n".join([method, urllib.parse.quote(path, safe="/-_.~"), canonical_query,
                           canonical_headers, ";".join(signed_headers),
                           hashlib.sha256(body).hexdigest()])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    date, region, service, _ = scope.split("/")
    key = _sign(("AWS4" + secret_key).encode(), date)
    key = _sign(key, region)
    key = _sign(key, service)
    key = _sign(key, "aws4_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


class FakeSts:
    def __init__(self, access_key_id, secret_access_key, session_token=None,
                 default_lifetime=3600):
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.session_token = session_token
        self.default_lifetime = default_lifetime
        self.lock = threading.Lock()
        self.roles = {}
        self.bad_roles = {}
        self.fail_next = {}
        self.calls = []
        self.listeners = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, xml = fake._handle(self, body)
                data = xml.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    # -- inspection ------------------------------------------------------------
    def calls_for(self, role):
        with self.lock:
            return [c for c in self.calls if c["role"] == role]

    def issued_secrets(self):
        """Every secret string handed out (to look for leaks)."""
        with self.lock:
            return [s for c in self.calls if c["issued"] for s in c["issued"].values()]

    # -- the protocol -------------------------------------------------------------
    @staticmethod
    def _error(status, code, message, kind="Sender"):
        return status, (f'<ErrorResponse xmlns="{NS}">\n  <Error>\n    <Type>{kind}</Type>\n'
                        f"    <Code>{code}</Code>\n    <Message>{_escape(message)}</Message>\n"
                        f"  </Error>\n  <RequestId>{secrets.token_hex(8)}</RequestId>\n"
                        "</ErrorResponse>\n")

    def _check_signature(self, req, body):
        """None when the call is signed by the base credentials, else the reason."""
        headers = {k.lower(): v for k, v in req.headers.items()}
        auth = headers.get("authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return "no SigV4 Authorization"
        parts = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
        credential = parts.get("Credential", "").split("/")
        if len(credential) != 5 or credential[0] != self.access_key_id:
            return "unknown access key"
        if credential[3] != "sts" or credential[4] != "aws4_request":
            return "credential scope is not sts"
        signed = parts.get("SignedHeaders", "").split(";")
        amz_date = headers.get("x-amz-date", "")
        for needed in ("host", "x-amz-date"):
            if needed not in signed:
                return f"{needed} is not signed"
        if not amz_date.startswith(credential[1]):
            return "x-amz-date does not match the scope date"
        try:
            when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
                tzinfo=datetime.timezone.utc)
        except ValueError:
            return "bad x-amz-date"
        if abs(time.time() - when.timestamp()) > 300:
            return "x-amz-date too far from now"
        if self.session_token is not None:
            if headers.get("x-amz-security-token") != self.session_token:
                return "wrong or missing security token"
            if "x-amz-security-token" not in signed:
                return "the security token is not signed"
        if any(h not in headers for h in signed):
            return "a signed header is missing"
        path, _, query = req.path.partition("?")
        expected = sigv4_signature(self.secret_access_key, req.command, path, query, headers,
                                   signed, body, amz_date, "/".join(credential[1:]))
        if not hmac.compare_digest(expected, parts.get("Signature", "")):
            return "signature mismatch"
        return None

    def _handle(self, req, body):
        form = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
        role = form.get("RoleArn", "")
        call = {"role": role, "external_id": form.get("ExternalId"),
                "session": form.get("RoleSessionName"), "duration": form.get("DurationSeconds"),
                "region": None, "ok": False, "error": None, "issued": None}
        auth = req.headers.get("Authorization", "")
        if "Credential=" in auth:
            call["region"] = auth.split("Credential=", 1)[1].split("/")[2]
        with self.lock:
            self.calls.append(call)
            reason = self._check_signature(req, body)
            if reason is not None:
                call["error"] = "SignatureDoesNotMatch: " + reason
                return self._error(403, "SignatureDoesNotMatch", reason)
            if (form.get("Action") != "AssumeRole" or form.get("Version") != "2011-06-15"
                    or not role or not call["session"]):
                call["error"] = "InvalidAction"
                return self._error(400, "InvalidAction", "not an AssumeRole call")
            if self.fail_next.get(role, 0) > 0:
                self.fail_next[role] -= 1
                call["error"] = "ServiceUnavailable"
                return self._error(503, "ServiceUnavailable", "try again", kind="Receiver")
            if role in self.bad_roles:
                code, message = self.bad_roles[role]
                call["error"] = code
                return self._error(403, code, message)
            lifetime = self.roles.get(role, self.default_lifetime)
            issued = {"AccessKeyId": "ASIA" + secrets.token_hex(8).upper(),
                      "SecretAccessKey": secrets.token_urlsafe(30),
                      "SessionToken": "FwoG" + secrets.token_urlsafe(120) + "/+=="}
            expiration = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
                seconds=lifetime)
            issued["Expiration"] = expiration.strftime("%Y-%m-%dT%H:%M:%SZ")
            call["ok"] = True
            call["issued"] = {k: v for k, v in issued.items() if k != "Expiration"}
            call["expiration"] = issued["Expiration"]
            listeners = list(self.listeners)
        for listener in listeners:
            listener(dict(call["issued"]))
        session = call["session"]
        return 200, (
            f'<AssumeRoleResponse xmlns="{NS}">\n  <AssumeRoleResult>\n'
            f"    <AssumedRoleUser>\n      <Arn>{_escape(role)}/{_escape(session)}</Arn>\n"
            f"      <AssumedRoleId>AROA{secrets.token_hex(6).upper()}:{_escape(session)}"
            "</AssumedRoleId>\n    </AssumedRoleUser>\n    <Credentials>\n"
            f"      <AccessKeyId>{issued['AccessKeyId']}</AccessKeyId>\n"
            f"      <SecretAccessKey>{_escape(issued['SecretAccessKey'])}</SecretAccessKey>\n"
            f"      <SessionToken>{_escape(issued['SessionToken'])}</SessionToken>\n"
            f"      <Expiration>{issued['Expiration']}</Expiration>\n    </Credentials>\n"
            "    <PackedPolicySize>6</PackedPolicySize>\n  </AssumeRoleResult>\n"
            f"  <ResponseMetadata>\n    <RequestId>{secrets.token_hex(8)}</RequestId>\n"
            "  </ResponseMetadata>\n</AssumeRoleResponse>\n")


def _escape(s):
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))
