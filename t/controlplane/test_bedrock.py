"""aws-bedrock connections: credentials of an STS AssumeRole in the snapshot,
refreshed before expiry, failures shown on the connection, secrets kept out
of the log and the database.  Runs against sts_stack (fake STS)."""
import json
import time

from cphelpers import env_path, unique
from harness.sigv4 import sigv4_signature

CRED_KEYS = {"accessKeyId", "secretAccessKey", "sessionToken", "expiration"}


def by_id(items, id_):
    return next((i for i in items if i["id"] == id_), None)


def new_env(api):
    ws = api.create_workspace(unique("ws"))
    e = api.create_environment(ws["id"], "production")
    return ws["id"], e["id"]


def role_arn():
    return f"arn:aws:iam::123456789012:role/{unique('bedrock')}"


def bedrock(api, env, role, **config):
    return api.create_connection(env[0], env[1], name=unique("bedrock"),
                                 provider="aws-bedrock",
                                 config=dict({"region": "eu-west-3", "iamRoleArn": role},
                                             **config))


def wait_status(api, env, conn_id, predicate, timeout=10.0):
    deadline = time.time() + timeout
    while True:
        status, body, _ = api.request("GET", env_path(env, f"/connections/{conn_id}"))
        assert status == 200, body
        if predicate(body["credentialsStatus"]) or time.time() > deadline:
            assert predicate(body["credentialsStatus"]), body["credentialsStatus"]
            return body
        time.sleep(0.1)


def snapshot_with_credentials(dp, conn_id, access_key_id=None, timeout=10.0):
    """The first pushed snapshot whose connection carries credentials (these)."""
    def match(snap):
        c = by_id(snap["connections"], conn_id)
        if c is None or not c["credentials"]:
            return False
        return access_key_id is None or c["credentials"]["accessKeyId"] == access_key_id
    return dp.wait_for(match, timeout=timeout)


def test_sigv4_verifier_matches_aws_example():
    # the worked example of AWS's SigV4 documentation (IAM ListUsers)
    headers = {"content-type": "application/x-www-form-urlencoded; charset=utf-8",
               "host": "iam.amazonaws.com", "x-amz-date": "20150830T123600Z"}
    sig = sigv4_signature("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "GET", "/",
                          "Action=ListUsers&Version=2010-05-08", headers,
                          ["content-type", "host", "x-amz-date"], b"", "20150830T123600Z",
                          "20150830/us-east-1/iam/aws4_request")
    assert sig == "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"


def test_snapshot_carries_assumed_credentials(sts_stack):
    api, sts, dp = sts_stack.api, sts_stack.sts, sts_stack.dataplane
    env = new_env(api)
    role = role_arn()
    c = bedrock(api, env, role)
    assert c["credentialsStatus"]["state"] in ("pending", "ok")

    snap = snapshot_with_credentials(dp, c["id"])
    calls = sts.calls_for(role)
    assert calls and all(call["ok"] for call in calls), calls
    call = calls[-1]
    assert call["external_id"] == f"{env[0]}:{env[1]}"
    assert call["session"] == f"vmx-{c['id']}"
    assert call["duration"] == "3600" and call["region"] == "eu-west-3"

    sc = by_id(snap["connections"], c["id"])
    assert set(sc["credentials"]) == CRED_KEYS
    issued = next(x for x in reversed(calls) if x["issued"]["AccessKeyId"]
                  == sc["credentials"]["accessKeyId"])
    assert sc["credentials"]["secretAccessKey"] == issued["issued"]["SecretAccessKey"]
    assert sc["credentials"]["sessionToken"] == issued["issued"]["SessionToken"]
    assert sc["credentials"]["expiration"] == issued["expiration"]
    assert sc["region"] == "eu-west-3"
    assert sc["baseUrl"] == "https://bedrock-runtime.eu-west-3.amazonaws.com"
    assert sc["provider"] == "aws-bedrock" and "addresses" in sc
    text = json.dumps(snap)
    for base in sts_stack.base_credentials.values():
        assert base not in text

    body = wait_status(api, env, c["id"], lambda s: s["state"] == "ok")
    st = body["credentialsStatus"]
    assert st["expiresAt"] and st["refreshedAt"] and st["error"] is None
    assert st["nextAttemptAt"] is None
    assert body["config"] == {"region": "eu-west-3", "iamRoleArn": role}
    # the status is read-only: sending it is refused
    status, err, _ = api.request("PATCH", env_path(env, f"/connections/{c['id']}"),
                                 {"credentialsStatus": {"state": "x"}})
    assert status == 400 and err["error"]["details"]["field"] == "credentialsStatus"


def test_endpoint_and_explicit_external_id(sts_stack):
    api, sts, dp = sts_stack.api, sts_stack.sts, sts_stack.dataplane
    env = new_env(api)
    role = role_arn()
    c = bedrock(api, env, role, externalId="tenant-42",
                endpoint="http://127.0.0.1:9/bedrock")
    snap = snapshot_with_credentials(dp, c["id"])
    assert sts.calls_for(role)[-1]["external_id"] == "tenant-42"
    sc = by_id(snap["connections"], c["id"])
    assert sc["baseUrl"] == "http://127.0.0.1:9/bedrock" and sc["addresses"] == []
    first = sc["credentials"]["accessKeyId"]

    # a changed connection assumes the role again, with its new ExternalId
    status, _, _ = api.request("PATCH", env_path(env, f"/connections/{c['id']}"),
                               {"config": {"externalId": "tenant-43", "endpoint": None}})
    assert status == 200
    snap = dp.wait_for(lambda s: (by_id(s["connections"], c["id"]) or {}).get(
        "credentials", {}).get("accessKeyId") not in (None, first))
    assert sts.calls_for(role)[-1]["external_id"] == "tenant-43"
    sc = by_id(snap["connections"], c["id"])
    assert sc["baseUrl"] == "https://bedrock-runtime.eu-west-3.amazonaws.com"


def test_refresh_before_expiry_pushes_new_credentials(sts_stack):
    api, sts, dp = sts_stack.api, sts_stack.sts, sts_stack.dataplane
    env = new_env(api)
    role = role_arn()
    sts.roles[role] = 8            # the control plane refreshes 5 s before expiry
    c = bedrock(api, env, role)
    first = snapshot_with_credentials(dp, c["id"])
    first_key = by_id(first["connections"], c["id"])["credentials"]["accessKeyId"]

    second = dp.wait_for(lambda s: (by_id(s["connections"], c["id"]) or {}).get(
        "credentials", {}).get("accessKeyId") not in (None, first_key), timeout=15)
    assert second["version"] > first["version"]
    sc = by_id(second["connections"], c["id"])
    calls = sts.calls_for(role)
    assert len(calls) >= 2 and all(x["ok"] for x in calls)
    assert sc["credentials"]["accessKeyId"] in [x["issued"]["AccessKeyId"] for x in calls[1:]]
    sts.roles[role] = 3600         # calm down for the following tests


def test_sts_failure_shown_retried_and_recovered(sts_stack):
    api, sts, dp = sts_stack.api, sts_stack.sts, sts_stack.dataplane
    env = new_env(api)
    role = role_arn()
    message = f"User: arn:aws:iam::123456789012:user/vmx is not authorized to perform: " \
              f"sts:AssumeRole on resource: {role}"
    sts.bad_roles[role] = ("AccessDenied", message)
    c = bedrock(api, env, role)

    body = wait_status(api, env, c["id"], lambda s: s["state"] == "failed")
    st = body["credentialsStatus"]
    assert st["error"] == {"code": "AccessDenied", "message": message}
    assert st["expiresAt"] is None and st["nextAttemptAt"]
    snap = dp.wait_for(lambda s: by_id(s["connections"], c["id"]) is not None)
    assert by_id(snap["connections"], c["id"])["credentials"] == {}

    # retried with backoff (2 s, then 4 s, ...)
    deadline = time.time() + 10
    while len(sts.calls_for(role)) < 2 and time.time() < deadline:
        time.sleep(0.1)
    calls = sts.calls_for(role)
    assert len(calls) >= 2 and not any(x["ok"] for x in calls)
    log = sts_stack.cp.log_text()
    assert f"connection={c['id']}" in log and "AccessDenied" in log

    # the role is fixed on AWS's side: a later retry succeeds
    del sts.bad_roles[role]
    snapshot_with_credentials(dp, c["id"], timeout=15)
    body = wait_status(api, env, c["id"], lambda s: s["state"] == "ok")
    assert body["credentialsStatus"]["error"] is None


def test_transient_sts_error_then_success(sts_stack):
    api, sts, dp = sts_stack.api, sts_stack.sts, sts_stack.dataplane
    env = new_env(api)
    role = role_arn()
    sts.fail_next[role] = 1
    c = bedrock(api, env, role)
    snapshot_with_credentials(dp, c["id"], timeout=15)
    calls = sts.calls_for(role)
    assert calls[0]["error"] == "ServiceUnavailable" and calls[-1]["ok"]


def test_wrong_base_credentials_are_refused(sts_stack):
    api, sts = sts_stack.api, sts_stack.sts
    env = new_env(api)
    role = role_arn()
    real = sts.secret_access_key
    sts.secret_access_key = "not-the-secret-the-control-plane-signs-with"
    try:
        c = bedrock(api, env, role)
        body = wait_status(api, env, c["id"], lambda s: s["state"] == "failed")
    finally:
        sts.secret_access_key = real
    assert body["credentialsStatus"]["error"]["code"] == "SignatureDoesNotMatch"
    assert sts.calls_for(role)[0]["error"].startswith("SignatureDoesNotMatch")


def test_deleted_connection_forgotten(sts_stack):
    api, sts, dp = sts_stack.api, sts_stack.sts, sts_stack.dataplane
    env = new_env(api)
    role = role_arn()
    c = bedrock(api, env, role)
    snapshot_with_credentials(dp, c["id"])
    status, _, _ = api.request("DELETE", env_path(env, f"/connections/{c['id']}"))
    assert status == 204
    snap = dp.wait_for(lambda s: by_id(s["connections"], c["id"]) is None)
    calls = len(sts.calls_for(role))
    time.sleep(1.5)
    assert len(sts.calls_for(role)) == calls
    assert snap


def test_secrets_never_in_log_or_database(sts_stack):
    api, sts, dp = sts_stack.api, sts_stack.sts, sts_stack.dataplane
    env = new_env(api)
    c = bedrock(api, env, role_arn())
    snapshot_with_credentials(dp, c["id"])
    secrets = sts.issued_secrets() + list(sts_stack.base_credentials.values())
    assert len(secrets) > 6
    log = sts_stack.cp.log_text()
    dump = sts_stack.pg.dump("vmx_sts")
    assert "credentials_status" in dump
    for s in secrets:
        assert s not in log, "a credential reached the control plane's log"
        assert s not in dump, "a credential reached the database"


def test_without_base_credentials(api, env, cp_stack):
    """The default stack has no AWS credentials: no STS call, a clear status."""
    c = api.create_connection(env[0], env[1], name="bedrock", provider="aws-bedrock",
                              config={"region": "us-east-1",
                                      "iamRoleArn": "arn:aws:iam::1:role/none"})
    body = wait_status(api, env, c["id"], lambda s: s["state"] == "failed")
    assert body["credentialsStatus"]["error"]["code"] == "NoBaseCredentials"
    assert body["credentialsStatus"]["nextAttemptAt"] is None
    snap = cp_stack.dataplane.wait_for(lambda s: by_id(s["connections"], c["id"]) is not None)
    sc = by_id(snap["connections"], c["id"])
    assert sc["credentials"] == {} and sc["region"] == "us-east-1"
    status, err, _ = api.request("POST", env_path(env, "/connections"),
                                 {"name": "bad-region", "provider": "aws-bedrock",
                                  "config": {"region": "us-east-1.evil.example/x",
                                             "iamRoleArn": "arn:aws:iam::1:role/none"}})
    assert status == 400 and err["error"]["details"]["field"] == "config.region"
