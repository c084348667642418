#!/usr/bin/env node
// Rotary driver for matrix-js-sdk: speaks the driver protocol (docs/protocol.md at the repository
// root, JSON-RPC 2.0, one object per line on stdin/stdout) and turns each call into a call of the SDK.
//
//   node driver.mjs [--sdk 43|42]
//
// 43 (default): matrix-js-sdk 43.x, which refreshes only OAuth 2.0 sessions (createClient's
//   `oauthClientId` + `onTokenRefresh`); legacy /refresh is not possible there.
// 42: matrix-js-sdk 42.4.0 (npm alias `matrix-js-sdk-42`), which refreshes through an
//   app-supplied `tokenRefreshFunction`. That function is application code (see `legacyRefresh`).
//
// stdout carries nothing but protocol lines: every console method the SDK's logger may use is
// redirected to stderr before the SDK is loaded.

import { readFileSync, writeFileSync, renameSync, rmSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { randomUUID } from "node:crypto";

// ----- stdout is for the protocol only ----------------------------------------------------------

const protocolOut = process.stdout.write.bind(process.stdout);
for (const name of ["log", "info", "debug", "warn", "trace", "dir", "table"]) {
    console[name] = (...args) => console.error(...args);
}
// Anything else that writes to process.stdout (it should not happen) goes to stderr too.
process.stdout.write = (chunk, ...rest) => process.stderr.write(chunk, ...rest);

function send(message) {
    protocolOut(JSON.stringify(message) + "\n");
}

function notify(method, params) {
    send({ jsonrpc: "2.0", method, params });
}

// ----- runtime ----------------------------------------------------------------------------------

// The SDK declares Node >= 22. On Node 20 the one missing built-in it uses is
// Promise.withResolvers (ES2024; MatrixScheduler, sendTextMessage…): supply the standard one.
if (typeof Promise.withResolvers !== "function") {
    Promise.withResolvers = function withResolvers() {
        let resolve;
        let reject;
        const promise = new this((res, rej) => {
            resolve = res;
            reject = rej;
        });
        return { promise, resolve, reject };
    };
}

// ----- options ----------------------------------------------------------------------------------

const HERE = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
let sdkMajor = "43";
for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--sdk" && i + 1 < argv.length) {
        sdkMajor = argv[++i];
    } else if (argv[i].startsWith("--sdk=")) {
        sdkMajor = argv[i].slice("--sdk=".length);
    } else {
        console.error(`driver: unknown argument ${argv[i]}`);
        process.exit(2);
    }
}
if (sdkMajor !== "42" && sdkMajor !== "43") {
    console.error(`driver: --sdk must be 42 or 43, not ${sdkMajor}`);
    process.exit(2);
}
const PACKAGE = sdkMajor === "42" ? "matrix-js-sdk-42" : "matrix-js-sdk";
const SDK_VERSION = JSON.parse(readFileSync(join(HERE, "node_modules", PACKAGE, "package.json"), "utf8")).version;
const sdk = await import(PACKAGE);
const { createClient, HttpApiEvent, MatrixError, HTTPError, ConnectionError, TokenRefreshLogoutError, Method } = sdk;

// 42.x's app-side /refresh call gives up after this long (a careful app bounds its own requests).
const REFRESH_TIMEOUT_MS = 5000;
// Mirrors the SDK's own SyncApi: a /sync may take its long-poll timeout plus 80 s.
const SYNC_BUFFER_MS = 80 * 1000;
// The OAuth login's redirect URI: loopback, read from the Location header and never followed.
const REDIRECT_URI = "http://127.0.0.1/callback";

const CAPABILITIES =
    sdkMajor === "42"
        ? ["login", "register", "restore", "resume", "whoami", "sync", "send", "parallel", "logout", "legacy-refresh"]
        : [
              "login",
              "register",
              "restore",
              "resume",
              "whoami",
              "sync",
              "send",
              "parallel",
              "logout",
              "oauth-refresh",
              "oauth-login",
          ];

// ----- errors -----------------------------------------------------------------------------------

class RpcError extends Error {
    constructor(code, message, data) {
        super(message);
        this.code = code;
        this.data = data;
    }
    toJSON() {
        const e = { code: this.code, message: this.message };
        if (this.data !== undefined) e.data = this.data;
        return e;
    }
}
const METHOD_NOT_FOUND = -32601;
const INVALID_PARAMS = -32602;
const CALL_FAILED = -32000;

function failure(kind, message, extra = {}) {
    return new RpcError(CALL_FAILED, message, { kind, ...extra });
}

function invalidParams(message) {
    return new RpcError(INVALID_PARAMS, message);
}

function describe(e) {
    if (e instanceof Error) {
        const cause = e.cause instanceof Error ? ` (cause: ${e.cause.name}: ${e.cause.message})` : "";
        return `${e.name}: ${e.message}${cause}`;
    }
    return String(e);
}

// ----- parameters -------------------------------------------------------------------------------

function field(params, name) {
    const v = params?.[name];
    return v === null ? undefined : v;
}
function reqStr(params, name) {
    const v = field(params, name);
    if (typeof v !== "string") throw invalidParams(`missing string param \`${name}\``);
    return v;
}
function optStr(params, name) {
    const v = field(params, name);
    if (v === undefined) return undefined;
    if (typeof v !== "string") throw invalidParams(`param \`${name}\` must be a string`);
    return v;
}
function optInt(params, name) {
    const v = field(params, name);
    if (v === undefined) return undefined;
    if (!Number.isInteger(v) || v < 0) throw invalidParams(`param \`${name}\` must be a non-negative integer`);
    return v;
}
function optBool(params, name) {
    const v = field(params, name);
    if (v === undefined) return undefined;
    if (typeof v !== "boolean") throw invalidParams(`param \`${name}\` must be a boolean`);
    return v;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ----- the driver -------------------------------------------------------------------------------

class Driver {
    constructor() {
        this.baseUrl = process.env.ROTARY_HOMESERVER_URL || undefined;
        this.stateDir = process.env.ROTARY_STATE_DIR || undefined;
        this.scenario = process.env.ROTARY_SCENARIO || undefined;
        /** The MatrixClient of the current session, if any. */
        this.client = null;
        /** What the app keeps of the session (persisted on every change). */
        this.session = null;
        /** Set when the SDK signalled a logout (`Session.logged_out`), or the app logged out. */
        this.ended = null;
        /** The errors the SDK emitted with `Session.logged_out` (the same objects are then thrown). */
        this.logoutErrors = new WeakSet();
    }

    // --- persistence (ROTARY_STATE_DIR) ---

    statePath() {
        return this.stateDir ? join(this.stateDir, "js-sdk-session.json") : null;
    }

    persist() {
        const path = this.statePath();
        if (!path) return;
        mkdirSync(this.stateDir, { recursive: true });
        const tmp = `${path}.tmp`;
        writeFileSync(tmp, JSON.stringify({ session: this.session, ended: this.ended }));
        renameSync(tmp, path);
    }

    // --- error mapping ---

    toRpcError(e) {
        if (e instanceof RpcError) return e;
        if (this.logoutErrors.has(e)) {
            const soft = e?.data?.soft_logout === true;
            const extra = {};
            if (typeof e.httpStatus === "number") extra.status = e.httpStatus;
            if (e.errcode) extra.errcode = e.errcode;
            return failure(soft ? "soft_logged_out" : "logged_out", `the SDK signalled a logout: ${describe(e)}`, extra);
        }
        if (e instanceof MatrixError) {
            const extra = {};
            if (typeof e.httpStatus === "number") extra.status = e.httpStatus;
            if (e.errcode) extra.errcode = e.errcode;
            return failure("http", describe(e), extra);
        }
        if (e instanceof HTTPError) {
            // A non-JSON error response (e.g. a proxy's HTML page): the server's error, passed up.
            const extra = {};
            if (typeof e.httpStatus === "number") extra.status = e.httpStatus;
            return failure("http", describe(e), extra);
        }
        if (e instanceof ConnectionError) return failure("network", describe(e));
        if (e instanceof Error && (e.name === "AbortError" || e.name === "TimeoutError")) {
            return failure("network", describe(e));
        }
        return failure("other", describe(e));
    }

    // --- the client ---

    /** Creates the SDK client for `session` (the app's record) and makes it current. */
    adopt(session) {
        if (!this.baseUrl) throw failure("other", "no homeserver URL: set ROTARY_HOMESERVER_URL or pass it to initialize");
        if (this.client) this.client.removeAllListeners();
        this.session = session;
        this.ended = null;
        const onTokenRefresh = (tokens) => this.tokensRefreshed(tokens);
        const opts = {
            baseUrl: this.baseUrl,
            userId: session.user_id,
            deviceId: session.device_id,
            accessToken: session.access_token,
            refreshToken: session.refresh_token ?? undefined,
        };
        if (sdkMajor === "43") {
            opts.onTokenRefresh = onTokenRefresh;
            if (session.auth === "oauth") opts.oauthClientId = session.client_id;
        } else if (session.auth === "legacy") {
            opts.tokenRefreshFunction = (refreshToken) => this.legacyRefresh(refreshToken);
        }
        const client = createClient(opts);
        client.on(HttpApiEvent.SessionLoggedOut, (err) => {
            if (client !== this.client) return;
            this.logoutErrors.add(err);
            const soft = err?.data?.soft_logout === true;
            console.error(`driver: Session.logged_out (soft_logout: ${soft}): ${describe(err)}`);
            notify("logged_out", { soft_logout: soft });
            // The app's part of the contract: the session is over, stop using the client
            // (Element: Lifecycle.onLoggedOut / softLogout). In-flight SDK calls finish on their own.
            this.ended = { soft, reason: "the SDK signalled a logout (Session.logged_out)" };
            this.persist();
        });
        this.client = client;
        this.persist();
        notify("session_changed", {
            access_token: client.getAccessToken(),
            refresh_token: client.getRefreshToken(),
        });
    }

    /** The SDK has new tokens (43: onTokenRefresh; 42: our tokenRefreshFunction's result). */
    tokensRefreshed(tokens) {
        if (!this.session) return;
        // What the SDK adopts next (refresh.ts doTokenRefresh): exactly these two values, a missing
        // refresh token included (opts.refreshToken = refreshToken).
        this.session = {
            ...this.session,
            access_token: tokens.accessToken,
            refresh_token: tokens.refreshToken ?? null,
            expires_at_ms: tokens.expiry ? tokens.expiry.getTime() : undefined,
        };
        this.persist();
        notify("session_changed", { access_token: tokens.accessToken, refresh_token: tokens.refreshToken ?? null });
    }

    /**
     * 42.x: the application's tokenRefreshFunction for legacy sessions (MSC2918 / spec v1.3 /refresh).
     * This is app code, written the way a careful app would: a bounded request with plain fetch,
     * the old refresh token kept when the answer has none, TokenRefreshLogoutError (→ the SDK logs
     * out) only on a definitive refusal, anything else a transient error.
     */
    async legacyRefresh(refreshToken) {
        const started = Date.now();
        let res;
        let text;
        try {
            res = await fetch(`${this.baseUrl}/_matrix/client/v3/refresh`, {
                method: "POST",
                headers: { "Content-Type": "application/json", "Accept": "application/json" },
                body: JSON.stringify({ refresh_token: refreshToken }),
                signal: AbortSignal.timeout(REFRESH_TIMEOUT_MS),
            });
            text = await res.text();
        } catch (e) {
            throw new Error(`/refresh failed: ${describe(e)}`, { cause: e });
        }
        let body;
        try {
            body = JSON.parse(text);
        } catch {
            body = undefined;
        }
        if (res.status === 200) {
            if (typeof body?.access_token !== "string") {
                throw new Error("/refresh answered 200 without an access_token");
            }
            const tokens = {
                accessToken: body.access_token,
                // "If this is not given, the client should continue to use the old refresh token."
                refreshToken: typeof body.refresh_token === "string" ? body.refresh_token : refreshToken,
                expiry:
                    typeof body.expires_in_ms === "number" ? new Date(started + body.expires_in_ms) : undefined,
            };
            // Persist before the SDK uses them (the old refresh token dies once the new pair is used).
            this.tokensRefreshed(tokens);
            return tokens;
        }
        const matrixError = body && typeof body === "object" && typeof body.errcode === "string";
        if ((res.status === 401 || res.status === 403) && matrixError) {
            // The homeserver refused the refresh token: the session is over.
            throw new TokenRefreshLogoutError(new MatrixError(body, res.status));
        }
        // 429, 5xx, a proxy's page without a Matrix error…: transient, the session is kept.
        const what = matrixError ? `${body.errcode}` : "no Matrix error";
        throw new Error(`/refresh answered ${res.status} (${what})`);
    }

    /** The current client, or the reason there is none. */
    current() {
        if (this.ended) {
            throw failure(this.ended.soft ? "soft_logged_out" : "logged_out", `no session: ${this.ended.reason}`);
        }
        if (!this.client) throw failure("other", "no session: log in, register, restore or resume first");
        return this.client;
    }

    // --- calls ---

    async dispatch(method, params) {
        switch (method) {
            case "initialize":
                return this.initialize(params);
            case "login":
                return this.login(params);
            case "register":
                return this.register(params);
            case "restore":
                return this.restore(params);
            case "resume":
                return this.resume();
            case "whoami":
            case "sync":
            case "send": {
                const op = this.parseOp(method, params);
                return op();
            }
            case "parallel":
                return this.parallel(params);
            case "session": {
                if (!this.client || this.ended) return { access_token: null, refresh_token: null };
                return {
                    access_token: this.client.getAccessToken(),
                    refresh_token: this.client.getRefreshToken(),
                };
            }
            case "logout":
                return this.logout();
            case "shutdown":
                return {};
            default:
                throw new RpcError(METHOD_NOT_FOUND, `method not found: ${method}`);
        }
    }

    initialize(params) {
        const url = optStr(params, "homeserver_url");
        if (url) this.baseUrl = url;
        const dir = optStr(params, "state_dir");
        if (dir) this.stateDir = dir;
        const scenario = optStr(params, "scenario");
        if (scenario) this.scenario = scenario;
        if (params?.protocol !== 1) console.error(`driver: protocol ${params?.protocol}; speaking 1 anyway`);
        console.error(`driver: ${PACKAGE}@${SDK_VERSION}, scenario ${this.scenario}, homeserver ${this.baseUrl}`);
        return { name: "matrix-js-sdk", version: SDK_VERSION, capabilities: CAPABILITIES };
    }

    /** A client without a session, for login and registration. */
    anonymous() {
        if (!this.baseUrl) throw failure("other", "no homeserver URL");
        return createClient({ baseUrl: this.baseUrl });
    }

    async login(params) {
        const auth = optStr(params, "auth") ?? "legacy";
        const user = reqStr(params, "user");
        const deviceId = optStr(params, "device_id");
        if (auth === "oauth") return this.loginOAuth(user, deviceId);
        if (auth !== "legacy") throw failure("unsupported", `unknown auth ${JSON.stringify(auth)}`);
        const password = reqStr(params, "password");
        const refresh = optBool(params, "refresh_token") ?? false;
        const request = {
            type: "m.login.password",
            identifier: { type: "m.id.user", user },
            password,
            refresh_token: refresh,
        };
        if (deviceId) request.device_id = deviceId;
        const res = await this.anonymous().loginRequest(request);
        this.adopt({
            auth: "legacy",
            user_id: res.user_id,
            device_id: res.device_id,
            access_token: res.access_token,
            refresh_token: res.refresh_token ?? null,
        });
        return { user_id: res.user_id, device_id: res.device_id };
    }

    /**
     * OAuth 2.0 authorization-code login, headless, with the SDK's OAuth2 helpers (43.x):
     * discovery (getAuthMetadata), dynamic registration (OAuth2.registerClient), the authorization
     * URL with PKCE (generateAuthorizationCodeGrantUrl), and the code exchange
     * (completeAuthorizationCodeGrant). The "browser" part is ours: one GET of the authorization URL
     * with redirect: "manual", the code taken from the Location header.
     */
    async loginOAuth(user, deviceId) {
        if (sdkMajor !== "43") throw failure("unsupported", "OAuth login is only wired up for 43.x");
        const { OAuth2 } = sdk;
        const anon = this.anonymous();
        const metadata = await anon.getAuthMetadata();
        const clientId = await OAuth2.registerClient(metadata, {
            client_name: "Rotary matrix-js-sdk driver",
            client_uri: "http://127.0.0.1/",
            redirect_uris: [REDIRECT_URI],
            application_type: "native",
        });
        const oauth = new OAuth2(metadata, { clientId, deviceId });
        const state = randomUUID();
        const url = new URL(await oauth.generateAuthorizationCodeGrantUrl(state, REDIRECT_URI, "query"));
        // The SDK has no login_hint parameter; the app adds it (the mock server approves that user).
        url.searchParams.set("login_hint", user.startsWith("@") ? `mxid:${user}` : user);
        let res;
        try {
            res = await fetch(url, { redirect: "manual" });
        } catch (e) {
            throw new ConnectionError("authorization request failed", e);
        }
        const location = res.headers.get("location");
        if (!location) throw failure("other", `the authorization endpoint answered ${res.status} without a redirect`);
        const back = new URL(location, url);
        if (back.searchParams.get("state") !== state) throw failure("other", "the redirect's state does not match");
        const code = back.searchParams.get("code");
        if (!code) {
            throw failure("other", `the authorization was refused: ${back.searchParams.get("error") ?? "no code"}`);
        }
        const tokens = await oauth.completeAuthorizationCodeGrant(code, REDIRECT_URI);
        const session = {
            auth: "oauth",
            user_id: user.startsWith("@") ? user : undefined,
            device_id: oauth.context.deviceId,
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token ?? null,
            client_id: clientId,
            issuer: metadata.issuer,
        };
        this.adopt(session);
        if (!session.user_id) {
            // The user id is not part of the token response: ask the homeserver, through the SDK.
            const who = await this.client.whoami();
            this.session = { ...this.session, user_id: who.user_id };
            this.client.credentials.userId = who.user_id;
            this.persist();
        }
        return { user_id: this.session.user_id, device_id: this.session.device_id };
    }

    async register(params) {
        const user = reqStr(params, "user");
        const password = reqStr(params, "password");
        const refresh = optBool(params, "refresh_token") ?? false;
        // registerRequest (not register(), which always asks for a refresh token) so that the
        // protocol's flag is honoured. m.login.dummy is the only stage the server asks for.
        const res = await this.anonymous().registerRequest({
            username: user,
            password,
            auth: { type: "m.login.dummy" },
            refresh_token: refresh,
        });
        if (!res.access_token) throw failure("other", "the registration gave no access token");
        this.adopt({
            auth: "legacy",
            user_id: res.user_id,
            device_id: res.device_id,
            access_token: res.access_token,
            refresh_token: res.refresh_token ?? null,
        });
        return { user_id: res.user_id, device_id: res.device_id };
    }

    restore(params) {
        const s = field(params, "session");
        if (!s || typeof s !== "object") throw invalidParams("missing object param `session`");
        const auth = optStr(s, "auth") ?? "legacy";
        if (auth !== "legacy" && auth !== "oauth") throw failure("unsupported", `unknown auth ${auth}`);
        if (auth === "oauth" && sdkMajor !== "43") {
            throw failure("unsupported", "this driver refreshes OAuth sessions only with 43.x");
        }
        const session = {
            auth,
            user_id: reqStr(s, "user_id"),
            device_id: reqStr(s, "device_id"),
            access_token: reqStr(s, "access_token"),
            refresh_token: optStr(s, "refresh_token") ?? null,
        };
        // expires_in_ms: createClient has no option for the access token's expiry (the SDK learns
        // it only from its own refreshes), so it is not passed on.
        if (auth === "oauth") {
            session.client_id = reqStr(s, "client_id");
            session.issuer = optStr(s, "issuer");
        }
        this.adopt(session);
        return {};
    }

    resume() {
        const path = this.statePath();
        if (!path) throw failure("other", "no ROTARY_STATE_DIR");
        let saved;
        try {
            saved = JSON.parse(readFileSync(path, "utf8"));
        } catch (e) {
            throw failure("other", `no saved session: ${describe(e)}`);
        }
        if (!saved?.session) throw failure("other", "no saved session");
        if (saved.ended) {
            this.session = saved.session;
            this.ended = saved.ended;
            throw failure(saved.ended.soft ? "soft_logged_out" : "logged_out", `the saved session has ended: ${saved.ended.reason}`);
        }
        this.adopt(saved.session);
        return {};
    }

    /** A call that `parallel` can run, checked before anything starts: a function running it. */
    parseOp(method, params) {
        switch (method) {
            case "whoami":
                return async () => {
                    const who = await this.current().whoami();
                    return { user_id: who.user_id };
                };
            case "sync": {
                const timeout = optInt(params, "timeout_ms") ?? 0;
                const since = optStr(params, "since");
                return async () => {
                    const client = this.current();
                    const query = { timeout: String(timeout) };
                    if (since) query.since = since;
                    // Through the SDK's authenticated request path (token refresh included), as
                    // SyncApi does, without starting the client.
                    const res = await client.http.authedRequest(Method.Get, "/sync", query, undefined, {
                        localTimeoutMs: timeout + SYNC_BUFFER_MS,
                    });
                    return { next_batch: res.next_batch };
                };
            }
            case "send": {
                const roomId = reqStr(params, "room_id");
                const body = reqStr(params, "body");
                return async () => {
                    const res = await this.current().sendTextMessage(roomId, body);
                    return { event_id: res.event_id };
                };
            }
            default:
                throw invalidParams(`op must be whoami, sync or send, not ${JSON.stringify(method)}`);
        }
    }

    async parallel(params) {
        const count = optInt(params, "count");
        if (count === undefined) throw invalidParams("missing param `count`");
        if (count > 10000) throw invalidParams("count is at most 10000");
        const opName = reqStr(params, "op");
        const opParams = field(params, "params") ?? {};
        const op = this.parseOp(opName, opParams);
        const interval = optInt(params, "interval_ms") ?? 0;
        const tasks = Array.from({ length: count }, async (_, i) => {
            if (interval > 0 && i > 0) await sleep(i * interval);
            try {
                return { ok: true, result: await op() };
            } catch (e) {
                return { ok: false, error: this.toRpcError(e).toJSON() };
            }
        });
        return { results: await Promise.all(tasks) };
    }

    async logout() {
        const client = this.current();
        // 43.x OAuth sessions: revokes the tokens at the revocation endpoint; otherwise POST /logout.
        await client.logout();
        // "it is up to the caller to either reset or destroy the MatrixClient after this method
        // succeeds" (MatrixClient.logout): the app forgets the session.
        client.removeAllListeners();
        this.client = null;
        this.session = null;
        this.ended = { soft: false, reason: "logged out by the application" };
        const path = this.statePath();
        if (path) rmSync(path, { force: true });
        return {};
    }
}

// ----- the JSON-RPC loop ------------------------------------------------------------------------

const driver = new Driver();
let chain = Promise.resolve();
let shuttingDown = false;

async function handle(line) {
    if (shuttingDown || !line.trim()) return;
    let request;
    try {
        request = JSON.parse(line);
    } catch (e) {
        send({ jsonrpc: "2.0", id: null, error: { code: -32700, message: `parse error: ${e.message}` } });
        return;
    }
    if (!request || typeof request !== "object" || Array.isArray(request)) {
        send({ jsonrpc: "2.0", id: null, error: { code: -32600, message: "invalid request" } });
        return;
    }
    const { id, method } = request;
    if (typeof method !== "string") {
        send({ jsonrpc: "2.0", id: id ?? null, error: { code: -32600, message: "invalid request: need `method`" } });
        return;
    }
    if (id === undefined) {
        console.error(`driver: ignoring a notification from the harness: ${method}`);
        return;
    }
    const params = request.params ?? {};
    console.error(`driver: → ${method}`);
    let answer;
    try {
        const result = await driver.dispatch(method, params);
        answer = { jsonrpc: "2.0", id, result };
    } catch (e) {
        const error = driver.toRpcError(e);
        console.error(`driver: ${method} failed: ${error.message}`);
        answer = { jsonrpc: "2.0", id, error: error.toJSON() };
    }
    send(answer);
    if (method === "shutdown" && answer.result) {
        shuttingDown = true;
        // Pipes to the harness are written synchronously on Linux; exit at once (the SDK may hold
        // timers, e.g. a scheduler's retry).
        process.exit(0);
    }
}

process.on("unhandledRejection", (reason) => {
    console.error(`driver: unhandled rejection: ${describe(reason)}`);
});
process.on("uncaughtException", (err) => {
    console.error(`driver: uncaught exception: ${describe(err)}`);
});

const rl = createInterface({ input: process.stdin, terminal: false, crlfDelay: Infinity });
rl.on("line", (line) => {
    chain = chain.then(() => handle(line)).catch((e) => console.error(`driver: ${describe(e)}`));
});
rl.on("close", () => {
    chain.then(() => {
        console.error("driver: input closed; exiting");
        process.exit(0);
    });
});
