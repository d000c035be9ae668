"""A fake Amazon Bedrock Runtime provider (Converse / ConverseStream) for the integration tests.

  POST /model/{modelId}/converse          application/json Converse answer
  POST /model/{modelId}/converse-stream   application/vnd.amazon.eventstream (binary frames)
  POST /model/{modelId}/invoke            InvokeModel of the embedding models (below)

The model id arrives URL-encoded in the path (`anthropic.claude-3-haiku-20240307-v1%3A0`, or an
ARN with `%2F`); req.info["model"] is the decoded one.

Every request's AWS Signature Version 4 is VERIFIED: the fake recomputes the canonical request
(the path's segments URI-encoded once more, as for every service but S3; the sorted query; the
signed headers, values trimmed; the payload's SHA-256), the string to sign and the HMAC chain
from the secret of the access key it was told to accept, and checks the scope (date, region,
service `bedrock`), the clock skew (5 minutes), that `host`, `x-amz-date` and, with temporary
credentials, `x-amz-security-token` are signed and that the token is the expected one.  A
failure answers 403 like AWS: `x-amzn-ErrorType` (MissingAuthenticationTokenException,
UnrecognizedClientException, ExpiredTokenException, InvalidSignatureException,
IncompleteSignatureException) and {"message": ...}, where a signature mismatch tells the
canonical request and string to sign the fake expected.  req.info["auth"] tells what it found.

Answers: Converse JSON {output.message {role, content [text | toolUse]}, stopReason, usage,
metrics}; ConverseStream frames (prelude: total length, headers length, CRC32; headers
`:event-type`, `:content-type` application/json, `:message-type` event; JSON payload with the
real service's "p" padding field; message CRC32): messageStart, contentBlockStart (toolUse),
contentBlockDelta {text | toolUse.input pieces}, contentBlockStop, messageStop, metadata.
Errors: HTTP status, `x-amzn-ErrorType: <Name>:http://internal.amazon.com/coral/...`,
body {"message": ...}; in a stream, `:message-type exception` frames.

InvokeModel embeds, as the models of the id (found anywhere in it, so that "fail-503-" can
precede it): amazon.titan-embed-text-v2 takes {inputText, dimensions? (256, 512 or 1024, the
default), normalize?, embeddingTypes?} and answers {embedding, embeddingsByType {float},
inputTextTokenCount}; cohere.embed-english-v3 / cohere.embed-multilingual-v3 take {texts (at
most 96), input_type, truncate?, embedding_types?} and answer {id, texts, embeddings {float}
| [[...]], response_type} with vectors of 1024.  Each vector is fake_base.embedding() of its
text; a key the model does not know is a ValidationException "Malformed input request: #:
extraneous key [k] is not permitted", as the real service says.  A Titan inputText "fail-NNN"
answers HTTP NNN (a failure in the middle of a client's array, which takes a call an input).

Behaviour by model id (or for every request with set_behavior()):

  fail-NNN       400 ValidationException, 403 AccessDeniedException, 404
                 ResourceNotFoundException, 408 ModelTimeoutException, 424 ModelErrorException,
                 429 ThrottlingException, 500 InternalServerException, 503
                 ServiceUnavailableException
  stall, reset, slow-N, slow-stream, stream-cut   as the other fakes
  split-stream   every frame in several HTTP chunks and TCP writes, cut mid-prelude and
                 mid-headers
  stream-error-first   a stream whose first frame is a modelStreamErrorException;
                 stream-error-first-<exceptionType> for another one
  stream-badcrc  two text deltas, then a frame whose message CRC is wrong;
                 stream-badcrc-prelude: whose prelude CRC is wrong
  stream-error   two text deltas, then a throttlingException frame;
                 stream-error-<exceptionType> for another one (modelStreamErrorException,
                 internalServerException, validationException, serviceUnavailableException)
  tools          a toolUse block for the request's first toolSpec (streamed as
                 contentBlockStart + toolUse input pieces); when the last user turn holds
                 toolResult blocks, text "The tool answered: <result>"
  tools-text     like tools, with a text block first
  max-tokens     echo answer cut with stopReason max_tokens
  big-N          an answer of N characters
  fixture-NAME   t/fixtures/bedrock/NAME.json (NAME.bin when streamed) verbatim; NAME
                 error_NNN answers HTTP NNN with the x-amzn-ErrorType of that status

Wire shapes (t/fixtures/README.md): compact JSON with its keys sorted (Converse answers, event
payloads, the "p" padding member among them: a prefix of a-zA-Z0-9 of random length), no final
newline; Converse answers and errors with a Content-Length, streams chunked.
"""
import datetime
import hashlib
import hmac
import json
import random
import re
import string
import struct
import time
import urllib.parse
import uuid
import zlib

try:
    from .fake_base import (FakeServer, big_text, embedding, fail_status, fixture_bytes,
                            http_date, rand_id, run_forever, split_events, words)
except ImportError:  # run as a script
    from fake_base import (FakeServer, big_text, embedding, fail_status, fixture_bytes,
                           http_date, rand_id, run_forever, split_events, words)

CORAL_BEDROCK = "http://internal.amazon.com/coral/com.amazon.bedrock/"
CORAL_SERVICE = "http://internal.amazon.com/coral/com.amazon.coral.service/"

ERRORS = {
    400: ("ValidationException", "Malformed input request, please reformat your input and "
                                 "try again."),
    403: ("AccessDeniedException", "You don't have access to the model with the specified "
                                   "model ID."),
    404: ("ResourceNotFoundException", "Could not resolve the foundation model from the "
                                       "provided model identifier."),
    408: ("ModelTimeoutException", "Model has timed out in processing the request. Try your "
                                   "request again."),
    424: ("ModelErrorException", "The model encountered an error processing the request."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", "The system encountered an unexpected error during "
                                     "processing. Try your request again."),
    503: ("ServiceUnavailableException", "Bedrock is unable to process your request."),
}

STREAM_EXCEPTIONS = {
    "throttlingException": {"message": "Too many tokens, please wait before trying again."},
    "modelStreamErrorException": {"message": "Model stream error", "originalStatusCode": 500,
                                  "originalMessage": "The model stream was interrupted."},
    "internalServerException": {"message": "The system encountered an unexpected error during "
                                           "processing. Try your request again."},
    "validationException": {"message": "Input is too long for requested model."},
    "serviceUnavailableException": {"message": "The service is unavailable. Try again later."},
}

BLOCK_KEYS = {"text", "image", "document", "video", "toolUse", "toolResult", "guardContent",
              "cachePoint", "reasoningContent", "citationsContent", "searchResult"}

TITAN_KEYS = ("inputText", "dimensions", "normalize", "embeddingTypes")
COHERE_KEYS = ("texts", "input_type", "truncate", "embedding_types", "images")
COHERE_MODELS = ("cohere.embed-english-v3", "cohere.embed-multilingual-v3")

PAD = string.ascii_lowercase + string.ascii_uppercase + string.digits


def compact(obj):
    """AWS's JSON: compact, keys sorted, UTF-8 as is."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()


# ------------------------------------------------------------------ event stream encoding
def _header(name, value):
    n, v = name.encode(), value.encode()
    return bytes([len(n)]) + n + b"\x07" + struct.pack(">H", len(v)) + v


def encode_frame(headers, payload):
    """One application/vnd.amazon.eventstream message; headers [(name, string value)]."""
    h = b"".join(_header(k, v) for k, v in headers)
    total = 12 + len(h) + len(payload) + 4
    prelude = struct.pack(">II", total, len(h))
    msg = prelude + struct.pack(">I", zlib.crc32(prelude)) + h + payload
    return msg + struct.pack(">I", zlib.crc32(msg))


def event_frame(event_type, obj):
    return encode_frame([(":event-type", event_type), (":content-type", "application/json"),
                         (":message-type", "event")], compact(obj))


def exception_frame(exception_type, obj):
    return encode_frame([(":exception-type", exception_type),
                         (":content-type", "application/json"),
                         (":message-type", "exception")], compact(obj))


def decode_frames(data):
    """Parse (and CRC-check) a whole event stream: [(headers dict, payload bytes)]."""
    out = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 16:
            raise ValueError("truncated frame")
        total, hlen = struct.unpack(">II", data[pos:pos + 8])
        (pcrc,) = struct.unpack(">I", data[pos + 8:pos + 12])
        if zlib.crc32(data[pos:pos + 8]) != pcrc:
            raise ValueError("prelude CRC mismatch")
        frame = data[pos:pos + total]
        if len(frame) != total:
            raise ValueError("truncated frame")
        (mcrc,) = struct.unpack(">I", frame[-4:])
        if zlib.crc32(frame[:-4]) != mcrc:
            raise ValueError("message CRC mismatch")
        hdrs = {}
        hp, he = 12, 12 + hlen
        while hp < he:
            nl = frame[hp]
            name = frame[hp + 1:hp + 1 + nl].decode()
            hp += 1 + nl
            t = frame[hp]
            hp += 1
            if t != 7:
                raise ValueError(f"header type {t} not handled")
            (vl,) = struct.unpack(">H", frame[hp:hp + 2])
            hdrs[name] = frame[hp + 2:hp + 2 + vl].decode()
            hp += 2 + vl
        out.append((hdrs, frame[he:-4]))
        pos += total
    return out


# ------------------------------------------------------------------ SigV4
def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(secret, date, region, service):
    k = _hmac(("AWS4" + secret).encode(), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def canonical_uri(raw_path):
    """Every segment of the path as received URI-encoded once more (all services but S3)."""
    segs = []
    for s in raw_path.split("/"):
        if s == ".":
            continue
        if s == ".." and segs:
            segs.pop()
            continue
        segs.append(urllib.parse.quote(s, safe="-_.~"))
    path = "/".join(segs)
    return path if path.startswith("/") else "/" + path


def canonical_query(raw_query):
    if not raw_query:
        return ""
    pairs = []
    for item in raw_query.split("&"):
        if not item:
            continue
        k, _, v = item.partition("=")
        k, v = urllib.parse.unquote(k), urllib.parse.unquote(v)
        pairs.append((urllib.parse.quote(k, safe="-_.~"), urllib.parse.quote(v, safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _canonical_value(values):
    return ",".join(" ".join(v.strip().split()) for v in values)


class SigV4Error(Exception):
    def __init__(self, name, message, status=403):
        super().__init__(message)
        self.name, self.message, self.status = name, message, status


class FakeBedrock(FakeServer):
    kind = "fake-bedrock"

    def __init__(self, access_key_id="AKIAFAKETESTKEY00001",
                 secret_access_key="fakeSecretKey/0123456789abcdefghijKLMNOP",
                 session_token="FwoGZXIvYXdzEFakeSessionTokenForTests0123456789//abc=",
                 region="us-east-1", tls=None, host="127.0.0.1", port=0, name="bedrock",
                 service="bedrock", max_skew=300, verify_signature=True):
        """Accepts requests signed with (access_key_id, secret_access_key[, session_token])
        for `region` and `service`.  session_token None: long-term credentials (no token
        expected).  More credentials: accept(); expire_token() makes a token expired."""
        super().__init__(tls=tls, host=host, port=port, name=name)
        self.region = region
        self.service = service
        self.max_skew = max_skew
        self.verify_signature = verify_signature
        self.credentials = {}            # access key id -> (secret, session token or None)
        self.expired_tokens = set()
        self.accept(access_key_id, secret_access_key, session_token)
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.session_token = session_token

    @property
    def url(self):
        """The endpoint, as a connection's config.endpoint (the SDK's `endpoint`)."""
        return self.origin

    def accept(self, access_key_id, secret_access_key, session_token=None):
        self.credentials[access_key_id] = (secret_access_key, session_token)

    def revoke(self, access_key_id):
        self.credentials.pop(access_key_id, None)

    def expire_token(self, session_token):
        self.expired_tokens.add(session_token)

    def converse_requests(self):
        with self._cond:
            return [r for r in self.requests if r.route.endswith(("/converse",
                                                                   "/converse-stream"))]

    # ---------------------------------------------------------------- SigV4 verification
    def verify(self, req, now=None):
        """Check req's SigV4 signature; raises SigV4Error like AWS, returns the details."""
        info = {"ok": False}
        req.info["auth"] = info
        auth = req.headers.get("authorization")
        if not auth:
            raise SigV4Error("MissingAuthenticationTokenException", "Missing Authentication Token")
        algo, _, rest = auth.partition(" ")
        if algo != "AWS4-HMAC-SHA256":
            raise SigV4Error("IncompleteSignatureException",
                             f"Unsupported authorization type: {algo}", 400)
        params = {}
        for p in rest.split(","):
            k, _, v = p.strip().partition("=")
            params[k] = v
        for k in ("Credential", "SignedHeaders", "Signature"):
            if k not in params:
                raise SigV4Error("IncompleteSignatureException",
                                 f"Authorization header requires '{k}' parameter. "
                                 f"Authorization={auth}", 400)
        scope = params["Credential"].split("/")
        if len(scope) != 5:
            raise SigV4Error("IncompleteSignatureException",
                             "Credential should be scoped to a valid region, not "
                             f"'{params['Credential']}'. ", 400)
        akid, sdate, region, service, term = scope
        signed = params["SignedHeaders"].split(";")
        info.update(access_key_id=akid, date=sdate, region=region, service=service,
                    signed_headers=signed, session_token=req.headers.get("x-amz-security-token"))
        if akid not in self.credentials:
            raise SigV4Error("UnrecognizedClientException",
                             "The security token included in the request is invalid.")
        secret, token = self.credentials[akid]
        got_token = req.headers.get("x-amz-security-token")
        if got_token != token:
            raise SigV4Error("UnrecognizedClientException",
                             "The security token included in the request is invalid.")
        if token is not None and token in self.expired_tokens:
            raise SigV4Error("ExpiredTokenException",
                             "The security token included in the request is expired")
        if term != "aws4_request":
            raise SigV4Error("InvalidSignatureException",
                             "Credential should be scoped with a valid terminator: "
                             f"'aws4_request', not '{term}'. ")
        if region != self.region:
            raise SigV4Error("InvalidSignatureException",
                             f"Credential should be scoped to a valid region, not '{region}'. ")
        if service != self.service:
            raise SigV4Error("InvalidSignatureException",
                             f"Credential should be scoped to correct service: '{self.service}'. ")
        if signed != sorted(signed) or any(h != h.lower() for h in signed):
            raise SigV4Error("InvalidSignatureException",
                             "SignedHeaders must be lower case and sorted: "
                             f"{params['SignedHeaders']}")
        if "host" not in signed:
            raise SigV4Error("InvalidSignatureException",
                             "'Host' or ':authority' must be a 'SignedHeader' in the AWS "
                             "Authorization.")
        amz_date = req.headers.get("x-amz-date")
        if not amz_date:
            raise SigV4Error("IncompleteSignatureException",
                             "Authorization header requires existence of either a "
                             "'X-Amz-Date' or a 'Date' header.", 400)
        if "x-amz-date" not in signed:
            raise SigV4Error("InvalidSignatureException",
                             "'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization.")
        if token is not None and "x-amz-security-token" not in signed:
            raise SigV4Error("InvalidSignatureException",
                             "'X-Amz-Security-Token' must be a 'SignedHeader' in the AWS "
                             "Authorization.")
        try:
            t = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
                tzinfo=datetime.timezone.utc)
        except ValueError:
            raise SigV4Error("IncompleteSignatureException",
                             f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'.", 400)
        if amz_date[:8] != sdate:
            raise SigV4Error("InvalidSignatureException",
                             "Date in Credential scope does not match YYYYMMDD from ISO-8601 "
                             f"version of date from HTTP: '{sdate}' != '{amz_date[:8]}', from "
                             f"'{amz_date}'.")
        now = now if now is not None else time.time()
        skew = t.timestamp() - now
        fmt = "%Y%m%dT%H%M%SZ"
        if skew < -self.max_skew:
            raise SigV4Error("InvalidSignatureException",
                             f"Signature expired: {amz_date} is now earlier than "
                             f"{time.strftime(fmt, time.gmtime(now - self.max_skew))} "
                             f"({time.strftime(fmt, time.gmtime(now))} - 5 min.)")
        if skew > self.max_skew:
            raise SigV4Error("InvalidSignatureException",
                             f"Signature not yet current: {amz_date} is still later than "
                             f"{time.strftime(fmt, time.gmtime(now + self.max_skew))} "
                             f"({time.strftime(fmt, time.gmtime(now))} + 5 min.)")
        body_hash = hashlib.sha256(req.raw_body).hexdigest()
        declared = req.headers.get("x-amz-content-sha256")
        if declared is not None and declared != body_hash:
            raise SigV4Error("InvalidSignatureException",
                             "The provided 'x-amz-content-sha256' header does not match what "
                             "was computed.", 400)
        lines = []
        for h in signed:
            vals = req.header_values(h)
            if not vals:
                raise SigV4Error("InvalidSignatureException",
                                 f"The request signature we calculated does not match the "
                                 f"signature you provided: signed header '{h}' is missing.")
            lines.append(f"{h}:{_canonical_value(vals)}\n")
        creq = "\n".join([req.method, canonical_uri(req.route), canonical_query(req.query),
                          "".join(lines), ";".join(signed), body_hash])
        sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, f"{sdate}/{region}/{service}/aws4_request",
                         hashlib.sha256(creq.encode()).hexdigest()])
        sig = hmac.new(signing_key(secret, sdate, region, service), sts.encode(),
                       hashlib.sha256).hexdigest()
        info.update(canonical_request=creq, string_to_sign=sts, expected_signature=sig)
        if not hmac.compare_digest(sig, params["Signature"]):
            raise SigV4Error("InvalidSignatureException",
                             "The request signature we calculated does not match the signature "
                             "you provided. Check your AWS Secret Access Key and signing method. "
                             "Consult the service documentation for details.\n\n"
                             "The Canonical String for this request should have been\n"
                             f"'{creq}'\n\nThe String-to-Sign should have been\n'{sts}'\n")
        info["ok"] = True
        return info

    # ---------------------------------------------------------------- headers and errors
    @staticmethod
    def _headers(ctype):
        return [("Date", http_date()), ("Content-Type", ctype),
                ("x-amzn-RequestId", str(uuid.uuid4()))]

    async def _error(self, writer, req, status, name=None, message=None, coral=CORAL_BEDROCK):
        n, m = ERRORS.get(status, ("InternalServerException", f"Fake provider error {status}"))
        hdrs = self._headers("application/json")
        hdrs.append(("x-amzn-ErrorType", f"{name or n}:{coral}"))
        return await self.send(writer, req, status, compact({"message": message or m}), hdrs)

    # ---------------------------------------------------------------- request checks
    @staticmethod
    def _check(body):
        if not isinstance(body, dict):
            return "Malformed input request, please reformat your input and try again."
        msgs = body.get("messages")
        if msgs is None:
            return ("1 validation error detected: Value null at 'messages' failed to satisfy "
                    "constraint: Member must not be null")
        if not isinstance(msgs, list):
            return "Malformed input request: messages: expected a list"
        uses_tools = False
        prev_uses = []
        for i, m in enumerate(msgs):
            if not isinstance(m, dict):
                return f"Malformed input request: messages.{i}: expected an object"
            role = m.get("role")
            if role not in ("user", "assistant"):
                return (f"1 validation error detected: Value '{role}' at 'messages.{i + 1}."
                        "member.role' failed to satisfy constraint: Member must satisfy enum "
                        "value set: [user, assistant]")
            if i == 0 and role != "user":
                return ("A conversation must start with a user message. Try again with a "
                        "conversation that starts with a user message.")
            if i > 0 and role == msgs[i - 1].get("role"):
                return ("A conversation must alternate between user and assistant roles. "
                        "Make sure the conversation alternates between user and assistant "
                        "roles and try again.")
            content = m.get("content")
            if not isinstance(content, list) or not content:
                return (f"The content field in the Message object at messages.{i} is empty. "
                        "Add a ContentBlock object to the content field and try again.")
            uses, results = [], []
            for j, b in enumerate(content):
                keys = set(b) & BLOCK_KEYS if isinstance(b, dict) else set()
                if len(keys) != 1:
                    return (f"The content field in the Message object at messages.{i}."
                            f"content.{j} is empty or has more than one member. Set exactly "
                            "one ContentBlock member and try again.")
                if "text" in keys and not isinstance(b["text"], str):
                    return f"Malformed input request: messages.{i}.content.{j}.text: expected " \
                           "a string"
                if "toolUse" in keys:
                    tu = b["toolUse"]
                    if role != "assistant" or not isinstance(tu, dict) or \
                            not all(k in tu for k in ("toolUseId", "name", "input")):
                        return f"Malformed input request: messages.{i}.content.{j}.toolUse"
                    uses.append(tu["toolUseId"])
                    uses_tools = True
                if "toolResult" in keys:
                    tr = b["toolResult"]
                    if role != "user" or not isinstance(tr, dict) or "toolUseId" not in tr \
                            or not isinstance(tr.get("content"), list):
                        return f"Malformed input request: messages.{i}.content.{j}.toolResult"
                    results.append(tr["toolUseId"])
                    uses_tools = True
            if len(results) > len(prev_uses):
                return (f"The number of toolResult blocks at messages.{i}.content exceeds the "
                        "number of toolUse blocks of previous turn.")
            missing = [u for u in prev_uses if u not in results]
            if prev_uses and missing:
                return (f"Expected toolResult blocks at messages.{i}.content for the following "
                        f"Ids: {', '.join(missing)}")
            prev_uses = uses
        tc = body.get("toolConfig")
        if uses_tools and not tc:
            return ("The toolConfig field must be defined when using toolUse and toolResult "
                    "content blocks.")
        if tc is not None:
            tools = tc.get("tools") if isinstance(tc, dict) else None
            if not isinstance(tools, list) or not tools:
                return ("1 validation error detected: Value '[]' at 'toolConfig.tools' failed "
                        "to satisfy constraint: Member must have length greater than or equal "
                        "to 1")
            for i, t in enumerate(tools):
                spec = t.get("toolSpec") if isinstance(t, dict) else None
                if spec is None and isinstance(t, dict) and "cachePoint" in t:
                    continue
                if not isinstance(spec, dict) or not spec.get("name") or \
                        not isinstance((spec.get("inputSchema") or {}).get("json"), dict):
                    return f"Malformed input request: toolConfig.tools.{i}.toolSpec"
        system = body.get("system")
        if system is not None and not isinstance(system, list):
            return "Malformed input request: system: expected a list"
        ic = body.get("inferenceConfig")
        if ic is not None:
            if not isinstance(ic, dict):
                return "Malformed input request: inferenceConfig: expected an object"
            mt = ic.get("maxTokens")
            if mt is not None and (not isinstance(mt, int) or mt < 1):
                return (f"1 validation error detected: Value '{mt}' at 'inferenceConfig."
                        "maxTokens' failed to satisfy constraint: Member must have value "
                        "greater than or equal to 1")
        return None

    # ---------------------------------------------------------------- dispatch
    async def handle(self, req, writer):
        m = re.fullmatch(r"(?:/[^?]*)?/model/([^/]+)/(converse|converse-stream|invoke)",
                         req.route)
        if not m:
            return await self._error(writer, req, 404, "UnknownOperationException",
                                     "Unknown operation", CORAL_SERVICE)
        model = urllib.parse.unquote(m.group(1))
        stream = m.group(2) == "converse-stream"
        req.info.update(model=model, stream=stream)
        if req.method != "POST":
            return await self._error(writer, req, 404, "UnknownOperationException",
                                     "Unknown operation", CORAL_SERVICE)
        if self.verify_signature:
            try:
                self.verify(req)
            except SigV4Error as e:
                req.info["auth"]["error"] = f"{e.name}: {e.message}"
                return await self._error(writer, req, e.status, e.name, e.message, CORAL_SERVICE)
        if req.body is None:
            return await self._error(writer, req, 400, "SerializationException",
                                     "Malformed input request, please reformat your input and "
                                     "try again.")
        if m.group(2) == "invoke":
            return await self._invoke(writer, req, model)
        problem = self._check(req.body)
        if problem:
            return await self._error(writer, req, 400, "ValidationException", problem)
        behavior = self.behavior or model
        req.info["behavior"] = behavior

        if behavior.startswith("fail-"):
            return await self._error(writer, req, fail_status(behavior))
        if behavior.startswith("fixture-"):
            return await self._fixture(writer, req, behavior[8:], stream)
        done, keep = await self.common_behavior(behavior, writer)
        if done:
            return keep
        t0 = time.time()
        plan = self._plan(req.body, model, behavior)
        if not stream:
            blocks, stop = plan
            usage = dict(self._usage(req.body, blocks), cacheReadInputTokenCount=0,
                         cacheReadInputTokens=0, cacheWriteInputTokenCount=0,
                         cacheWriteInputTokens=0)
            blocks = [{"toolUse": dict(b["toolUse"], type="tool_use")} if "toolUse" in b else b
                      for b in blocks]
            out = {"metrics": {"latencyMs": int((time.time() - t0) * 1000) + 120},
                   "output": {"message": {"content": blocks, "role": "assistant"}},
                   "stopReason": stop,
                   "usage": usage}
            return await self.send(writer, req, 200, compact(out),
                                   self._headers("application/json"))
        events = self._frames(req.body, behavior, plan)
        hdrs = self._headers("application/vnd.amazon.eventstream")
        return await self.stream(writer, req, 200, hdrs, events, behavior)

    # ---------------------------------------------------------------- InvokeModel
    @staticmethod
    def _invoke_check(body, titan):
        if not isinstance(body, dict):
            return "Malformed input request: #: expected type: JSONObject"
        keys = TITAN_KEYS if titan else COHERE_KEYS
        for k in body:
            if k not in keys:
                return (f"Malformed input request: #: extraneous key [{k}] is not permitted, "
                        "please reformat your input and try again.")
        if titan:
            text = body.get("inputText")
            if not isinstance(text, str) or not text:
                return "Malformed input request: #/inputText: expected minLength: 1"
            if body.get("dimensions", 1024) not in (256, 512, 1024):
                return (f"Malformed input request: #/dimensions: {body['dimensions']} is not a "
                        "valid enum value, please reformat your input and try again.")
            return None
        texts = body.get("texts")
        if "input_type" not in body:
            return "Malformed input request: #: required key [input_type] not found"
        if not isinstance(texts, list) or not texts or len(texts) > 96:
            return "Malformed input request: #/texts: expected between 1 and 96 items"
        if not all(isinstance(t, str) for t in texts):
            return "Malformed input request: #/texts: expected type: String"
        return None

    async def _invoke(self, writer, req, model):
        behavior = self.behavior or model
        req.info["behavior"] = behavior
        titan = "amazon.titan-embed-text-v2" in model
        if not titan and not any(m in model for m in COHERE_MODELS):
            return await self._error(writer, req, 400, "ValidationException",
                                     "The provided model identifier is invalid.")
        problem = self._invoke_check(req.body, titan)
        if problem:
            return await self._error(writer, req, 400, "ValidationException", problem)
        body = req.body
        if titan and body["inputText"].startswith("fail-"):
            behavior = body["inputText"]
        if behavior.startswith("fail-"):
            return await self._error(writer, req, fail_status(behavior))
        done, keep = await self.common_behavior(behavior, writer)
        if done:
            return keep
        if titan:
            v = embedding(body["inputText"], body.get("dimensions", 1024))
            out = {"embedding": v, "embeddingsByType": {"float": v},
                   "inputTextTokenCount": len(body["inputText"].split())}
        else:
            vectors = [embedding(t, 1024) for t in body["texts"]]
            typed = "embedding_types" in body
            out = {"id": str(uuid.uuid4()), "texts": body["texts"],
                   "embeddings": {"float": vectors} if typed else vectors,
                   "response_type": "embeddings_by_type" if typed else "embeddings_floats"}
        return await self.send(writer, req, 200, compact(out), self._headers("application/json"))

    async def _fixture(self, writer, req, name, stream):
        """t/fixtures/bedrock/<name> verbatim, with the real headers."""
        if name.startswith("error_"):
            status = int(name[6:9])
            hdrs = self._headers("application/json")
            ename = ERRORS.get(status, ("InternalServerException",))[0]
            hdrs.append(("x-amzn-ErrorType", f"{ename}:{CORAL_BEDROCK}"))
            return await self.send(writer, req, status, fixture_bytes("bedrock", name + ".json"),
                                   hdrs)
        if stream:
            return await self.stream(writer, req, 200,
                                     self._headers("application/vnd.amazon.eventstream"),
                                     split_events(fixture_bytes("bedrock", name + ".bin")))
        return await self.send(writer, req, 200, fixture_bytes("bedrock", name + ".json"),
                               self._headers("application/json"))

    # ---------------------------------------------------------------- answers
    @staticmethod
    def _text_of(content):
        out = []
        for b in content if isinstance(content, list) else []:
            if isinstance(b, dict) and isinstance(b.get("text"), str):
                out.append(b["text"])
            elif isinstance(b, dict) and isinstance(b.get("json"), (dict, list)):
                out.append(json.dumps(b["json"], separators=(",", ":")))
        return " ".join(out)

    def _usage(self, body, blocks):
        n = len(self._text_of(body.get("system")).split())
        for m in body.get("messages") or []:
            n += 4 + len(self._text_of(m.get("content")).split())
        inp = n + 3
        out = sum(len(words(b["text"])) if "text" in b else 12 for b in blocks)
        return {"inputTokens": inp, "outputTokens": out, "serverToolUsage": {},
                "totalTokens": inp + out}

    def _tool_use(self, body):
        spec = {"name": "get_weather", "inputSchema": {"json": {}}}
        for t in (body.get("toolConfig") or {}).get("tools") or []:
            if isinstance(t, dict) and "toolSpec" in t:
                spec = t["toolSpec"]
                break
        props = ((spec.get("inputSchema") or {}).get("json") or {}).get("properties") or {}
        args = {}
        for k, v in props.items():
            t = v.get("type") if isinstance(v, dict) else "string"
            args[k] = {"number": 1, "integer": 1, "boolean": True}.get(t, "Paris")
        return {"toolUse": {"toolUseId": rand_id("tooluse_", 22, PAD + "-_"),
                            "name": spec.get("name"), "input": args}}

    def _plan(self, body, model, behavior):
        msgs = body["messages"]
        tools_mode = behavior in ("tools", "tools-text")
        last = msgs[-1] if msgs else {}
        results = [b["toolResult"] for b in last.get("content") or []
                   if isinstance(b, dict) and "toolResult" in b]
        if tools_mode and not results:
            blocks = []
            if behavior == "tools-text":
                blocks.append({"text": "Let me check that for you."})
            blocks.append(self._tool_use(body))
            return blocks, "tool_use"
        if tools_mode:
            text = "The tool answered: " + self._text_of(results[-1].get("content"))
        elif behavior.startswith("big-"):
            text = big_text(behavior)
        else:
            last_user = ""
            for m in msgs:
                if m.get("role") == "user":
                    last_user = self._text_of(m.get("content"))
            text = f"Hello from {model}! You said: {last_user}"
        if behavior == "max-tokens":
            return [{"text": "".join(words(text)[:2])}], "max_tokens"
        return [{"text": text}], "end_turn"

    @staticmethod
    def _pad(obj):
        obj = dict(obj)
        obj["p"] = PAD[:random.randint(1, len(PAD))]
        return obj

    def _frames(self, body, behavior, plan):
        blocks, stop = plan
        t0 = time.time()
        fr = [event_frame("messageStart", self._pad({"role": "assistant"}))]
        exc = None
        if behavior.startswith("stream-error-first"):
            exc = behavior[len("stream-error-first-"):] \
                if behavior.startswith("stream-error-first-") else "modelStreamErrorException"
            return [exception_frame(exc, STREAM_EXCEPTIONS.get(exc, {"message": f"Fake {exc}"}))]
        if behavior.startswith("stream-badcrc"):
            fr = self._frames(body, "", plan)
            bad = bytearray(fr[3])
            bad[8 if behavior == "stream-badcrc-prelude" else -1] ^= 0xff
            return fr[:3] + [bytes(bad)] + fr[4:]
        if behavior.startswith("stream-error"):
            exc = behavior[len("stream-error-"):] if behavior.startswith("stream-error-") \
                else "throttlingException"
        deltas = 0
        for i, b in enumerate(blocks):
            if "text" in b:
                for w in words(b["text"]):
                    if exc and deltas == 2:
                        fr.append(exception_frame(exc, STREAM_EXCEPTIONS.get(
                            exc, {"message": f"Fake {exc}"})))
                        return fr
                    fr.append(event_frame("contentBlockDelta", self._pad(
                        {"contentBlockIndex": i, "delta": {"text": w}})))
                    deltas += 1
            else:
                tu = b["toolUse"]
                fr.append(event_frame("contentBlockStart", self._pad(
                    {"contentBlockIndex": i,
                     "start": {"toolUse": {"toolUseId": tu["toolUseId"], "name": tu["name"]}}})))
                args = json.dumps(tu["input"], separators=(",", ":"))
                for k in range(0, len(args), 7):
                    fr.append(event_frame("contentBlockDelta", self._pad(
                        {"contentBlockIndex": i,
                         "delta": {"toolUse": {"input": args[k:k + 7]}}})))
            fr.append(event_frame("contentBlockStop", self._pad({"contentBlockIndex": i})))
        fr.append(event_frame("messageStop", self._pad({"stopReason": stop})))
        fr.append(event_frame("metadata", self._pad({
            "metrics": {"latencyMs": int((time.time() - t0) * 1000) + 120},
            "usage": self._usage(body, blocks)})))
        return fr


if __name__ == "__main__":
    run_forever(FakeBedrock)
