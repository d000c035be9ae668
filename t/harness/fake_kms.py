"""A fake AWS KMS (JSON 1.1 protocol: GenerateDataKey and Decrypt) for tests, stdlib only.

Each call is checked as AWS would: POST with Content-Type
application/x-amz-json-1.1 and X-Amz-Target TrentService.<operation>, the
SigV4 signature recomputed with the expected base credentials (service kms,
harness/sigv4.py).  Answers have the real shapes: GenerateDataKey
{"CiphertextBlob", "KeyId", "Plaintext"} (base64), Decrypt {"KeyId",
"Plaintext", "EncryptionAlgorithm"}; errors {"__type": "<code>", "message"}
with status 400 (AccessDeniedException, InvalidSignatureException,
InvalidCiphertextException, NotFoundException, ...).  A Decrypt must give
the EncryptionContext of its GenerateDataKey, else InvalidCiphertextException.

  key_arn        the one key (KeyId accepted as the ARN or its key id)
  wrong_secret   when True, signatures are checked against another secret: every
                 call fails with InvalidSignatureException (as with a bad secret key)
  denied         when True, every call answers AccessDeniedException
  calls          every call: {"op", "context", "ok", "error"}
"""
import base64
import json
import secrets
import uuid

from .fake_aws import FakeAws


class FakeKms(FakeAws):
    def __init__(self, access_key_id, secret_access_key, session_token=None,
                 region="us-east-1"):
        super().__init__(access_key_id, secret_access_key, session_token)
        self.key_arn = f"arn:aws:kms:{region}:123456789012:key/{uuid.uuid4()}"
        self.data_keys = {}          # blob -> (plaintext, context)
        self.wrong_secret = False
        self.denied = False

    def calls_of(self, op):
        with self.lock:
            return [c for c in self.calls if c["op"] == op]

    def plaintexts(self):
        """Every data key handed out, base64 (to look for leaks)."""
        with self.lock:
            return [base64.b64encode(p).decode() for p, _ in self.data_keys.values()]

    @staticmethod
    def _error(code, message, status=400):
        return status, {"__type": code, "message": message}

    def _key_matches(self, key_id):
        return key_id in (self.key_arn, self.key_arn.rsplit("/", 1)[1])

    def _respond(self, req, body):
        status, answer = self._handle(req, body)
        return status, "application/x-amz-json-1.1", json.dumps(answer).encode()

    def _handle(self, req, body):
        target = req.headers.get("X-Amz-Target", "")
        op = target.split(".", 1)[1] if target.startswith("TrentService.") else target
        call = {"op": op, "context": None, "ok": False, "error": None}
        with self.lock:
            self.calls.append(call)
            status, answer = self._answer(req, body, op, call)
            call["ok"] = status == 200
            if status != 200:
                call["error"] = answer["__type"]
            return status, answer

    def _answer(self, req, body, op, call):
        if req.headers.get("Content-Type") != "application/x-amz-json-1.1":
            return self._error("SerializationException", "wrong Content-Type")
        secret = "not-" + self.secret_access_key if self.wrong_secret else self.secret_access_key
        reason = self.signature_error(req, body, "kms", secret)
        if reason == "unknown access key":
            return self._error("UnrecognizedClientException",
                               "The security token included in the request is invalid.")
        if reason is not None:
            return self._error("InvalidSignatureException",
                               "The request signature we calculated does not match the"
                               f" signature you provided. ({reason})")
        if self.denied:
            return self._error("AccessDeniedException",
                               f"User: arn:aws:iam::123456789012:user/vmx is not authorized"
                               f" to perform: kms:{op} on resource: {self.key_arn}")
        try:
            doc = json.loads(body)
        except ValueError:
            return self._error("SerializationException", "the body is not JSON")
        context = doc.get("EncryptionContext") or {}
        call["context"] = context
        if op == "GenerateDataKey":
            if not self._key_matches(doc.get("KeyId", "")):
                return self._error("NotFoundException",
                                   f"Key '{doc.get('KeyId')}' does not exist")
            if doc.get("KeySpec") != "AES_256" and doc.get("NumberOfBytes") != 32:
                return self._error("ValidationException", "KeySpec or NumberOfBytes required")
            plaintext = secrets.token_bytes(32)
            blob = b"\x01\x02\x02\x00\x78" + secrets.token_bytes(179)
            self.data_keys[blob] = (plaintext, context)
            return 200, {"CiphertextBlob": base64.b64encode(blob).decode(),
                         "KeyId": self.key_arn,
                         "Plaintext": base64.b64encode(plaintext).decode()}
        if op == "Decrypt":
            try:
                blob = base64.b64decode(doc.get("CiphertextBlob", ""), validate=True)
            except ValueError:
                return self._error("SerializationException", "CiphertextBlob is not base64")
            if "KeyId" in doc and not self._key_matches(doc["KeyId"]):
                return self._error("IncorrectKeyException", "the key is not the blob's")
            found = self.data_keys.get(blob)
            if found is None or found[1] != context:
                return self._error("InvalidCiphertextException", "")
            return 200, {"KeyId": self.key_arn,
                         "Plaintext": base64.b64encode(found[0]).decode(),
                         "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}
        return self._error("UnknownOperationException", f"unknown operation {op}")
