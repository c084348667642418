#!/usr/bin/env python3
"""Fidelity comparison: run one scripted Matrix exchange against two servers.

    python3 fidelity/compare.py --a http://127.0.0.1:8448 --a-name synapse \
        --b http://127.0.0.1:8008 --b-name rotary \
        [--lifetime-ms 3000] [--known fidelity/known-differences.toml] [--dump out.json]

Both servers get the same steps in the same order (each with fresh random user
names, so reruns work); the two exchanges run concurrently so the real sleeps
(token expiry) are shared.  For every step a row is printed:

    step | status A | status B | errcode A | errcode B | soft_logout A | B |
    body keys A | B | marker

marker is OK (all compared fields equal), KNOWN (every differing field is listed
in the known-differences file) or DIFF.  Compared fields per step: status,
errcode, error (the message text), soft_logout, keys (sorted top-level body keys)
and facts.<name> (derived observations such as "the two tokens differ" or "same
event id").  Differing fields are spelled out below the table.

Exit status: 1 if any difference is not listed as known, 0 otherwise
(2 on usage errors).  Without --b only server A is run and printed.

Known-differences file (TOML, or JSON with the same shape):

    [[known]]
    step = "sync timeout 0"          # fnmatch pattern on the step name
    field = "keys"                    # fnmatch pattern on the field ("facts.*", "*")
    reason = "Rotary omits device_one_time_keys_count"

--dump FILE writes every request and response (full bodies) as JSON; access and
refresh tokens are replaced by stable placeholders unless --no-redact is given.

Standard library only (Python 3.11+).
"""

from __future__ import annotations

import argparse
import fnmatch
import http.client
import json
import re
import secrets
import sys
import threading
import time
import urllib.parse
from typing import Any, Callable

ABSENT = "-"  # shown for "field not present"

# --------------------------------------------------------------------------------------
# HTTP client


class Response:
    def __init__(self, status: Any, headers: dict[str, str], raw: bytes, err: str | None = None):
        self.status = status  # int, or "ERR:<exc>" when no HTTP response was read
        self.headers = headers
        self.raw = raw
        self.err = err
        self.json: Any = None
        self.is_json = False
        if raw:
            try:
                self.json = json.loads(raw.decode("utf-8"))
                self.is_json = True
            except Exception:
                pass

    def get(self, key: str, default: Any = None) -> Any:
        if isinstance(self.json, dict):
            return self.json.get(key, default)
        return default


class Client:
    def __init__(self, base_url: str, timeout: float = 60.0):
        u = urllib.parse.urlsplit(base_url)
        if u.scheme not in ("http", "https"):
            raise SystemExit(f"unsupported URL {base_url!r}")
        host = u.hostname or "127.0.0.1"
        if host not in ("localhost",) and not host.startswith("127.") and host != "::1":
            raise SystemExit(f"refusing non-loopback host {host!r}")
        self.scheme = u.scheme
        self.host = host
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.prefix = u.path.rstrip("/")
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        raw: bytes | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=self.timeout)
        hdrs: dict[str, str] = {}
        data: bytes | None = None
        if raw is not None:
            data = raw
            hdrs["Content-Type"] = "application/json"
        elif body is not None:
            data = json.dumps(body).encode("utf-8")
            hdrs["Content-Type"] = "application/json"
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        if headers:
            hdrs.update(headers)
        send_err = None
        try:
            try:
                conn.request(method, self.prefix + path, body=data, headers=hdrs)
            except (BrokenPipeError, ConnectionResetError) as e:
                # The server may have answered early (e.g. 413) and closed; try to read it.
                send_err = e
            resp = conn.getresponse()
            raw_body = resp.read()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, raw_body)
        except Exception as e:  # noqa: BLE001 - we record whatever happened
            e2 = send_err or e
            return Response(f"ERR:{type(e2).__name__}", {}, b"", err=str(e2))
        finally:
            conn.close()


# --------------------------------------------------------------------------------------
# One scripted exchange


class Exchange:
    """Runs the script against one server and records each step."""

    def __init__(self, name: str, client: Client, lifetime_ms: int):
        self.name = name
        self.c = client
        self.lifetime_ms = lifetime_ms
        self.records: list[dict[str, Any]] = []
        self.t0 = time.monotonic()
        self.aborted: str | None = None
        # random per-run strings -> placeholders, applied before comparing strings
        self.subst: dict[str, str] = {}

    def normalize(self, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        for k in sorted(self.subst, key=len, reverse=True):
            v = v.replace(k, self.subst[k])
        return v

    # -- helpers -------------------------------------------------------------------
    def step(
        self,
        name: str,
        method: str,
        path: str,
        body: Any = None,
        raw: bytes | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        facts: Callable[[Response], dict[str, Any]] | None = None,
        dump_raw_request: bool = True,
    ) -> Response:
        t = time.monotonic()
        r = self.c.request(method, path, body=body, raw=raw, token=token, headers=headers)
        elapsed = int((time.monotonic() - t) * 1000)
        f: dict[str, Any] = {}
        if facts is not None:
            try:
                f = facts(r)
            except Exception as e:  # noqa: BLE001
                f = {"facts_error": f"{type(e).__name__}: {e}"}
        body_json = r.json if isinstance(r.json, dict) else None
        if isinstance(r.json, dict):
            keys = ",".join(sorted(r.json.keys())) or "{}"
        elif r.is_json:
            keys = f"<{type(r.json).__name__}>"
        elif r.raw:
            keys = "<non-json>"
        else:
            keys = "<empty>"
        soft = ABSENT
        if body_json is not None and "soft_logout" in body_json:
            soft = json.dumps(body_json["soft_logout"])
        rec = {
            "step": name,
            "at_ms": int((t - self.t0) * 1000),
            "elapsed_ms": elapsed,
            "request": {
                "method": method,
                "path": path,
                "auth": token is not None,
                "headers": headers or {},
                "body": body
                if raw is None
                else (
                    f"<{len(raw)} raw bytes>"
                    if (len(raw) > 2048 or not dump_raw_request)
                    else raw.decode("utf-8", "replace")
                ),
            },
            "status": r.status,
            "errcode": (body_json or {}).get("errcode", ABSENT) if body_json else ABSENT,
            "error": (body_json or {}).get("error", ABSENT) if body_json else ABSENT,
            "soft_logout": soft,
            "keys": keys,
            "facts": f,
            "response": {
                "content_type": r.headers.get("content-type", ""),
                "allow": r.headers.get("allow"),
                "retry_after": r.headers.get("retry-after"),
                "body": r.json
                if r.is_json
                else (r.raw[:2000].decode("utf-8", "replace") if r.raw else None),
                "transport_error": r.err,
            },
        }
        self.records.append(rec)
        return r

    def note(self, name: str, facts: dict[str, Any]) -> None:
        """A record with no HTTP request (e.g. a sleep), for timing context."""
        self.records.append(
            {
                "step": name,
                "at_ms": int((time.monotonic() - self.t0) * 1000),
                "elapsed_ms": 0,
                "request": None,
                "status": ABSENT,
                "errcode": ABSENT,
                "error": ABSENT,
                "soft_logout": ABSENT,
                "keys": ABSENT,
                "facts": facts,
                "response": None,
            }
        )

    # -- the script ----------------------------------------------------------------
    def run(self) -> None:
        try:
            self._script()
        except Exception as e:  # noqa: BLE001 - keep going with the other server
            import traceback

            self.aborted = f"{type(e).__name__}: {e}"
            self.note("ABORTED", {"exception": self.aborted, "trace": traceback.format_exc()})

    def _script(self) -> None:
        V3 = "/_matrix/client/v3"
        L = self.lifetime_ms
        rnd = secrets.token_hex(4)
        pw = f"pw-{rnd}-Secret"
        u1 = f"fid{rnd}a"  # main user
        u2 = f"fid{rnd}b"  # register with refresh
        u3 = f"fid{rnd}c"  # inhibit_login
        u4 = f"fid{rnd}d"  # register refresh_token "yes"
        self.users = [u1, u2, u3, u4]
        for i, u in enumerate(self.users):
            self.subst[u] = f"<user{i + 1}>"
        self.subst[rnd] = "<rnd>"
        self.subst[rnd.upper()] = "<RND>"

        def is_str(v: Any) -> bool:
            return isinstance(v, str) and len(v) > 0

        def tok_facts(r: Response) -> dict[str, Any]:
            at, rt, exp = r.get("access_token"), r.get("refresh_token"), r.get("expires_in_ms")
            return {
                "has_access_token": is_str(at),
                "has_refresh_token": is_str(rt),
                "has_expires_in_ms": exp is not None,
                "access_prefix": at[:4] if is_str(at) else ABSENT,
                "refresh_prefix": rt[:4] if is_str(rt) else ABSENT,
                # a few ms under the lifetime at login/register (computed after the insert)
                "expires_in_ms_near_lifetime": (
                    isinstance(exp, int) and L - 2000 <= exp <= L
                ) if exp is not None else ABSENT,
            }

        def errf(r: Response) -> dict[str, Any]:
            return {}

        # ---------------------------------------------------------------- discovery
        def versions_facts(r: Response) -> dict[str, Any]:
            v = r.get("versions") or []
            return {
                "versions": " ".join(v) if isinstance(v, list) else repr(v),
                "lists_v1.3": "v1.3" in v if isinstance(v, list) else False,
                "has_unstable_features": isinstance(r.get("unstable_features"), dict),
            }

        self.step("GET versions", "GET", "/_matrix/client/versions", facts=versions_facts)
        self.step(
            "GET login flows",
            "GET",
            f"{V3}/login",
            facts=lambda r: {"flow_types": " ".join(f.get("type", "?") for f in (r.get("flows") or []))},
        )
        self.step(
            "GET capabilities (no auth)",
            "GET",
            f"{V3}/capabilities",
        )
        self.step("unknown endpoint", "GET", f"{V3}/no/such/endpoint")
        self.step("unknown endpoint POST", "POST", f"{V3}/no/such/endpoint", body={})
        self.step("GET /v3/refresh (405)", "GET", f"{V3}/refresh")
        bogus_rt = "syr_Ym9ndXM_AAAAAAAAAAAAAAAAAAAA_000000"
        for label, path in [
            ("POST /r0/refresh bogus", "/_matrix/client/r0/refresh"),
            ("POST /v1/refresh bogus", "/_matrix/client/v1/refresh"),
            ("POST /unstable/refresh bogus", "/_matrix/client/unstable/refresh"),
            ("POST /unstable/org.matrix.msc2918/refresh bogus", "/_matrix/client/unstable/org.matrix.msc2918/refresh"),
            ("POST /api/v1/refresh bogus", "/_matrix/client/api/v1/refresh"),
            ("POST /api/v1/login empty", "/_matrix/client/api/v1/login"),
            ("POST /v1/login empty", "/_matrix/client/v1/login"),
        ]:
            if path.endswith("/login"):
                self.step(label, "POST", path, body={})
            else:
                self.step(label, "POST", path, body={"refresh_token": bogus_rt})

        # ---------------------------------------------------------------- register
        r = self.step(
            "register no auth (UIA)",
            "POST",
            f"{V3}/register",
            body={"username": u1, "password": pw},
            facts=lambda r: {
                "flow_stages": " | ".join(
                    ",".join(f.get("stages", [])) for f in (r.get("flows") or [])
                ),
                "has_session": is_str(r.get("session")),
            },
        )
        session = r.get("session")
        self.step(
            "register dummy (session)",
            "POST",
            f"{V3}/register",
            body={"username": u1, "password": pw, "auth": {"type": "m.login.dummy", "session": session}},
            facts=tok_facts,
        )
        self.step(
            "register dummy refresh_token:true",
            "POST",
            f"{V3}/register",
            body={"username": u2, "password": pw, "refresh_token": True, "auth": {"type": "m.login.dummy"}},
            facts=tok_facts,
        )
        self.step(
            "register inhibit_login + refresh",
            "POST",
            f"{V3}/register",
            body={
                "username": u3,
                "password": pw,
                "inhibit_login": True,
                "refresh_token": True,
                "auth": {"type": "m.login.dummy"},
            },
            facts=tok_facts,
        )
        self.step(
            "register refresh_token \"yes\"",
            "POST",
            f"{V3}/register",
            body={"username": u4, "password": pw, "refresh_token": "yes", "auth": {"type": "m.login.dummy"}},
        )
        self.step(
            "register existing user",
            "POST",
            f"{V3}/register",
            body={"username": u1, "password": pw, "auth": {"type": "m.login.dummy"}},
        )
        self.step(
            "register with access token",
            "POST",
            f"{V3}/register",
            token="syt_bogus",
            body={"username": u4, "password": pw, "auth": {"type": "m.login.dummy"}},
        )

        # ---------------------------------------------------------------- login
        def ident(pw_: str = pw) -> dict[str, Any]:
            return {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": u1}, "password": pw_}

        rP = self.step("login plain (m.id.user)", "POST", f"{V3}/login", body=ident(), facts=tok_facts)
        P = rP.get("access_token")
        P_dev = rP.get("device_id")
        rU = self.step(
            "login deprecated top-level user",
            "POST",
            f"{V3}/login",
            body={"type": "m.login.password", "user": u1, "password": pw},
            facts=tok_facts,
        )
        U_tok, U_dev = rU.get("access_token"), rU.get("device_id")
        self.step(
            "login full mxid",
            "POST",
            f"{V3}/login",
            body={"type": "m.login.password", "identifier": {"type": "m.id.user", "user": f"@{u1}:localhost"}, "password": pw},
            facts=tok_facts,
        )
        self.step("login wrong password", "POST", f"{V3}/login", body=ident("wrong"))
        self.step(
            "login unknown user",
            "POST",
            f"{V3}/login",
            body={"type": "m.login.password", "identifier": {"type": "m.id.user", "user": u1 + "zz"}, "password": pw},
        )
        self.step(
            "login unknown type",
            "POST",
            f"{V3}/login",
            body={"type": "m.login.bogus", "identifier": {"type": "m.id.user", "user": u1}, "password": pw},
        )
        self.step(
            "login missing type",
            "POST",
            f"{V3}/login",
            body={"identifier": {"type": "m.id.user", "user": u1}, "password": pw},
        )
        self.step(
            "login type not a string",
            "POST",
            f"{V3}/login",
            body={"type": 5, "identifier": {"type": "m.id.user", "user": u1}, "password": pw},
        )
        self.step(
            "login missing password",
            "POST",
            f"{V3}/login",
            body={"type": "m.login.password", "identifier": {"type": "m.id.user", "user": u1}},
        )
        self.step(
            "login no identifier",
            "POST",
            f"{V3}/login",
            body={"type": "m.login.password", "password": pw},
        )
        self.step(
            "login identifier without type",
            "POST",
            f"{V3}/login",
            body={"type": "m.login.password", "identifier": {"user": u1}, "password": pw},
        )
        self.step(
            "login refresh_token \"yes\"",
            "POST",
            f"{V3}/login",
            body={**ident(), "refresh_token": "yes"},
        )
        self.step(
            "login refresh_token:false",
            "POST",
            f"{V3}/login",
            body={**ident(), "refresh_token": False},
            facts=tok_facts,
        )
        self.step(
            "login org.matrix.msc2918.refresh_token:true",
            "POST",
            f"{V3}/login",
            body={**ident(), "org.matrix.msc2918.refresh_token": True},
            facts=tok_facts,
        )
        self.step("login not JSON", "POST", f"{V3}/login", raw=b"{not json")
        self.step("login JSON array", "POST", f"{V3}/login", raw=b"[]")
        self.step("login empty body", "POST", f"{V3}/login", raw=b"")
        self.step("login NaN", "POST", f"{V3}/login", raw=b'{"type": NaN}')

        # ---------------------------------------------------------------- whoami
        def whoami_facts(expect_dev: str | None) -> Callable[[Response], dict[str, Any]]:
            def f(r: Response) -> dict[str, Any]:
                if r.status != 200:
                    return {}
                return {
                    "user_id_ok": r.get("user_id") == f"@{u1}:localhost",
                    "device_id_ok": (r.get("device_id") == expect_dev) if expect_dev else ABSENT,
                    "is_guest": r.get("is_guest", ABSENT),
                }

            return f

        WHOAMI = f"{V3}/account/whoami"
        self.step("whoami valid", "GET", WHOAMI, token=P, facts=whoami_facts(P_dev))
        self.step("whoami missing token", "GET", WHOAMI)
        self.step("whoami unknown token", "GET", WHOAMI, token="syt_Ym9ndXM_AAAAAAAAAAAAAAAAAAAA_000000")
        self.step("whoami garbage token", "GET", WHOAMI, token="not-a-token")
        self.step(
            "whoami ?access_token=",
            "GET",
            WHOAMI + "?access_token=" + urllib.parse.quote(P or ""),
            facts=whoami_facts(P_dev),
        )
        self.step(
            "whoami header + query",
            "GET",
            WHOAMI + "?access_token=" + urllib.parse.quote(P or ""),
            token=P,
        )
        self.step("whoami Basic auth header", "GET", WHOAMI, headers={"Authorization": "Basic Zm9vOmJhcg=="})
        self.step("whoami /r0", "GET", "/_matrix/client/r0/account/whoami", token=P, facts=whoami_facts(P_dev))

        # ---------------------------------------------------------------- refresh: bad bodies
        REFRESH = f"{V3}/refresh"
        self.step("refresh not JSON", "POST", REFRESH, raw=b"this is not json")
        self.step("refresh JSON array", "POST", REFRESH, raw=b'["refresh_token"]')
        self.step("refresh empty body", "POST", REFRESH, raw=b"")
        self.step("refresh missing refresh_token", "POST", REFRESH, body={})
        self.step("refresh refresh_token number", "POST", REFRESH, body={"refresh_token": 42})
        self.step("refresh refresh_token null", "POST", REFRESH, body={"refresh_token": None})
        self.step("refresh malformed token", "POST", REFRESH, body={"refresh_token": "garbage"})
        self.step("refresh syt_ access token as refresh", "POST", REFRESH, body={"refresh_token": P or "x"})
        self.step(
            "refresh well-formed unknown syr_",
            "POST",
            REFRESH,
            body={"refresh_token": make_token("syr", u1)},
        )
        self.step(
            "refresh with Authorization header (bogus)",
            "POST",
            REFRESH,
            token="syt_bogus",
            body={"refresh_token": make_token("syr", u1)},
        )

        # ---------------------------------------------------------------- rooms (non-expiring token)
        rc = self.step(
            "createRoom",
            "POST",
            f"{V3}/createRoom",
            token=P,
            body={"preset": "private_chat", "name": "fidelity"},
            facts=lambda r: {
                "room_id_starts_with_bang": (r.get("room_id") or "").startswith("!"),
                # room version 12 (Synapse's default since 1.135) has no ":server" part
                "room_id_has_server_part": (r.get("room_id") or "").endswith(":localhost"),
            },
        )
        room = rc.get("room_id") or "!missing:localhost"
        self.subst[room] = "<room>"
        qroom = urllib.parse.quote(room)
        self.step("createRoom no auth", "POST", f"{V3}/createRoom", body={})
        self.step("createRoom not JSON", "POST", f"{V3}/createRoom", token=P, raw=b"nope")
        self.step(
            "createRoom bad preset",
            "POST",
            f"{V3}/createRoom",
            token=P,
            body={"preset": "nonsense"},
        )
        txn = f"txn-{rnd}"
        msg = {"msgtype": "m.text", "body": "hello from fidelity"}
        s1 = self.step(
            "send txn first",
            "PUT",
            f"{V3}/rooms/{qroom}/send/m.room.message/{txn}",
            token=P,
            body=msg,
            facts=lambda r: {"event_id_shape": bool(re.fullmatch(r"\$.+", r.get("event_id") or ""))},
        )
        ev1 = s1.get("event_id")
        self.step(
            "send txn repeat (same token)",
            "PUT",
            f"{V3}/rooms/{qroom}/send/m.room.message/{txn}",
            token=P,
            body=msg,
            facts=lambda r: {"same_event_id": r.get("event_id") == ev1 and ev1 is not None},
        )
        self.step(
            "send txn repeat (other device)",
            "PUT",
            f"{V3}/rooms/{qroom}/send/m.room.message/{txn}",
            token=U_tok,
            body=msg,
            facts=lambda r: {"same_event_id": r.get("event_id") == ev1 and ev1 is not None},
        )
        self.step(
            "send unknown room",
            "PUT",
            f"{V3}/rooms/{urllib.parse.quote('!nope:localhost')}/send/m.room.message/{txn}",
            token=P,
            body=msg,
        )
        self.step(
            "send not JSON",
            "PUT",
            f"{V3}/rooms/{qroom}/send/m.room.message/{txn}-x",
            token=P,
            raw=b"nope",
        )
        self.step(
            "send POST without txn",
            "POST",
            f"{V3}/rooms/{qroom}/send/m.room.message",
            token=P,
            body=msg,
        )

        def count_msgs(r: Response) -> dict[str, Any]:
            chunk = r.get("chunk") or []
            return {
                "hello_count": sum(
                    1
                    for e in chunk
                    if e.get("type") == "m.room.message" and (e.get("content") or {}).get("body") == msg["body"]
                ),
                "has_end": "end" in (r.json or {}),
            }

        self.step(
            "messages dir=b",
            "GET",
            f"{V3}/rooms/{qroom}/messages?dir=b&limit=20",
            token=P,
            facts=count_msgs,
        )
        self.step("messages bad dir", "GET", f"{V3}/rooms/{qroom}/messages?dir=x", token=P)
        self.step("messages unknown room", "GET", f"{V3}/rooms/{urllib.parse.quote('!nope:localhost')}/messages?dir=b", token=P)
        self.step(
            "joined_rooms",
            "GET",
            f"{V3}/joined_rooms",
            token=P,
            facts=lambda r: {"room_listed": room in (r.get("joined_rooms") or [])},
        )
        self.step(
            "sync timeout 0",
            "GET",
            f"{V3}/sync?timeout=0",
            token=P,
            facts=lambda r: {
                "room_in_join": room in ((r.get("rooms") or {}).get("join") or {}),
                "has_next_batch": is_str(r.get("next_batch")),
            },
        )
        self.step("sync bad filter", "GET", f"{V3}/sync?timeout=0&filter=nonexistent", token=P)
        self.step("sync bad timeout", "GET", f"{V3}/sync?timeout=abc", token=P)
        rf = self.step(
            "filter create",
            "POST",
            f"{V3}/user/{urllib.parse.quote('@' + u1 + ':localhost')}/filter",
            token=P,
            body={"room": {"timeline": {"limit": 5}}},
            facts=lambda r: {"filter_id_is_str": is_str(r.get("filter_id"))},
        )
        fid = rf.get("filter_id") or "0"
        self.step(
            "filter get",
            "GET",
            f"{V3}/user/{urllib.parse.quote('@' + u1 + ':localhost')}/filter/{fid}",
            token=P,
        )
        self.step(
            "filter for other user",
            "POST",
            f"{V3}/user/{urllib.parse.quote('@' + u2 + ':localhost')}/filter",
            token=P,
            body={},
        )
        self.step(
            "profile get",
            "GET",
            f"{V3}/profile/{urllib.parse.quote('@' + u1 + ':localhost')}",
            facts=lambda r: {"displayname_is_localpart": r.get("displayname", ABSENT) == u1},
        )
        self.step("profile unknown user", "GET", f"{V3}/profile/{urllib.parse.quote('@nobody' + rnd + ':localhost')}")
        self.step("capabilities", "GET", f"{V3}/capabilities", token=P)
        self.step("pushrules", "GET", f"{V3}/pushrules/", token=P)

        # ---------------------------------------------------------------- refresh chain
        # Everything from here to "chain finished" must finish well within the lifetime.
        t_login = time.monotonic()
        rL = self.step(
            "login refresh_token:true",
            "POST",
            f"{V3}/login",
            body={**ident(), "refresh_token": True},
            facts=tok_facts,
        )
        at0, rt0 = rL.get("access_token"), rL.get("refresh_token")
        L_dev = rL.get("device_id")

        def refresh_facts(prev_at: Any, prev_rt: Any) -> Callable[[Response], dict[str, Any]]:
            def f(r: Response) -> dict[str, Any]:
                if r.status != 200:
                    return {}
                at, rt, exp = r.get("access_token"), r.get("refresh_token"), r.get("expires_in_ms")
                return {
                    "has_access_token": is_str(at),
                    "has_refresh_token": is_str(rt),
                    "access_differs": at != prev_at,
                    "refresh_differs": rt != prev_rt,
                    "access_prefix": at[:4] if is_str(at) else ABSENT,
                    "refresh_prefix": rt[:4] if is_str(rt) else ABSENT,
                    "expires_in_ms_exact": exp == L,
                    "expires_in_ms_near_lifetime": isinstance(exp, int) and L - 2000 <= exp <= L,
                }

            return f

        r1 = self.step("refresh happy", "POST", REFRESH, body={"refresh_token": rt0}, facts=refresh_facts(at0, rt0))
        at1, rt1 = r1.get("access_token"), r1.get("refresh_token")
        r2 = self.step(
            "chain: reuse login rt before successor used",
            "POST",
            REFRESH,
            body={"refresh_token": rt0},
            facts=lambda r: {
                **refresh_facts(at0, rt0)(r),
                "differs_from_first_refresh": r.get("access_token") != at1 and r.get("refresh_token") != rt1,
            },
        )
        at2, rt2 = r2.get("access_token"), r2.get("refresh_token")
        self.step("chain: first successor rt", "POST", REFRESH, body={"refresh_token": rt1})
        self.step("chain: first successor at", "GET", WHOAMI, token=at1)
        self.step("chain: login at still valid", "GET", WHOAMI, token=at0, facts=whoami_facts(L_dev))
        self.step("chain: second at", "GET", WHOAMI, token=at2, facts=whoami_facts(L_dev))
        self.step("chain: reuse login rt after second at used", "POST", REFRESH, body={"refresh_token": rt0})
        r3 = self.step(
            "chain: second rt",
            "POST",
            REFRESH,
            body={"refresh_token": rt2},
            facts=refresh_facts(at2, rt2),
        )
        at3, rt3 = r3.get("access_token"), r3.get("refresh_token")
        self.step("chain: second at after its refresh", "GET", WHOAMI, token=at2, facts=whoami_facts(L_dev))
        self.step("chain: login at after its generation dropped", "GET", WHOAMI, token=at0)
        self.step("chain: login rt after its generation dropped", "POST", REFRESH, body={"refresh_token": rt0})
        self.step("chain: /r0/refresh with third rt (unused)", "POST", "/_matrix/client/r0/refresh",
                  body={"refresh_token": rt3}, facts=refresh_facts(at3, rt3))
        # that /r0 call replaced rt3's successor; keep using rt3's *latest* child below
        # (rt3 itself stays valid until a successor is used).
        r3b = self.step("chain: rt3 again (retry window)", "POST", REFRESH, body={"refresh_token": rt3},
                        facts=refresh_facts(at3, rt3))
        at4, rt4 = r3b.get("access_token"), r3b.get("refresh_token")
        self.step("chain: at4 used", "GET", WHOAMI, token=at4, facts=whoami_facts(L_dev))
        chain_ms = int((time.monotonic() - t_login) * 1000)
        # If this is false the run is invalid (tokens may have expired mid-chain).
        self.note("chain finished", {"within_lifetime": chain_ms < L, "chain_ms": chain_ms})

        # ---------------------------------------------------------------- more sessions (pre-sleep)
        rL2 = self.step(
            "login2 refresh_token:true (for logout-expired)",
            "POST",
            f"{V3}/login",
            body={**ident(), "refresh_token": True},
            facts=tok_facts,
        )
        l2_at, l2_rt = rL2.get("access_token"), rL2.get("refresh_token")
        # Login with an existing device id: what happens to that device's old tokens?
        dev_id = f"FIDDEV{rnd.upper()}"
        rD1 = self.step(
            "login with new device_id",
            "POST",
            f"{V3}/login",
            body={**ident(), "device_id": dev_id, "refresh_token": True},
            facts=lambda r: {**tok_facts(r), "device_id_echoed": r.get("device_id") == dev_id},
        )
        d1_at, d1_rt = rD1.get("access_token"), rD1.get("refresh_token")
        self.step("whoami device_id session (used)", "GET", WHOAMI, token=d1_at, facts=whoami_facts(dev_id))
        rD2 = self.step(
            "login again with same device_id",
            "POST",
            f"{V3}/login",
            body={**ident(), "device_id": dev_id, "refresh_token": True},
            facts=lambda r: {**tok_facts(r), "device_id_echoed": r.get("device_id") == dev_id},
        )
        d2_at = rD2.get("access_token")
        self.step("same device_id: old at", "GET", WHOAMI, token=d1_at)
        self.step("same device_id: new at", "GET", WHOAMI, token=d2_at, facts=whoami_facts(dev_id))
        self.step("same device_id: old rt", "POST", REFRESH, body={"refresh_token": d1_rt})
        self.step(
            "login device_id too long",
            "POST",
            f"{V3}/login",
            body={**ident(), "device_id": "X" * 513},
        )

        # "has_next_refresh_token_been_refreshed": refresh rt0 -> rt1, refresh rt1 -> rt2
        # without ever using at1, then reuse rt0.
        rN = self.step("login3 refresh_token:true (successor refreshed)", "POST", f"{V3}/login",
                       body={**ident(), "refresh_token": True}, facts=tok_facts)
        n_rt0 = rN.get("refresh_token")
        rN1 = self.step("succ-refreshed: refresh rt0", "POST", REFRESH, body={"refresh_token": n_rt0})
        self.step("succ-refreshed: refresh rt1 (at1 unused)", "POST", REFRESH,
                  body={"refresh_token": rN1.get("refresh_token")})
        self.step("succ-refreshed: reuse rt0", "POST", REFRESH, body={"refresh_token": n_rt0})
        # A successor access token used only after it expired does not count as "used".
        rE = self.step("login4 refresh_token:true (successor used expired)", "POST", f"{V3}/login",
                       body={**ident(), "refresh_token": True}, facts=tok_facts)
        e_rt0 = rE.get("refresh_token")
        rE1 = self.step("succ-expired: refresh rt0", "POST", REFRESH, body={"refresh_token": e_rt0})
        e_at1 = rE1.get("access_token")

        # ---------------------------------------------------------------- expiry
        sleep_s = L / 1000.0 + 1.5
        self.note("sleep", {"seconds": sleep_s})
        time.sleep(sleep_s)
        self.step("expired at (whoami)", "GET", WHOAMI, token=at4)
        self.step("expired at (sync)", "GET", f"{V3}/sync?timeout=0", token=at4)
        self.step("expired unused at", "GET", WHOAMI, token=l2_at)
        self.step("succ-expired: at1 used after expiry", "GET", WHOAMI, token=e_at1)
        self.step("succ-expired: reuse rt0", "POST", REFRESH, body={"refresh_token": e_rt0})
        r5 = self.step(
            "refresh after expiry",
            "POST",
            REFRESH,
            body={"refresh_token": rt4},
            facts=refresh_facts(at4, rt4),
        )
        at5, rt5 = r5.get("access_token"), r5.get("refresh_token")
        self.step("whoami after refresh-after-expiry", "GET", WHOAMI, token=at5, facts=whoami_facts(L_dev))
        # txn ids are per device: same txn with a refreshed token of the same device
        txn2 = f"txn2-{rnd}"
        sA = self.step(
            "send txn with refreshable at",
            "PUT",
            f"{V3}/rooms/{qroom}/send/m.room.message/{txn2}",
            token=at5,
            body=msg,
        )
        evA = sA.get("event_id")
        r6 = self.step(
            "refresh between txn sends",
            "POST",
            REFRESH,
            body={"refresh_token": rt5},
            facts=refresh_facts(at5, rt5),
        )
        at6, rt6 = r6.get("access_token"), r6.get("refresh_token")
        self.step(
            "send same txn after refresh",
            "PUT",
            f"{V3}/rooms/{qroom}/send/m.room.message/{txn2}",
            token=at6,
            body=msg,
            facts=lambda r: {"same_event_id": r.get("event_id") == evA and evA is not None},
        )

        # ---------------------------------------------------------------- devices
        self.step(
            "GET devices",
            "GET",
            f"{V3}/devices",
            token=P,
            facts=lambda r: {
                "device_count": len(r.get("devices") or []),
                "device_keys": ",".join(sorted((r.get("devices") or [{}])[0].keys())) if r.get("devices") else ABSENT,
            },
        )
        self.step("GET devices/{id}", "GET", f"{V3}/devices/{urllib.parse.quote(U_dev or 'x')}", token=P)
        self.step("GET devices/unknown", "GET", f"{V3}/devices/NOSUCHDEVICE", token=P)
        rdel = self.step(
            "DELETE device no auth (UIA)",
            "DELETE",
            f"{V3}/devices/{urllib.parse.quote(U_dev or 'x')}",
            token=P,
            body={},
            facts=lambda r: {
                "flow_stages": " | ".join(",".join(f.get("stages", [])) for f in (r.get("flows") or [])),
                "has_session": is_str(r.get("session")),
            },
        )
        dsess = rdel.get("session")
        self.step(
            "DELETE device wrong password",
            "DELETE",
            f"{V3}/devices/{urllib.parse.quote(U_dev or 'x')}",
            token=P,
            body={
                "auth": {
                    "type": "m.login.password",
                    "identifier": {"type": "m.id.user", "user": u1},
                    "password": "wrong",
                    "session": dsess,
                }
            },
        )
        self.step(
            "DELETE device password auth",
            "DELETE",
            f"{V3}/devices/{urllib.parse.quote(U_dev or 'x')}",
            token=P,
            body={
                "auth": {
                    "type": "m.login.password",
                    "identifier": {"type": "m.id.user", "user": u1},
                    "password": pw,
                    "session": dsess,
                }
            },
        )
        self.step("deleted device's token", "GET", WHOAMI, token=U_tok)
        self.step("DELETE device no access token", "DELETE", f"{V3}/devices/{urllib.parse.quote(P_dev or 'x')}", body={})

        # ---------------------------------------------------------------- logout
        self.step("logout with expired at", "POST", f"{V3}/logout", token=l2_at, body={})
        self.step("refresh with logged-out device's rt", "POST", REFRESH, body={"refresh_token": l2_rt})
        self.step("logout no token", "POST", f"{V3}/logout", body={})
        self.step("logout unknown token", "POST", f"{V3}/logout", token="syt_bogus", body={})

        # ---------------------------------------------------------------- big body
        big = json.dumps(
            {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": u1},
                "password": "wrong",
                "padding": "x" * (1024 * 1024 + 4096),
            }
        ).encode()
        self.step("login body > 1 MiB", "POST", f"{V3}/login", raw=big, dump_raw_request=False)

        # ---------------------------------------------------------------- logout/all
        self.step("logout/all", "POST", f"{V3}/logout/all", token=P, body={})
        self.step("after logout/all: plain at", "GET", WHOAMI, token=P)
        self.step("after logout/all: refreshed at", "GET", WHOAMI, token=at6)
        self.step("after logout/all: rt", "POST", REFRESH, body={"refresh_token": rt6})
        self.step("login after logout/all", "POST", f"{V3}/login", body=ident(), facts=tok_facts)


# --------------------------------------------------------------------------------------
# token helpers (Synapse's format, for well-formed-but-unknown tokens)

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # synapse/util/stringutils.py _BASE62


def base62(num: int, minwidth: int = 1) -> str:
    res = ""
    while num:
        num, rem = divmod(num, 62)
        res = _B62[rem] + res
    pad = "0" * max(0, minwidth - len(res))
    return pad + res


def make_token(prefix: str, localpart: str) -> str:
    import base64
    import zlib

    b64 = base64.b64encode(localpart.encode()).decode().rstrip("=")  # unpaddedbase64, standard alphabet
    rand = "".join(secrets.choice(string_letters()) for _ in range(20))
    base = f"{prefix}_{b64}_{rand}"
    return f"{base}_{base62(zlib.crc32(base.encode('ascii')), minwidth=6)}"


def string_letters() -> str:
    import string

    return string.ascii_letters


# --------------------------------------------------------------------------------------
# redaction


class Redactor:
    TOKEN_RE = re.compile(r"\b(sy[tr]_[A-Za-z0-9\-_=]+)")

    def __init__(self, records: list[dict[str, Any]], subst: dict[str, str]):
        self.map: dict[str, str] = {}
        self.counters: dict[str, int] = {}
        # collect tokens the server handed out, in order
        for rec in records:
            body = (rec.get("response") or {}).get("body")
            if isinstance(body, dict):
                for k in ("access_token", "refresh_token"):
                    v = body.get(k)
                    if isinstance(v, str):
                        self._placeholder(v, k)
        self.subst = subst

    def _placeholder(self, tok: str, kind: str) -> str:
        if tok not in self.map:
            n = self.counters.get(kind, 0) + 1
            self.counters[kind] = n
            self.map[tok] = f"<{kind}#{n}:{tok[:4]}>"
        return self.map[tok]

    def s(self, text: str) -> str:
        for tok, ph in sorted(self.map.items(), key=lambda kv: -len(kv[0])):
            text = text.replace(tok, ph)
            q = urllib.parse.quote(tok)
            if q != tok:
                text = text.replace(q, ph)
        text = self.TOKEN_RE.sub(lambda m: self._placeholder(m.group(1), "other_token"), text)
        for k in sorted(self.subst, key=len, reverse=True):
            text = text.replace(k, self.subst[k])
        return text

    def walk(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.s(obj)
        if isinstance(obj, list):
            return [self.walk(x) for x in obj]
        if isinstance(obj, dict):
            return {self.s(k) if isinstance(k, str) else k: self.walk(v) for k, v in obj.items()}
        return obj


# --------------------------------------------------------------------------------------
# comparison


def load_known(path: str | None) -> list[dict[str, str]]:
    if not path:
        return []
    with open(path, "rb") as fh:
        data = fh.read()
    if path.endswith(".toml"):
        import tomllib

        doc = tomllib.loads(data.decode("utf-8"))
    else:
        doc = json.loads(data.decode("utf-8"))
    entries = doc.get("known", []) if isinstance(doc, dict) else doc
    out = []
    for e in entries:
        if not isinstance(e, dict) or "step" not in e or "field" not in e:
            raise SystemExit(f"bad known-differences entry: {e!r} (need step, field, reason)")
        out.append({"step": str(e["step"]), "field": str(e["field"]), "reason": str(e.get("reason", ""))})
    return out


def flat_fields(rec: dict[str, Any], ignore_error_text: bool, norm: Callable[[Any], Any]) -> dict[str, Any]:
    d = {
        "status": rec["status"],
        "errcode": rec["errcode"],
        "soft_logout": rec["soft_logout"],
        "keys": rec["keys"],
    }
    if not ignore_error_text:
        d["error"] = rec["error"]
    for k, v in (rec.get("facts") or {}).items():
        d[f"facts.{k}"] = v
    return {k: norm(v) for k, v in d.items()}


def compare(
    ex_a: "Exchange",
    ex_b: "Exchange",
    known: list[dict[str, str]],
    ignore_error_text: bool,
) -> tuple[list[dict[str, Any]], set[int]]:
    recs_a, recs_b = ex_a.records, ex_b.records
    rows = []
    used_known: set[int] = set()
    n = max(len(recs_a), len(recs_b))
    for i in range(n):
        a = recs_a[i] if i < len(recs_a) else None
        b = recs_b[i] if i < len(recs_b) else None
        name = (a or b or {}).get("step", "?")
        diffs: list[tuple[str, Any, Any, str | None]] = []
        if a is None or b is None or a["step"] != b["step"]:
            diffs.append(("step", a and a["step"], b and b["step"], None))
        else:
            fa = flat_fields(a, ignore_error_text, ex_a.normalize)
            fb = flat_fields(b, ignore_error_text, ex_b.normalize)
            for noisy in ("facts.seconds", "facts.chain_ms"):
                fa.pop(noisy, None)
                fb.pop(noisy, None)
            for k in sorted(set(fa) | set(fb), key=lambda k: (k.startswith("facts."), k)):
                va, vb = fa.get(k, ABSENT), fb.get(k, ABSENT)
                if va != vb:
                    reason = None
                    for ki, kn in enumerate(known):
                        if fnmatch.fnmatchcase(name, kn["step"]) and fnmatch.fnmatchcase(k, kn["field"]):
                            reason = kn["reason"] or "(known)"
                            used_known.add(ki)
                            break
                    diffs.append((k, va, vb, reason))
        if not diffs:
            marker = "OK"
        elif all(d[3] is not None for d in diffs):
            marker = "KNOWN"
        else:
            marker = "DIFF"
        rows.append({"a": a, "b": b, "name": name, "diffs": diffs, "marker": marker})
    return rows, used_known


def trunc(s: Any, w: int) -> str:
    s = str(s)
    return s if len(s) <= w else s[: max(1, w - 1)] + "…"


def print_table(rows: list[dict[str, Any]], an: str, bn: str | None, keys_w: int, out=sys.stdout) -> None:
    def g(rec: Any, k: str) -> str:
        return ABSENT if rec is None else str(rec.get(k, ABSENT))

    headers = ["#", "step", f"status {an}"]
    if bn:
        headers.append(f"status {bn}")
    headers.append(f"errcode {an}")
    if bn:
        headers.append(f"errcode {bn}")
    headers.append(f"soft {an}")
    if bn:
        headers.append(f"soft {bn}")
    headers.append(f"keys {an}")
    if bn:
        headers += [f"keys {bn}", "marker"]
    table = []
    for i, row in enumerate(rows):
        a, b = row["a"], row["b"]
        line = [str(i + 1), row["name"], g(a, "status")]
        if bn:
            line.append(g(b, "status"))
        line.append(g(a, "errcode"))
        if bn:
            line.append(g(b, "errcode"))
        line.append(g(a, "soft_logout"))
        if bn:
            line.append(g(b, "soft_logout"))
        line.append(trunc(g(a, "keys"), keys_w))
        if bn:
            line += [trunc(g(b, "keys"), keys_w), row["marker"]]
        table.append(line)
    widths = [max(len(h), *(len(r[j]) for r in table)) if table else len(h) for j, h in enumerate(headers)]
    widths[1] = min(widths[1], 48)

    def fmt(cells: list[str]) -> str:
        return " | ".join(trunc(c, widths[j]).ljust(widths[j]) for j, c in enumerate(cells)).rstrip()

    print(fmt(headers), file=out)
    print("-+-".join("-" * w for w in widths), file=out)
    for line in table:
        print(fmt(line), file=out)


def print_details(rows: list[dict[str, Any]], an: str, bn: str, out=sys.stdout) -> None:
    any_ = False
    for i, row in enumerate(rows):
        if not row["diffs"]:
            continue
        if not any_:
            print("\nDifferences:", file=out)
            any_ = True
        print(f"  #{i + 1} {row['name']} [{row['marker']}]", file=out)
        for k, va, vb, reason in row["diffs"]:
            tag = f"KNOWN: {reason}" if reason else "DIFF"
            print(f"      {k}: {an}={va!r}  {bn}={vb!r}  ({tag})", file=out)


def print_single_details(recs: list[dict[str, Any]], an: str, out=sys.stdout) -> None:
    print(f"\nError texts and facts ({an}):", file=out)
    for i, rec in enumerate(recs):
        extra = []
        if rec.get("error") not in (None, ABSENT):
            extra.append(f"error={rec['error']!r}")
        if rec.get("facts"):
            extra.append("facts=" + json.dumps(rec["facts"], sort_keys=True))
        if extra:
            print(f"  #{i + 1} {rec['step']}: " + "  ".join(extra), file=out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--a", required=True, help="base URL of server A (e.g. http://127.0.0.1:8448)")
    p.add_argument("--a-name", default="A")
    p.add_argument("--b", help="base URL of server B (omit to run A alone)")
    p.add_argument("--b-name", default="B")
    p.add_argument("--lifetime-ms", type=int, default=3000, help="refreshable access token lifetime both servers use")
    p.add_argument("--known", help="known-differences file (.toml or .json)")
    p.add_argument("--dump", help="write every request/response to this JSON file")
    p.add_argument("--no-redact", action="store_true", help="keep real tokens in --dump output")
    p.add_argument("--ignore-error-text", action="store_true", help="do not compare the `error` message strings")
    p.add_argument("--keys-width", type=int, default=44, help="truncate body-key columns to this width")
    p.add_argument("--sequential", action="store_true", help="run A then B instead of concurrently")
    args = p.parse_args(argv)

    known = load_known(args.known)
    ex_a = Exchange(args.a_name, Client(args.a), args.lifetime_ms)
    ex_b = Exchange(args.b_name, Client(args.b), args.lifetime_ms) if args.b else None
    exchanges = [e for e in (ex_a, ex_b) if e is not None]
    if args.sequential or len(exchanges) == 1:
        for e in exchanges:
            e.run()
    else:
        threads = [threading.Thread(target=e.run, name=e.name) for e in exchanges]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    if args.dump:
        dump: dict[str, Any] = {"lifetime_ms": args.lifetime_ms, "servers": {}}
        for e in exchanges:
            recs: Any = e.records
            if not args.no_redact:
                recs = Redactor(e.records, e.subst).walk(e.records)
            dump["servers"][e.name] = {"url": e.c.scheme + "://" + f"{e.c.host}:{e.c.port}{e.c.prefix}",
                                       "aborted": e.aborted, "steps": recs}
        with open(args.dump, "w", encoding="utf-8") as fh:
            json.dump(dump, fh, indent=2, ensure_ascii=False, default=str)
            fh.write("\n")

    for e in exchanges:
        if e.aborted:
            print(f"!! exchange against {e.name} aborted: {e.aborted}", file=sys.stderr)

    if ex_b is None:
        rows = [{"a": r, "b": None, "name": r["step"], "diffs": [], "marker": ""} for r in ex_a.records]
        print_table(rows, args.a_name, None, args.keys_width)
        print_single_details(ex_a.records, args.a_name)
        return 1 if ex_a.aborted else 0

    rows, used_known = compare(ex_a, ex_b, known, args.ignore_error_text)
    print_table(rows, args.a_name, args.b_name, args.keys_width)
    print_details(rows, args.a_name, args.b_name)
    n_diff = sum(1 for r in rows if r["marker"] == "DIFF")
    n_known = sum(1 for r in rows if r["marker"] == "KNOWN")
    n_ok = sum(1 for r in rows if r["marker"] == "OK")
    unused = [k for i, k in enumerate(known) if i not in used_known]
    if unused:
        print("\nKnown-difference entries that matched nothing (stale?):")
        for k in unused:
            print(f"  step={k['step']!r} field={k['field']!r}")
    print(f"\n{n_ok} ok, {n_known} known, {n_diff} diff  ({args.a_name} vs {args.b_name})")
    return 1 if (n_diff or ex_a.aborted or ex_b.aborted) else 0


if __name__ == "__main__":
    sys.exit(main())
