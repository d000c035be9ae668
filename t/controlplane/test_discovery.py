"""Data planes found rather than listed, and the leader of the replicas, on one
control plane (docs/ARCHITECTURE.md, "Data plane discovery", "Highly available
control plane"); two control planes and real data planes: t/gateway/test_ha.py."""
import time

import pytest

from harness.control_plane import ControlPlane
from harness.ports import free_port


def planes(api):
    status, body, _ = api.request("GET", "/api/v1/dataplanes")
    assert status == 200, body
    return body


def test_the_only_replica_leads(api, cp_stack):
    _, health, _ = api.request("GET", "/api/v1/health", token=None)
    assert health["leader"] is True
    _, text, _ = api.request("GET", "/metrics", token=None)
    assert "\nvmx_cp_leader 1\n" in text
    leader = planes(api)["leader"]
    assert leader["self"] is True and leader["name"].startswith("vmx-cp ")
    assert "took the lock, running the singleton jobs" in cp_stack.cp.log_text()
    listed = {p["url"]: p["source"] for p in planes(api)["data"]}
    assert listed == {cp_stack.dataplane.url: "static", cp_stack.dead_dataplane_url: "static"}


def test_announce(api, cp_stack):
    token = cp_stack.token_file.read_text().strip()
    url = f"http://127.0.0.1:{free_port()}"
    path = "/api/v1/dataplanes/announce"
    for bearer in (None, "not-the-token"):
        status, body, _ = api.request("POST", path, {"url": url}, token=bearer)
        assert status == 401, body
    for bad in ("ftp://host:1", url + "/", "http://a b", "http://" + "a" * 300, 7):
        status, body, _ = api.request("POST", path, {"url": bad}, token=token)
        assert status == 400 and body["error"]["details"]["field"] == "url", (bad, body)
    try:
        status, body, _ = api.request("POST", path, {"url": url}, token=token)
        assert status == 204, body
        # the leader's pusher asks it at once: nobody answers there
        deadline = time.time() + 10
        while True:
            plane = {p["url"]: p for p in planes(api)["data"]}.get(url)
            if plane and plane["status"] == "unreachable" or time.time() > deadline:
                break
            time.sleep(0.1)
        assert plane["source"] == "announced" and plane["status"] == "unreachable", plane
        assert plane["foundAt"] and plane["lastError"]
        assert f"discovery dataplane={url} source=announced: found" in cp_stack.cp.log_text()
    finally:
        cp_stack.pg.psql(f"DELETE FROM dataplanes WHERE url = '{url}'")
    deadline = time.time() + 10
    while url in {p["url"] for p in planes(api)["data"]} and time.time() < deadline:
        time.sleep(0.1)
    assert planes(api)["total"] == 2


@pytest.mark.parametrize("value", ["no-port", "host:0", "host:99999", ":80"])
def test_dns_setting_refused(cp_stack, value):
    cp = ControlPlane(cp_stack.base / "bad-dns", free_port(), cp_stack.pg.dsn, [],
                      cp_stack.token_file, cp_stack.master_key_file,
                      env={"VMX_DATAPLANES_DNS": value})
    with pytest.raises(RuntimeError, match="VMX_DATAPLANES_DNS: .* is not name:port"):
        cp.start()


def wait_for(what, check, timeout=10):
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_second_replica_stands_by(api, cp_stack):
    standby = ControlPlane(cp_stack.base / "standby", free_port(), cp_stack.pg.dsn, [],
                           cp_stack.token_file, cp_stack.master_key_file)
    standby.start()
    try:
        wait_for("the standby's log", lambda: "standing by" in standby.log_text())
        _, health, _ = api.request("GET", "/api/v1/health", token=None)
        assert health["leader"] is True
        other = type(api)(standby.url)
        other.login()
        _, health, _ = other.request("GET", "/api/v1/health", token=None)
        assert health["leader"] is False
        _, text, _ = other.request("GET", "/metrics", token=None)
        assert "\nvmx_cp_leader 0\n" in text
        # the same data planes from both, the leader named by both
        mine, theirs = planes(api), planes(other)
        assert [p["url"] for p in mine["data"]] == [p["url"] for p in theirs["data"]]
        assert theirs["leader"] == dict(mine["leader"], self=False)
        assert "pusher dataplane=" not in standby.log_text()     # it pushes nothing
    finally:
        assert standby.stop() == 0


def test_the_lead_is_lost_with_the_session_and_taken_again(api, cp_stack):
    log = cp_stack.cp.log_text
    before = log().count("took the lock")
    cp_stack.pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                     " WHERE application_name LIKE 'vmx-cp %' AND datname = current_database()")
    wait_for("the lead lost and taken again", lambda: log().count("took the lock") > before)
    assert "lost the lock, the singleton jobs pause" in log()
    _, health, _ = api.request("GET", "/api/v1/health", token=None)
    assert health["leader"] is True
    # the jobs run again: a change reaches the data plane
    api.create_workspace(f"after-the-lead-{time.time_ns()}")
    version = int(cp_stack.pg.psql("SELECT version FROM config_version"))
    cp_stack.dataplane.wait_for(lambda s: s["version"] == version)
