"""SPEC §7 and §9 "never a credential": after the suite's requests (this module runs last,
see t/conftest.py), no secret any test used is in the database, in a log, in a spool file,
in the data plane's disk copy of its config, nor in what the OpenTelemetry collector got.

The secrets: the providers' API keys of every connection created, the client API keys
(valid, wrong and disabled ones), management API passwords and login tokens
(harness/api.py collects them all), AWS base credentials and every credential set the fake
STS issued, the config channel's token, the master key and the OTLP exporter's token."""
import json
import secrets
import time
from pathlib import Path

import pytest

from gwutil import (Stream, anthropic_connection, bedrock_connection, connection_for,
                    gemini_connection, wait_credentials)
from harness.api import ISSUED_SECRETS

BEDROCK_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"


@pytest.fixture(scope="module")
def traffic(gw, fake, fake_anthropic, fake_gemini, fake_bedrock):
    """Requests of every kind through every provider, wrong keys included."""
    wrong_provider_key = "sk-wrong-" + secrets.token_hex(12)
    e = gw.provision(
        connections={"oai": connection_for(fake), "ant": anthropic_connection(fake_anthropic),
                     "gem": gemini_connection(fake_gemini), "bed": bedrock_connection(fake_bedrock),
                     "wrong": {"provider": "openai",
                               "config": {"apiKey": wrong_provider_key, "baseUrl": fake.url}}},
        resources={"oai": {"model": ("oai", "gpt-secret")},
                   "ant": {"model": ("ant", "claude-test")},
                   "gem": {"model": ("gem", "gemini-test")},
                   "bed": {"model": ("bed", BEDROCK_MODEL)},
                   "wrong": {"model": ("wrong", "gpt-secret"), "fallback": [("oai", "gpt-fb")]},
                   "wrong-only": {"model": ("wrong", "gpt-secret")}},
        keys={"k": {"resources": ["oai", "ant", "gem", "bed", "wrong", "wrong-only"]},
              "off": {"resources": ["oai"], "enabled": False}})
    wait_credentials(gw, e, ["bed"])
    sent = 0
    for res in ("oai", "ant", "gem", "bed", "wrong", "wrong-only"):
        for stream in (False, True):
            r = e.chat(res, body={"stream": True} if stream else None)
            assert r.status == (502 if res == "wrong-only" else 200), r
            sent += 1
    s = Stream(gw.url, "/v1/chat/completions",
               {"model": "oai", "stream": True, "messages": [{"role": "user", "content": "x"}]},
               {"x-api-key": e.key("k")})
    assert s.status == 200
    s.rest()
    s.close()
    sent += 1
    wrong_client_key = "vmx-" + secrets.token_urlsafe(32)
    for key in (wrong_client_key, e.key("off")):
        r = e.chat("oai", key=key)
        assert r.status == 401, r
    # the records of this environment stored (the wrong keys' have no environment)
    deadline = time.time() + 30
    while int(gw.stack.pg.psql(f"SELECT count(*) FROM audit_records"
                               f" WHERE environment_id = '{e.env_id}'")) < sent + 1:
        assert time.time() < deadline, "the records of the requests were not ingested"
        time.sleep(0.3)
    return {"wrong provider key": wrong_provider_key, "wrong client key": wrong_client_key}


def used_secrets(stack, traffic):
    """{secret: what it is} of every secret the session used."""
    out = {s: "secret of a management API call (provider key, API key, password, token)"
           for s in ISSUED_SECRETS}
    out.update({v: k for k, v in traffic.items()})
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        out[stack.base_credentials[name]] = f"base {name}"
    for call in list(stack.sts.calls):
        for k in ("SecretAccessKey", "SessionToken"):
            if call.get("issued"):
                out[call["issued"][k]] = f"STS-issued {k}"
    out[stack.cp.env["VMX_ADMIN_PASSWORD"]] = "admin password"
    out[Path(stack.token_file).read_text().strip()] = "config channel token"
    out[Path(stack.master_key_file).read_text().strip()] = "master key"
    out[stack.otlp_token] = "OTLP exporter token"
    return out


def places(stack):
    """{where: text} of everything that must hold no secret."""
    out = {"pg_dump of the database": stack.pg.dump()}
    files = [p for p in stack.base.rglob("*")
             if p.is_file() and not p.is_symlink() and "secrets" not in p.parts
             and (p.suffix in (".log", ".vmx") or p.name == "config.snapshot")]
    files.append(Path(stack.pg.log_path))
    for p in files:
        out[str(p.relative_to(stack.base)) if stack.base in p.parents else p.name] = \
            p.read_bytes().decode("utf-8", "replace")
    with stack.otlp.lock:
        bodies = [b for _, b in stack.otlp.traces + stack.otlp.metrics]
    out["the OTLP collector's traces and metrics"] = json.dumps(bodies)
    return out


def test_no_secret_stored_or_logged(stack, traffic):
    found = []
    checked = places(stack)
    wanted = used_secrets(stack, traffic)
    # the search looks where it should: logs of requests and the records are there
    assert any("nginx/logs/access.log" in w for w in checked), sorted(checked)
    assert any("control-plane.log" in w for w in checked), sorted(checked)
    assert "audit_records" in checked["pg_dump of the database"]
    assert sum(s.startswith("vmx-") for s in wanted) >= 3
    for secret, what in wanted.items():
        assert len(secret) >= 8, what
        for where, text in checked.items():
            if secret in text:
                found.append(f"{what} ({secret[:6]}...) in {where}")
    assert not found, "\n".join(found)
