"""AWS SigV4 as AWS checks it, for the fakes of AWS services (fake_sts, fake_kms).

check_signature() recomputes the Authorization header of a request from the
expected credentials: access key, scope service, date within 5 minutes,
host and x-amz-date signed, the session token sent and signed when one is
expected, every signed header present, and the signature itself.
"""
import datetime
import hashlib
import hmac
import time
import urllib.parse


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


def check_signature(req, body, service, access_key_id, secret_access_key,
                    session_token=None):
    """None when req (a BaseHTTPRequestHandler) is signed by the credentials
    for service, else the reason."""
    headers = {k.lower(): v for k, v in req.headers.items()}
    auth = headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return "no SigV4 Authorization"
    parts = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
    credential = parts.get("Credential", "").split("/")
    if len(credential) != 5 or credential[0] != access_key_id:
        return "unknown access key"
    if credential[3] != service or credential[4] != "aws4_request":
        return f"credential scope is not {service}"
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
    if session_token is not None:
        if headers.get("x-amz-security-token") != session_token:
            return "wrong or missing security token"
        if "x-amz-security-token" not in signed:
            return "the security token is not signed"
    if any(h not in headers for h in signed):
        return "a signed header is missing"
    path, _, query = req.path.partition("?")
    expected = sigv4_signature(secret_access_key, req.command, path, query, headers,
                               signed, body, amz_date, "/".join(credential[1:]))
    if not hmac.compare_digest(expected, parts.get("Signature", "")):
        return "signature mismatch"
    return None
