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
import secrets
import urllib.parse

from .fake_aws import FakeAws

NS = "https://sts.amazonaws.com/doc/2011-06-15/"


class FakeSts(FakeAws):
    def __init__(self, access_key_id, secret_access_key, session_token=None,
                 default_lifetime=3600):
        super().__init__(access_key_id, secret_access_key, session_token)
        self.default_lifetime = default_lifetime
        self.roles = {}
        self.bad_roles = {}
        self.fail_next = {}
        self.listeners = []

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

    def _respond(self, req, body):
        status, xml = self._handle(req, body)
        return status, "text/xml", xml.encode()

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
            reason = self.signature_error(req, body, "sts")
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
