"""Secret rotation (docs/ARCHITECTURE.md, "Secrets and the keyring"): the
keyring of local key files and an AWS KMS key, the background
re-encryption, retirement, and the upgrade from a single master key.

Each stack here has its own database and fake data plane on the session's
PostgreSQL server, since keys change for the whole deployment."""
import hashlib
import secrets
import time
import uuid

import pytest

from conftest import FakeDataPlane
from cphelpers import env_path, openai_connection, unique
from harness.api import Api
from harness.control_plane import ControlPlane, write_secret_files
from harness.fake_kms import FakeKms
from harness.ports import free_port

KEYS = "/api/v1/encryption-keys"


def key_id_of(hex_key):
    """The id a local key gets: the first 8 hex chars of BLAKE2b-256 of the key."""
    return hashlib.blake2b(bytes.fromhex(hex_key), digest_size=32).hexdigest()[:8]


def wait_until(predicate, timeout=30.0, what="condition"):
    """predicate()'s first true value, polling; fails after timeout seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Stack:
    """A control plane on database dbname with its own fake data plane."""

    def __init__(self, cp_stack, dbname, env=None, keys_dir=True):
        self.pg = cp_stack.pg
        self.dbname = dbname
        self.base = cp_stack.base / dbname
        self.pg.psql(f"CREATE DATABASE {dbname}", dbname="postgres")
        self.token_file, self.master_key_file = write_secret_files(self.base / "secrets")
        self.keys_dir = self.base / "keys"
        self.keys_dir.mkdir()
        self.dataplane = FakeDataPlane(self.token_file.read_text().strip()).start()
        env = dict(env or {})
        if keys_dir:
            env["VMX_SECRET_KEYS_DIR"] = str(self.keys_dir)
        self.cp = ControlPlane(self.base / "cp", free_port(), self.pg.dsn_of(dbname),
                               [self.dataplane.url], self.token_file, self.master_key_file,
                               reconcile_interval=1, env=env)
        self.cp.start()
        self.api = Api(self.cp.url)
        self.api.login()

    def restart(self):
        assert self.cp.stop() == 0
        self.cp.start()
        self.api.login()

    def stop(self):
        rc = self.cp.stop()
        self.dataplane.stop()
        assert rc == 0, f"control plane exited with {rc}"

    def sql(self, query):
        return self.pg.psql(query, dbname=self.dbname)

    def version(self):
        return int(self.sql("SELECT version FROM config_version"))

    def keys(self):
        status, body, _ = self.api.request("GET", KEYS)
        assert status == 200, body
        return {k["keyId"]: k for k in body["data"]}

    def add_key_file(self, name):
        hex_key = secrets.token_hex(32)
        path = self.keys_dir / f"{name}.key"
        path.write_text(hex_key + "\n")
        path.chmod(0o600)
        return key_id_of(hex_key)

    def environment(self):
        ws = self.api.create_workspace(unique("ws"))
        e = self.api.create_environment(ws["id"], "production")
        return ws["id"], e["id"]

    def blob_key_ids(self):
        rows = self.sql("SELECT split_part(value, ':', 2) FROM connections,"
                        " jsonb_each_text(secrets)")
        return rows.split("\n") if rows else []

    def pushed_api_keys(self):
        """{connection id: credentials.apiKey} of the last snapshot pushed."""
        snap = self.dataplane.last() or {"connections": []}
        return {c["id"]: c.get("credentials", {}).get("apiKey") for c in snap["connections"]}


@pytest.fixture(scope="module")
def ring(cp_stack):
    s = Stack(cp_stack, "vmx_keyring",
              env={"VMX_REENCRYPT_BATCH": "1", "VMX_REENCRYPT_PAUSE_MS": "400"})
    try:
        yield s
    finally:
        s.stop()


def test_rotation(ring):
    master = ring.master_key_file.read_text().strip()
    first = key_id_of(master)
    keys = ring.keys()
    assert list(keys) == [first]
    assert keys[first]["state"] == "active" and keys[first]["provider"] == "local"
    assert keys[first]["secretCount"] == 0
    assert uuid.UUID(keys[first]["id"]) and keys[first]["createdAt"].endswith("Z")

    env = ring.environment()
    sent = {}
    for _ in range(6):
        c = openai_connection(ring.api, env)
        status, body, _ = ring.api.request("GET", env_path(env, f"/connections/{c['id']}"))
        assert status == 200 and body["config"]["apiKey"] == "********"
        sent[c["id"]] = body
    # the data plane gets the plain keys
    snap = ring.dataplane.wait_for(lambda s: {c["id"] for c in s["connections"]} == set(sent))
    plain = {c["id"]: c["credentials"]["apiKey"] for c in snap["connections"]}
    assert all(v.startswith("sk-test-") for v in plain.values())
    assert ring.keys()[first]["secretCount"] == 6
    assert set(ring.blob_key_ids()) == {first}

    version = ring.version()
    pushes = len(ring.dataplane.snapshots)

    # a key file unknown to this control plane cannot become active
    status, body, _ = ring.api.request("POST", KEYS, {"provider": "local",
                                                      "keyId": "0123abcd"})
    assert status == 400 and body["error"]["details"]["field"] == "keyId", body
    second = ring.add_key_file("second")
    status, body, _ = ring.api.request("POST", KEYS, {"provider": "local", "keyId": second})
    assert status == 201, body
    assert body["keyId"] == second and body["state"] == "active"
    assert ring.keys()[first]["state"] == "decrypt-only"

    # refused while secrets still use the old key, with their count
    status, body, _ = ring.api.request("POST", f"{KEYS}/{keys[first]['id']}/retire")
    assert status == 409, body
    assert body["error"]["details"]["secretCount"] > 0
    assert "still encrypted under key " + first in body["error"]["message"]

    # a restart in the middle: the re-encryption goes on from where it was
    left = wait_until(lambda: (lambda n: n if 0 < n < 6 else None)(
        ring.keys()[first]["secretCount"]), what="the re-encryption to start")
    assert 0 < left < 6
    ring.restart()
    wait_until(lambda: ring.keys()[first]["secretCount"] == 0, timeout=60,
               what="every secret under the new key")
    assert ring.keys()[second]["secretCount"] == 6
    assert set(ring.blob_key_ids()) == {second}

    # the plain text did not change: no config version, no push
    assert ring.version() == version
    assert len(ring.dataplane.snapshots) == pushes

    # the active key cannot be retired; the old one can now
    status, body, _ = ring.api.request("POST", f"{KEYS}/{ring.keys()[second]['id']}/retire")
    assert status == 409, body
    status, body, _ = ring.api.request("POST", f"{KEYS}/{keys[first]['id']}/retire")
    assert status == 200 and body["state"] == "retired", body
    status, body, _ = ring.api.request("POST", KEYS, {"provider": "local", "keyId": first})
    assert status == 409, body

    # secrets still decrypt: a change pushes every connection with its key
    cid = next(iter(plain))
    status, body, _ = ring.api.request("PATCH", env_path(env, f"/connections/{cid}"),
                                       {"description": "after the rotation"})
    assert status == 200, body
    ring.dataplane.wait_for(lambda s: s["version"] > version and len(s["connections"]) == 6)
    assert ring.pushed_api_keys() == plain

    # a blob under the retired key is reported, the others still push
    wait_until(lambda: f"keyring: key_id={first} retired, its material wiped"
               in ring.cp.log_text(), what="the retired key wiped")
    ring.sql(f"UPDATE connections SET secrets = jsonb_build_object('apiKey',"
             f" 'v1:{first}:' || split_part(secrets->>'apiKey', ':', 3)) WHERE id = '{cid}'")
    wait_until(lambda: ring.dataplane.last()["version"] > version + 1, what="a push")
    pushed = ring.pushed_api_keys()
    assert pushed[cid] is None
    assert {k: v for k, v in pushed.items() if k != cid} == {
        k: v for k, v in plain.items() if k != cid}
    log = ring.cp.log_text()
    assert f"snapshot connection={cid} field=apiKey: cannot decrypt the secret:" \
           f" the encryption key {first} is retired" in log
    assert "moved" in log and "secret(s) left under other keys" in log
    for value in plain.values():
        assert value not in log


def test_upgrade_from_a_single_master_key(cp_stack):
    """A deployment from before the keyring: blobs under its master key and no
    encryption_keys.  The master key becomes the ring's first, active key."""
    s = Stack(cp_stack, "vmx_keyring_legacy", keys_dir=False)
    try:
        env = s.environment()
        c = openai_connection(s.api, env)
        s.dataplane.wait_for(lambda snap: any(x["id"] == c["id"] for x in snap["connections"]))
        plain = s.pushed_api_keys()[c["id"]]
        assert plain.startswith("sk-test-")
        assert s.cp.stop() == 0
        s.sql("DROP VIEW encryption_key_docs; DROP FUNCTION vmx_secret_key_ids(jsonb);"
              " DROP TABLE encryption_keys;"
              " DELETE FROM schema_migrations WHERE name LIKE '0011_%'")
        s.dataplane.forget()
        s.cp.start()
        s.api.login()
        first = key_id_of(s.master_key_file.read_text().strip())
        keys = s.keys()
        assert list(keys) == [first] and keys[first]["state"] == "active"
        assert keys[first]["secretCount"] == 1
        s.dataplane.wait_for(lambda snap: any(x["id"] == c["id"] for x in snap["connections"]))
        assert s.pushed_api_keys()[c["id"]] == plain
    finally:
        s.stop()


@pytest.fixture(scope="module")
def kms_ring(cp_stack):
    creds = {"AWS_ACCESS_KEY_ID": "AKIA" + uuid.uuid4().hex[:16].upper(),
             "AWS_SECRET_ACCESS_KEY": "kms-secret-" + uuid.uuid4().hex,
             "AWS_SESSION_TOKEN": "kms-token-" + uuid.uuid4().hex}
    kms = FakeKms(creds["AWS_ACCESS_KEY_ID"], creds["AWS_SECRET_ACCESS_KEY"],
                  creds["AWS_SESSION_TOKEN"], region="eu-west-1").start()
    env = dict(creds, VMX_KMS_KEY_ID=kms.key_arn, VMX_KMS_ENDPOINT=kms.url)
    try:
        s = Stack(cp_stack, "vmx_keyring_kms", env=env)
        s.kms = kms
        try:
            yield s
        finally:
            s.stop()
    finally:
        kms.stop()


def test_kms_envelope(kms_ring):
    s, kms = kms_ring, kms_ring.kms
    status, body, _ = s.api.request("POST", KEYS, {"provider": "aws-kms"})
    assert status == 201, body
    kms_id = body["keyId"]
    assert body["provider"] == "aws-kms" and body["state"] == "active"
    assert kms.calls_of("GenerateDataKey")[-1]["ok"]

    env = s.environment()
    a = openai_connection(s.api, env)
    status, body, _ = s.api.request("GET", env_path(env, f"/connections/{a['id']}"))
    assert status == 200 and body["config"]["apiKey"] == "********"
    assert s.blob_key_ids() == [kms_id]
    assert {"connectionId": a["id"]} in [c["context"] for c in kms.calls_of("GenerateDataKey")]
    s.dataplane.wait_for(lambda snap: any(x["id"] == a["id"] for x in snap["connections"]))
    plain = s.pushed_api_keys()[a["id"]]
    assert plain.startswith("sk-test-")
    assert s.keys()[kms_id]["secretCount"] == 1

    # after a restart the data key comes from KMS Decrypt, with its context
    s.restart()
    decrypts = len(kms.calls_of("Decrypt"))
    s.dataplane.forget()
    s.dataplane.wait_for(lambda snap: any(x["id"] == a["id"] for x in snap["connections"]))
    assert s.pushed_api_keys()[a["id"]] == plain
    new = kms.calls_of("Decrypt")[decrypts:]
    assert new and new[0]["ok"] and new[0]["context"] == {"connectionId": a["id"]}

    # a bad signature: a clear 503, logged once, and the other connections go on
    kms.wrong_secret = True
    try:
        for _ in range(2):
            status, body, _ = s.api.request(
                "POST", env_path(env, "/connections"),
                {"name": unique("conn"), "provider": "openai",
                 "config": {"apiKey": "sk-test-" + uuid.uuid4().hex}})
            assert status == 503, body
            assert "AWS KMS GenerateDataKey failed: InvalidSignatureException" \
                   in body["error"]["message"]
        version = s.version()
        status, body, _ = s.api.request("PATCH", env_path(env, f"/connections/{a['id']}"),
                                        {"description": "while KMS refuses"})
        assert status == 200, body
        s.dataplane.wait_for(lambda snap: snap["version"] > version)
        assert s.pushed_api_keys()[a["id"]] == plain
    finally:
        kms.wrong_secret = False
    assert s.cp.log_text().count("InvalidSignatureException") == 1
    b = openai_connection(s.api, env)
    s.dataplane.wait_for(lambda snap: any(x["id"] == b["id"] for x in snap["connections"]))
    assert s.pushed_api_keys()[b["id"]].startswith("sk-test-")
    log = s.cp.log_text()
    assert "answering again" in log
    for value in list(s.pushed_api_keys().values()) + kms.plaintexts():
        assert value not in log


def test_kms_refuses_before_use(kms_ring):
    """An aws-kms key that KMS refuses does not become active: 503 naming KMS's error."""
    s, kms = kms_ring, kms_ring.kms
    second = s.add_key_file("local-again")
    status, body, _ = s.api.request("POST", KEYS, {"provider": "local", "keyId": second})
    assert status == 201, body
    kms.denied = True
    try:
        status, body, _ = s.api.request("POST", KEYS, {"provider": "aws-kms"})
    finally:
        kms.denied = False
    assert status == 503, body
    assert "AccessDeniedException" in body["error"]["message"]
    assert s.keys()[second]["state"] == "active"


def test_reencryption_skips_a_secret_it_cannot_decrypt(cp_stack):
    """A connection whose blob fails authentication stays under its key (which
    therefore cannot be retired); every other connection moves."""
    s = Stack(cp_stack, "vmx_keyring_broken",
              env={"VMX_REENCRYPT_BATCH": "1", "VMX_REENCRYPT_PAUSE_MS": "1"})
    try:
        first = key_id_of(s.master_key_file.read_text().strip())
        env = s.environment()
        ids = sorted(openai_connection(s.api, env)["id"] for _ in range(3))
        broken = ids[0]       # the first the re-encryption meets
        s.sql(f"UPDATE connections SET secrets = jsonb_build_object('apiKey',"
              f" 'v1:{first}:' || encode(decode(md5('a') || md5('b') || md5('c'), 'hex'),"
              f" 'base64'))"
              f" WHERE id = '{broken}'")
        second = s.add_key_file("second")
        status, body, _ = s.api.request("POST", KEYS, {"provider": "local", "keyId": second})
        assert status == 201, body
        wait_until(lambda: s.keys()[second]["secretCount"] == 2, what="the others moved")
        assert s.keys()[first]["secretCount"] == 1
        status, body, _ = s.api.request("POST", f"{KEYS}/{s.keys()[first]['id']}/retire")
        assert status == 409 and body["error"]["details"]["secretCount"] == 1, body
        assert f"failed (first connection={broken}: the stored secret under key {first}" \
               f" fails authentication)" in s.cp.log_text()
    finally:
        s.stop()


@pytest.mark.parametrize("body, field", [
    ({}, "provider"),
    ({"provider": "vault"}, "provider"),
    ({"provider": 1}, "provider"),
    ({"provider": "local"}, "keyId"),
    ({"provider": "local", "keyId": "XYZ"}, "keyId"),
    ({"provider": "local", "keyId": "0123abcd", "state": "active"}, "state"),
    ({"provider": "aws-kms"}, "provider"),      # no VMX_KMS_KEY_ID on this stack
])
def test_create_refuses(ring, body, field):
    status, answer, _ = ring.api.request("POST", KEYS, body)
    assert status == 400, answer
    assert answer["error"]["details"]["field"] == field


def test_retire_unknown_key(ring):
    status, body, _ = ring.api.request("POST", f"{KEYS}/{uuid.uuid4()}/retire")
    assert status == 404, body
