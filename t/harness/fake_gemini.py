"""A fake Gemini provider (Generative Language API, v1beta) for the integration tests.

  POST /v1beta/models/{model}:generateContent
  POST /v1beta/models/{model}:streamGenerateContent?alt=sse   (without alt=sse: a JSON array)
  POST /v1beta/models/{model}:embedContent        {"embedding": {"values": [...]}}
  POST /v1beta/models/{model}:batchEmbedContents  {"embeddings": [{"values": [...]}, ...]}

with the key in `x-goog-api-key` (or `?key=`), answering GenerateContentResponse objects
(candidates [{content {role "model", parts [text | functionCall]}, finishReason, index,
safetyRatings}], usageMetadata, modelVersion, responseId).  Like the real API, whole answers
and errors are pretty-printed JSON with a final newline (`Content-Type: application/json;
charset=UTF-8`, chunked), and the stream is `data: <one-line JSON>\\r\\n\\r\\n` per event
(`Content-Type: text/event-stream`).  Errors: {"error": {"code", "message", "status",
"details"?}}; a key refused on streamGenerateContent?alt=sse (and a fixture error there)
keeps `Content-Type: text/event-stream` (pretty JSON, with a Content-Length), as the real API
was recorded answering it; other errors are application/json.

The request is checked like the real API does: unknown fields (at the top level and in
generationConfig) are refused with `Invalid JSON payload received. Unknown name ...`, contents
must be present and non-empty, roles must be user or model, parts must be known part types.

Behaviour by model name (or for every request with set_behavior()):

  fail-NNN       HTTP NNN: 400 INVALID_ARGUMENT, 403 PERMISSION_DENIED, 404 NOT_FOUND,
                 429 RESOURCE_EXHAUSTED (with RetryInfo), 500 INTERNAL, 503 UNAVAILABLE,
                 504 DEADLINE_EXCEEDED
  blocked        promptFeedback.blockReason SAFETY and no candidates (HTTP 200)
  stall, reset, slow-N, slow-stream, split-stream, stream-cut   as the other fakes
  stream-error   two text events, then `data: {"error": {... 500 INTERNAL}}`
  stream-error-first   a 200 stream whose first event is `data: {"error": {... 503
                 UNAVAILABLE}}`
  safety-stop    a streamed or whole answer stopped with finishReason SAFETY, no content and
                 no candidatesTokenCount (as the real API leaves out a count of 0)
  tools          a functionCall part for the request's first function declaration; when the
                 last content holds functionResponse parts, text "The tool answered: <json>"
  max-tokens     echo answer with finishReason MAX_TOKENS
  big-N          an answer of N characters
  fixture-NAME   t/fixtures/gemini/NAME.json (NAME.sse when streamed with alt=sse)
                 verbatim; NAME error_NNN answers HTTP NNN
  anything else  an echo answer: "Hello from <model>! You said: <last user text>"

Embeddings: {content {parts [{text}]}, taskType?, title?, outputDimensionality?} (in a batch,
each of at most 100 requests names "model": "models/{model}" too); each vector is
fake_base.embedding() of the parts' text, outputDimensionality values long (768 by default);
no usage, as the real API.  The model name chooses fail-NNN, stall, reset and slow-N.

A missing key gives 403 PERMISSION_DENIED, a wrong one 400 INVALID_ARGUMENT (API_KEY_INVALID),
as the real API does (api_key=None accepts any).
"""
import base64
import json
import os
import random
import urllib.parse

try:
    from .fake_base import (FakeServer, big_text, embedding, fail_status, fixture_bytes,
                            http_date, run_forever, split_events, words)
except ImportError:  # run as a script
    from fake_base import (FakeServer, big_text, embedding, fail_status, fixture_bytes,
                           http_date, run_forever, split_events, words)

API_HOST = "generativelanguage.googleapis.com"
EMBED_METHODS = ("embedContent", "batchEmbedContents")
EMBED_FIELDS = ("model", "content", "taskType", "title", "outputDimensionality")

ERRORS = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", None),   # message names the model
    429: ("RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and "
                                "billing details. For more information on this error, head to: "
                                "ai.google.dev/gemini-api/docs/rate-limits."),
    500: ("INTERNAL", "An internal error has occurred. Please retry or report in "
                      "ai.google.dev/gemini-api/docs/troubleshooting"),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}

TOP_FIELDS = {"contents", "tools", "toolConfig", "safetySettings", "systemInstruction",
              "generationConfig", "cachedContent", "labels", "model"}
GEN_FIELDS = {"stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema",
              "_responseJsonSchema", "responseModalities", "candidateCount", "maxOutputTokens",
              "temperature", "topP", "topK", "seed", "presencePenalty", "frequencyPenalty",
              "responseLogprobs", "logprobs", "enableEnhancedCivicAnswers", "speechConfig",
              "thinkingConfig", "mediaResolution", "imageConfig", "audioTimestamp",
              "routingConfig", "modelSelectionConfig"}
PART_FIELDS = {"text", "inlineData", "fileData", "functionCall", "functionResponse",
               "executableCode", "codeExecutionResult", "thought", "thoughtSignature",
               "videoMetadata", "partMetadata", "mediaResolution"}

SAFETY_NEGLIGIBLE = [
    {"category": c, "probability": "NEGLIGIBLE"}
    for c in ("HARM_CATEGORY_SEXUALLY_EXPLICIT", "HARM_CATEGORY_HATE_SPEECH",
              "HARM_CATEGORY_HARASSMENT", "HARM_CATEGORY_DANGEROUS_CONTENT")]


def pretty(obj):
    """Google's pretty JSON: two-space indent, ": " after keys, a final newline."""
    return json.dumps(obj, indent=2, ensure_ascii=False).encode() + b"\n"


def line(obj):
    """Google's one-line JSON in SSE events: `"key": value`, items joined by "," alone."""
    return json.dumps(obj, separators=(",", ": "), ensure_ascii=False).encode()


def _response_id():
    return base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")[:22]


def _parts_text(parts):
    if not isinstance(parts, list):
        return ""
    return " ".join(p.get("text", "") for p in parts if isinstance(p, dict) and "text" in p)


class FakeGemini(FakeServer):
    kind = "fake-gemini"

    def __init__(self, api_key="AIzaFakeTestKey0123456789abcdefghijklm", tls=None,
                 host="127.0.0.1", port=0, name="gemini", strict_fields=True):
        """api_key: the key to accept (None: any).  tls: None, or (cert, key).
        strict_fields: refuse unknown request fields like the real API."""
        super().__init__(tls=tls, host=host, port=port, name=name)
        self.api_key = api_key
        self.strict_fields = strict_fields
        self.retry_delay = "1s"

    @property
    def url(self):
        """Base URL as a connection's config.baseUrl (the SDK's httpOptions.baseUrl): no
        /v1beta, which the SDK and the gateway add."""
        return self.origin

    def generate_requests(self):
        with self._cond:
            return [r for r in self.requests if ":" in r.route.rsplit("/", 1)[-1]]

    # ---------------------------------------------------------------- headers and errors
    def _headers(self, ctype):
        return [("Content-Type", ctype),
                ("Vary", "Origin"), ("Vary", "X-Origin"), ("Vary", "Referer"),
                ("Date", http_date()),
                ("Server", "scaffolding on HTTPServer2"),
                ("X-XSS-Protection", "0"),
                ("X-Frame-Options", "SAMEORIGIN"),
                ("X-Content-Type-Options", "nosniff"),
                ("Server-Timing", f"gfet4t7; dur={random.randint(200, 900)}"),
                ("Alt-Svc", 'h3=":443"; ma=2592000,h3-29=":443"; ma=2592000')]

    def _error_obj(self, status, message=None, model=None, details=None):
        st, m = ERRORS.get(status, ("UNKNOWN", f"Fake provider error {status}"))
        if status == 404 and not message:
            message = (f"models/{model} is not found for API version v1beta, or is not "
                       "supported for generateContent. Call ListModels to see the list of "
                       "available models and their supported methods.")
        err = {"code": status, "message": message or m, "status": st}
        if details is None and status == 429:
            details = [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                 "violations": [{"quotaMetric": f"{API_HOST}/generate_content_free_tier_requests",
                                 "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                                 "quotaDimensions": {"location": "global", "model": model or ""},
                                 "quotaValue": "10"}]},
                {"@type": "type.googleapis.com/google.rpc.Help",
                 "links": [{"description": "Learn more about Gemini API quotas",
                            "url": "ai.google.dev/gemini-api/docs/rate-limits"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                 "retryDelay": self.retry_delay}]
        if details:
            err["details"] = details
        return {"error": err}

    @staticmethod
    def _sse_route(req):
        return req.route.endswith(":streamGenerateContent") and "alt=sse" in req.query

    async def _error(self, writer, req, status, message=None, model=None, details=None,
                     sse=False):
        return await self._send_error(writer, req, status,
                                      pretty(self._error_obj(status, message, model, details)),
                                      sse)

    async def _send_error(self, writer, req, status, data, sse=False):
        if sse and self._sse_route(req):
            return await self.send(writer, req, status, data, self._headers("text/event-stream"))
        return await self.send_chunked(writer, req, status, data,
                                       self._headers("application/json; charset=UTF-8"))

    # ---------------------------------------------------------------- request checks
    def _check(self, body):
        if not isinstance(body, dict):
            return "Invalid JSON payload received. Expected an object."
        if self.strict_fields:
            for k in body:
                if k not in TOP_FIELDS:
                    return f'Invalid JSON payload received. Unknown name "{k}": Cannot find field.'
            gc = body.get("generationConfig")
            if gc is not None:
                if not isinstance(gc, dict):
                    return ('Invalid JSON payload received. Unknown name "generationConfig": '
                            'Proto field is not repeating, cannot start list.')
                for k in gc:
                    if k not in GEN_FIELDS:
                        return (f'Invalid JSON payload received. Unknown name "{k}" at '
                                "'generation_config': Cannot find field.")
        contents = body.get("contents")
        if not contents:
            return "* GenerateContentRequest.contents: contents is not specified\n"
        if not isinstance(contents, list):
            return ('Invalid JSON payload received. Unknown name "contents": '
                    "Proto field is repeating, cannot start object.")
        for i, c in enumerate(contents):
            if not isinstance(c, dict):
                return f"Invalid value at 'contents[{i}]' (type.googleapis.com/google.ai."\
                       "generativelanguage.v1beta.Content), expected an object"
            if c.get("role", "user") not in ("user", "model", "function"):
                return "Please use a valid role: user, model."
            parts = c.get("parts")
            if not parts or not isinstance(parts, list):
                return f"* GenerateContentRequest.contents[{i}].parts: contents.parts must " \
                       "not be empty.\n"
            for j, p in enumerate(parts):
                if not isinstance(p, dict):
                    return f"Invalid value at 'contents[{i}].parts[{j}]', expected an object"
                for k in p:
                    if self.strict_fields and k not in PART_FIELDS:
                        return (f'Invalid JSON payload received. Unknown name "{k}" at '
                                f"'contents[{i}].parts[{j}]': Cannot find field.")
                if not any(k in p for k in PART_FIELDS if k not in ("thought",
                                                                     "thoughtSignature")):
                    return (f"* GenerateContentRequest.contents[{i}].parts[{j}].data: "
                            "required oneof field 'data' must have one initialized field\n")
        si = body.get("systemInstruction")
        if si is not None and not (isinstance(si, dict) and isinstance(si.get("parts"), list)):
            return ("Invalid value at 'system_instruction' (type.googleapis.com/google.ai."
                    "generativelanguage.v1beta.Content), expected an object with parts")
        tools = body.get("tools")
        if tools is not None:
            if not isinstance(tools, list):
                return ('Invalid JSON payload received. Unknown name "tools": '
                        "Proto field is repeating, cannot start object.")
            for i, t in enumerate(tools):
                for j, fd in enumerate((t or {}).get("functionDeclarations") or []):
                    if not isinstance(fd, dict) or not fd.get("name"):
                        return (f"* GenerateContentRequest.tools[{i}].function_declarations"
                                f"[{j}].name: Name cannot be empty.\n")
        return None

    # ---------------------------------------------------------------- dispatch
    async def handle(self, req, writer):
        route = urllib.parse.unquote(req.route)
        query = dict(urllib.parse.parse_qsl(req.query))
        prefix = "/v1beta/models/"
        tail = route.split(prefix, 1)[1] if prefix in route else None
        if tail is None or ":" not in tail:
            return await self._error(writer, req, 404,
                                     f"Method not found: {req.method} {route}")
        model, _, method = tail.rpartition(":")
        if method not in ("generateContent", "streamGenerateContent") + EMBED_METHODS:
            return await self._error(writer, req, 404, f"Method not found: {method}")
        if req.method != "POST":
            return await self._error(writer, req, 405 if req.method != "GET" else 404,
                                     f"Method not allowed: {req.method}")
        key = req.headers.get("x-goog-api-key") or query.get("key")
        if self.api_key is not None and key != self.api_key:
            if not key:
                return await self._error(
                    writer, req, 403,
                    "Method doesn't allow unregistered callers (callers without established "
                    "identity). Please use API Key or other form of API consumer identity to "
                    "call this API.", sse=True)
            return await self._error(
                writer, req, 400, "API key not valid. Please pass a valid API key.",
                details=[{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                          "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                          "metadata": {"service": API_HOST}},
                         {"@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                          "locale": "en-US",
                          "message": "API key not valid. Please pass a valid API key."}],
                sse=True)
        if req.body is None:
            return await self._error(writer, req, 400,
                                     "Invalid JSON payload received. Unexpected token.")
        if method in EMBED_METHODS:
            return await self._embed(writer, req, model, method)
        problem = self._check(req.body)
        if problem:
            return await self._error(writer, req, 400, problem)
        behavior = self.behavior or model
        stream = method == "streamGenerateContent"
        req.info.update(model=model, behavior=behavior, stream=stream,
                        alt=query.get("alt"))

        if behavior.startswith("fail-"):
            return await self._error(writer, req, fail_status(behavior), model=model)
        if behavior.startswith("fixture-"):
            return await self._fixture(writer, req, behavior[8:], stream)
        done, keep = await self.common_behavior(behavior, writer)
        if done:
            return keep
        chunks = self._chunks(req.body, model, behavior, stream)
        if not stream:
            return await self.send_chunked(writer, req, 200, pretty(self._merge(chunks)),
                                           self._headers("application/json; charset=UTF-8"))
        if query.get("alt") == "sse":
            events = [b"data: " + line(c) + b"\r\n\r\n" for c in chunks]
            hdrs = self._headers("text/event-stream")
        else:
            # without alt=sse the real API streams one JSON array, an element at a time
            events = [(b"[" if i == 0 else b",\r\n") + pretty(c) for i, c in enumerate(chunks)]
            events.append(b"]")
            hdrs = self._headers("application/json; charset=UTF-8")
        hdrs.append(("Content-Disposition", "attachment"))
        return await self.stream(writer, req, 200, hdrs, events, behavior)

    # ---------------------------------------------------------------- embeddings
    @staticmethod
    def _embed_check(body, model, batch):
        """The requests of an embedContent / batchEmbedContents body, or an error message."""
        if not isinstance(body, dict):
            return None, "Invalid JSON payload received. Expected an object."
        where = "BatchEmbedContentsRequest" if batch else "EmbedContentRequest"
        requests = body.get("requests") if batch else [body]
        if batch:
            if not isinstance(requests, list) or not requests:
                return None, f"* {where}.requests: requests is not specified\n"
            if len(requests) > 100:
                return None, f"* {where}.requests: at most 100 requests can be in one batch\n"
        for i, rq in enumerate(requests):
            at = f"{where}.requests[{i}]" if batch else where
            if not isinstance(rq, dict):
                return None, f"Invalid value at '{at}', expected an object"
            for k in rq:
                if k not in EMBED_FIELDS or (k == "model" and not batch):
                    return None, (f'Invalid JSON payload received. Unknown name "{k}": '
                                  "Cannot find field.")
            if batch and rq.get("model") != f"models/{model}":
                return None, (f"* {at}.model: the model of every request must be the "
                              f"batch's, models/{model}\n")
            if not _parts_text((rq.get("content") or {}).get("parts")):
                return None, f"* {at}.content: content is not specified\n"
        return requests, None

    async def _embed(self, writer, req, model, method):
        batch = method == "batchEmbedContents"
        behavior = self.behavior or model
        req.info.update(model=model, behavior=behavior, method=method)
        requests, problem = self._embed_check(req.body, model, batch)
        if problem:
            return await self._error(writer, req, 400, problem)
        if behavior.startswith("fail-"):
            return await self._error(writer, req, fail_status(behavior), model=model)
        done, keep = await self.common_behavior(behavior, writer)
        if done:
            return keep
        vectors = [{"values": embedding(_parts_text(rq["content"]["parts"]),
                                        rq.get("outputDimensionality") or 768)}
                   for rq in requests]
        out = {"embeddings": vectors} if batch else {"embedding": vectors[0]}
        return await self.send_chunked(writer, req, 200, pretty(out),
                                       self._headers("application/json; charset=UTF-8"))

    async def _fixture(self, writer, req, name, stream):
        """t/fixtures/gemini/<name> verbatim, with the real headers."""
        if name.startswith("error_"):
            return await self._send_error(writer, req, int(name[6:9]),
                                          fixture_bytes("gemini", name + ".json"), sse=True)
        if stream:
            hdrs = self._headers("text/event-stream")
            hdrs.append(("Content-Disposition", "attachment"))
            return await self.stream(writer, req, 200, hdrs,
                                     split_events(fixture_bytes("gemini", name + ".sse")))
        return await self.send_chunked(writer, req, 200, fixture_bytes("gemini", name + ".json"),
                                       self._headers("application/json; charset=UTF-8"))

    # ---------------------------------------------------------------- answers
    def _prompt_tokens(self, body):
        n = 0
        si = body.get("systemInstruction")
        if isinstance(si, dict):
            n += len(_parts_text(si.get("parts")).split())
        for c in body.get("contents") or []:
            n += 2 + len(_parts_text(c.get("parts")).split())
        return n + 1

    def _function_call(self, body):
        fd = {"name": "get_weather", "parameters": {}}
        for t in body.get("tools") or []:
            decls = (t or {}).get("functionDeclarations") or []
            if decls:
                fd = decls[0]
                break
        schema = fd.get("parameters") or fd.get("parametersJsonSchema") or {}
        args = {}
        for k, v in (schema.get("properties") or {}).items():
            t = str(v.get("type", "string")).lower() if isinstance(v, dict) else "string"
            args[k] = {"number": 1, "integer": 1, "boolean": True}.get(t, "Paris")
        return {"name": fd.get("name"), "args": args}

    def _chunks(self, body, model, behavior, stream):
        """The answer as a list of GenerateContentResponse objects (one when not streamed)."""
        rid = _response_id()
        pt = self._prompt_tokens(body)
        contents = body.get("contents") or []

        def resp(parts=None, finish=None, ct=None, extra=None):
            r = {}
            if parts is not None:
                cand = {"content": {"parts": parts, "role": "model"}}
                if finish:
                    cand["finishReason"] = finish
                    if not stream:
                        cand["safetyRatings"] = SAFETY_NEGLIGIBLE
                cand["index"] = 0
                r["candidates"] = [cand]
            if extra:
                r.update(extra)
            u = {"promptTokenCount": pt}
            if ct is not None:
                u["candidatesTokenCount"] = ct
            u["totalTokenCount"] = pt + (ct or 0)
            u["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": pt}]
            r["usageMetadata"] = u
            r["modelVersion"] = model
            r["responseId"] = rid
            return r

        if behavior == "stream-error-first":
            return [self._error_obj(503)]
        if behavior == "safety-stop":
            r = resp([], None)
            r["candidates"][0].pop("content")
            r["candidates"][0]["finishReason"] = "SAFETY"
            r["candidates"][0]["safetyRatings"] = SAFETY_NEGLIGIBLE
            return [r]
        if behavior == "blocked":
            return [resp(extra={"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
                {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
                {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
                {"category": "HARM_CATEGORY_HARASSMENT", "probability": "HIGH", "blocked": True},
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "NEGLIGIBLE"}]}})]
        last_parts = (contents[-1].get("parts") or []) if contents else []
        responses = [p["functionResponse"] for p in last_parts
                     if isinstance(p, dict) and "functionResponse" in p]
        if behavior == "tools" and not responses:
            return [resp([{"functionCall": self._function_call(body)}], "STOP", 8)]
        if behavior == "tools":
            text = "The tool answered: " + json.dumps(responses[-1].get("response"),
                                                      separators=(",", ":"))
        elif behavior.startswith("big-"):
            text = big_text(behavior)
        else:
            last_user = ""
            for c in contents:
                if c.get("role", "user") == "user":
                    last_user = _parts_text(c.get("parts"))
            text = f"Hello from {model}! You said: {last_user}"
        finish = "STOP"
        ws = words(text)
        if behavior == "max-tokens":
            ws, finish = ws[:2], "MAX_TOKENS"
        if not stream:
            return [resp([{"text": "".join(ws)}], finish, len(ws))]
        # stream: the text in pieces of two words, usage (cumulative) on every event, the
        # finishReason on the last
        pieces = ["".join(ws[i:i + 2]) for i in range(0, len(ws), 2)] or [""]
        out = []
        for i, p in enumerate(pieces):
            if behavior == "stream-error" and i == 2:
                out.append(self._error_obj(500))
                return out
            lastp = i == len(pieces) - 1
            out.append(resp([{"text": p}], finish if lastp else None, min(2 * i + 2, len(ws))))
        return out

    @staticmethod
    def _merge(chunks):
        return chunks[0]


if __name__ == "__main__":
    run_forever(FakeGemini)
