#!/usr/bin/env node
// Rotary driver for a MODEL of matrix-ios-sdk (not the SDK itself: it is Objective-C on Apple
// frameworks and cannot run on Linux). The SDK's decisions are in sdk-model.mjs, each citing
// matrix-org/matrix-ios-sdk @ 2529e7f. This file is the protocol (shared/PROTOCOL.md: JSON-RPC 2.0,
// one object per line on stdin/stdout) and the application around the SDK, modelled on Element iOS
// (element-hq/element-ios @ 917adc8e1d28), which supplies what the SDK leaves to the app: where
// credentials are persisted and when, and what a logout does.
//
//   node driver.mjs          (ROTARY_HOMESERVER_URL, ROTARY_STATE_DIR set by the harness)
//
// stdout carries nothing but protocol lines; every log goes to stderr.

import { readFileSync, writeFileSync, renameSync, mkdirSync, existsSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import {
    MXCredentials,
    MXRestClient,
    MXHTTPOperation,
    MXError,
    HTTPResponseError,
    URLError,
    ModelStop,
    CLIENT_TIMEOUT_MS,
    SDK_COMMIT,
    SDK_VERSION,
    defaultEnv,
    nowSecondsTimes1000,
    parseLoginResponse,
} from "./sdk-model.mjs";

export const ELEMENT_COMMIT = "917adc8e1d28ecc116110ac71c4a6d9d2f144714";

// ----- stdout is for the protocol only ----------------------------------------------------------

const protocolOut = process.stdout.write.bind(process.stdout);
for (const name of ["log", "info", "debug", "warn", "trace", "dir", "table"]) {
    console[name] = (...args) => console.error(...args);
}
process.stdout.write = (chunk, ...rest) => process.stderr.write(chunk, ...rest);

function send(message) {
    protocolOut(JSON.stringify(message) + "\n");
}
function notify(method, params) {
    send({ jsonrpc: "2.0", method, params });
}

const CAPABILITIES = ["login", "register", "restore", "resume", "whoami", "sync", "send", "parallel", "logout", "legacy-refresh"];
const NAME = "model of matrix-ios-sdk";
const VERSION = `${SDK_VERSION} @ ${SDK_COMMIT.slice(0, 7)}`;

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
const failure = (kind, message, extra = {}) => new RpcError(-32000, message, { kind, ...extra });
const invalidParams = (message) => new RpcError(-32602, message);

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
    if (v !== undefined && typeof v !== "string") throw invalidParams(`param \`${name}\` must be a string`);
    return v;
}
function optInt(params, name) {
    const v = field(params, name);
    if (v !== undefined && (!Number.isInteger(v) || v < 0)) throw invalidParams(`param \`${name}\` must be a non-negative integer`);
    return v;
}
function optBool(params, name) {
    const v = field(params, name);
    if (v !== undefined && typeof v !== "boolean") throw invalidParams(`param \`${name}\` must be a boolean`);
    return v;
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ----- the application (Element iOS) ------------------------------------------------------------

/**
 * Element's account store: MXKAccountManager's accounts file (one record per account, MXKAccountData
 * encodeWithCoder:/initWithCoder:). Here JSON in ROTARY_STATE_DIR/accounts.json, written atomically
 * like `writeToURL:atomically:YES` (MXKAccountManager.m:readAndWriteCredentials:785).
 */
class AccountFile {
    constructor(dir) {
        this.path = dir ? join(dir, "accounts.json") : null;
        this.dir = dir;
    }
    read() {
        if (!this.path || !existsSync(this.path)) return [];
        const list = JSON.parse(readFileSync(this.path, "utf8"));
        return Array.isArray(list) ? list : [];
    }
    write(records) {
        if (!this.path) return;
        mkdirSync(this.dir, { recursive: true });
        writeFileSync(`${this.path}.tmp`, JSON.stringify(records));
        renameSync(`${this.path}.tmp`, this.path);
    }
}

/** MXKAccountData.m:encodeWithCoder::90-143 — expiry only when non-zero, refresh token only when set. */
function encodeAccount(credentials, isSoftLogout) {
    const r = { homeserverurl: credentials.homeServer, userid: credentials.userId, accesstoken: credentials.accessToken };
    if (credentials.accessTokenExpiresAt) r.accessTokenExpiresAt = credentials.accessTokenExpiresAt.toString(); // :95-97 (int64; kept exact)
    if (credentials.refreshToken) r.refreshToken = credentials.refreshToken; // :98-100
    if (credentials.deviceId) r.deviceId = credentials.deviceId; // :103-106
    r.isSoftLogout = isSoftLogout; // :143
    return r;
}

/** MXKAccountData.m:initWithCoder::21-88 — an absent expiry decodes as 0. */
function decodeAccount(r, { observe }) {
    const c = MXCredentials.withHomeServer(r.homeserverurl ?? null, r.userid ?? null, r.accesstoken ?? null, { observe });
    c.accessTokenExpiresAt = r.accessTokenExpiresAt ? BigInt.asUintN(64, BigInt(r.accessTokenExpiresAt)) : 0n; // :38 decodeInt64
    c.refreshToken = r.refreshToken ?? null; // :39
    c.deviceId = r.deviceId ?? null; // :42
    return c;
}

class App {
    constructor() {
        this.env = defaultEnv();
        this.env.log = (m) => console.error(`driver: ${m}`);
        this.baseUrl = process.env.ROTARY_HOMESERVER_URL || undefined;
        this.store = new AccountFile(process.env.ROTARY_STATE_DIR || undefined);
        this.scenario = process.env.ROTARY_SCENARIO || undefined;
        // MXSDKOptions.m:54 authEnableRefreshTokens = NO by default; Element ships it off
        // (Config/BuildSettings.swift:385, applied in CommonConfiguration.swift:81). The protocol's
        // `refresh_token` flag of login/register sets it, as an app that enables refresh would.
        // deviceName: [UIDevice currentDevice].name (MXRestClient.m:1048).
        this.options = { authEnableRefreshTokens: false, deviceName: "iPhone" };
        /** The MXKAccount: {credentials, restClient, isSoftLogout} (one account, as in the harness). */
        this.account = null;
        /** Set once the app has been told the session ended: {soft, reason}. */
        this.ended = null;
        this.reported = { access_token: undefined, refresh_token: undefined };
    }

    // --- session_changed: whenever the tokens the SDK holds differ from the last ones reported ---

    reportTokens() {
        const c = this.account?.credentials;
        if (!c) return;
        if (c.accessToken === this.reported.access_token && c.refreshToken === this.reported.refresh_token) return;
        this.reported = { access_token: c.accessToken, refresh_token: c.refreshToken };
        notify("session_changed", { ...this.reported });
    }

    // --- MXKAccountManager ---

    /** MXKAccountManager.m:saveAccounts:101 — the in-memory accounts, encoded. */
    saveAccounts() {
        this.store.write(this.account ? [encodeAccount(this.account.credentials, this.account.isSoftLogout)] : []);
    }

    /**
     * MXKAccountManager.m:readAndWriteCredentials::737-795, the persistTokenDataHandler Element gives
     * the SDK (MXKAccount.m:prepareRESTClient:1791-1792): decode every account under the file lock,
     * let the SDK look and change, write the decoded records back if it says it did.
     */
    async readAndWriteCredentials(handler) {
        const records = this.store.read();
        // Decoded credentials observe the token notification too until they are freed; the SDK
        // overwrites their fields right after posting it (MXRestClient.m:401-403), so not observing
        // gives the same result.
        const decoded = records.map((r) => decodeAccount(r, { observe: false }));
        const didUpdate = await handler(decoded);
        if (didUpdate) {
            this.store.write(records.map((r, i) => encodeAccount(decoded[i], r.isSoftLogout === true)));
        }
        // The driver's instrumentation, not Element's: the SDK's in-memory credentials may now hold
        // new tokens (refreshed, or adopted from the file).
        this.reportTokens();
    }

    /** MXKAccount.m:prepareRESTClient:1762-1797. */
    prepareRESTClient(credentials, isSoftLogout = false) {
        if (this.account) {
            this.account.restClient.close();
            this.account.credentials.release();
        }
        const restClient = new MXRestClient(credentials, {
            persistTokenDataHandler: (h) => this.readAndWriteCredentials(h),
            unauthenticatedHandler: (e, soft, rt) => this.handleUnauthenticated(e, soft, rt),
            options: this.options,
            env: this.env,
        });
        this.account = { credentials, restClient, isSoftLogout };
        this.ended = null;
    }

    /** SessionCreator.swift:createSession:30-57 → MXKAccountManager.m:addAccount:andOpenSession::127-145. */
    addAccount(credentials) {
        this.prepareRESTClient(credentials);
        this.saveAccounts(); // :132
        this.reportTokens();
    }

    /**
     * MXKAccount.m:handleUnauthenticatedWithError:isSoftLogout:isRefreshTokenAuth:andCompletion::1799-1815:
     * soft → MXKAccountManager softLogout (MXKAccountManager.m:227-233 → MXKAccount.m:softLogout:1053-1066:
     * flag saved, session closed, credentials kept for the re-login screen); hard →
     * removeAccount:sendLogoutRequest:NO (MXKAccountManager.m:152-190: local logout, account deleted
     * from the file). Either way Element stops making requests.
     */
    async handleUnauthenticated(mxError, isSoftLogout, isRefreshTokenAuth) {
        console.error(`driver: unauthenticatedHandler(${mxError?.errcode}, soft ${isSoftLogout}, refresh-token auth ${isRefreshTokenAuth})`);
        if (this.account && this.ended?.soft !== false) {
            if (isSoftLogout) {
                if (!this.account.isSoftLogout) {
                    this.account.isSoftLogout = true;
                    this.saveAccounts();
                }
                this.ended = { soft: true, reason: `soft logout (${mxError?.errcode})` };
            } else {
                const credentials = this.account.credentials;
                this.account = { credentials, restClient: this.account.restClient, isSoftLogout: false, removed: true };
                this.store.write([]);
                this.ended = { soft: false, reason: `logged out (${mxError?.errcode})` };
            }
        }
        // kMXKAccountManagerDidSoftlogoutAccountNotification / …DidRemoveAccountNotification: the UI
        // learns it, every time the SDK calls the handler.
        notify("logged_out", { soft_logout: isSoftLogout });
    }

    current() {
        if (this.ended) {
            throw failure(this.ended.soft ? "soft_logged_out" : "logged_out", `no session: ${this.ended.reason}`);
        }
        if (!this.account) throw failure("other", "no session: log in, register, restore or resume first");
        return this.account.restClient;
    }

    /** An MXRestClient without credentials, for login and registration (initWithHomeServer:…:172-178). */
    anonymous() {
        if (!this.baseUrl) throw failure("other", "no homeserver URL: set ROTARY_HOMESERVER_URL or pass it to initialize");
        const c = new MXCredentials();
        c.homeServer = this.baseUrl;
        return new MXRestClient(c, { options: this.options, env: this.env });
    }

    // --- error mapping ---

    toRpcError(e) {
        if (e instanceof RpcError) return e;
        const extra = {};
        if (typeof e?.status === "number" && e.status > 0) extra.status = e.status;
        if (e instanceof MXError && e.errcode) extra.errcode = e.errcode;
        if (this.ended) {
            // The SDK told the app the session ended while this call ran.
            return failure(this.ended.soft ? "soft_logged_out" : "logged_out", `${this.ended.reason}: ${e?.message}`, extra);
        }
        if (e instanceof MXError) {
            // A Matrix error the SDK made itself (no HTTP status), e.g. "Token refresh failed".
            if (e.status === undefined) return failure("other", `${e.errcode}: ${e.error}`, extra);
            return failure("http", e.message, extra);
        }
        if (e instanceof HTTPResponseError) return failure("http", e.message, extra);
        if (e instanceof URLError) return failure("network", `${e.code}: ${e.message}`, extra);
        if (e instanceof ModelStop) return failure("other", `model stop: ${e.message}`);
        return failure("other", `${e?.name ?? "Error"}: ${e?.message ?? e}`);
    }

    // --- calls ---

    initialize(params) {
        const url = optStr(params, "homeserver_url");
        if (url) this.baseUrl = url;
        const dir = optStr(params, "state_dir");
        if (dir) this.store = new AccountFile(dir);
        if (params?.protocol !== 1) console.error(`driver: protocol ${params?.protocol}; speaking 1 anyway`);
        console.error(`driver: model of matrix-ios-sdk ${SDK_VERSION} @ ${SDK_COMMIT}, Element iOS @ ${ELEMENT_COMMIT}; scenario ${optStr(params, "scenario") ?? this.scenario}`);
        return { name: NAME, version: VERSION, capabilities: CAPABILITIES };
    }

    /**
     * Element's LoginWizard.swift:login:45-75 (LoginPasswordParameters: m.login.password, an m.id.user
     * identifier, initial_device_display_name, device_id) → MXRestClient login: → MXCredentials
     * initWithLoginResponse (MXRestClient.m:889-894) → SessionCreator → addAccount.
     */
    async login(params) {
        if ((optStr(params, "auth") ?? "legacy") !== "legacy") throw failure("unsupported", "the SDK has no OAuth 2.0 login");
        const user = reqStr(params, "user");
        const password = reqStr(params, "password");
        const deviceId = optStr(params, "device_id");
        this.options.authEnableRefreshTokens = optBool(params, "refresh_token") ?? false;
        const anon = this.anonymous();
        const parameters = {
            type: "m.login.password",
            identifier: { type: "m.id.user", user },
            password,
            initial_device_display_name: this.options.deviceName,
        };
        if (deviceId) parameters.device_id = deviceId;
        const json = await anon.login(parameters);
        const credentials = MXCredentials.fromLoginResponse(this.env, parseLoginResponse(this.env, json), anon.credentials);
        this.addAccount(credentials);
        return { user_id: credentials.userId, device_id: credentials.deviceId };
    }

    /** MXRestClient.m:registerWithLoginType:kMXLoginFlowTypeDummy:username:password: (:720-784). */
    async register(params) {
        const user = reqStr(params, "user");
        const password = reqStr(params, "password");
        this.options.authEnableRefreshTokens = optBool(params, "refresh_token") ?? false;
        const credentials = await this.anonymous().registerWithLoginType("m.login.dummy", user, password);
        if (!credentials.accessToken) throw failure("other", "the registration gave no access token");
        this.addAccount(credentials);
        return { user_id: credentials.userId, device_id: credentials.deviceId };
    }

    /**
     * The app hands the SDK a session it holds: MXCredentials built as MXKAccountData.m:initWithCoder:
     * builds them (initWithHomeServer + fields), then addAccount. A known expires_in_ms becomes an
     * expiry the SDK's way (whole seconds now + ms, MXCredentials.m:50); none = 0 (unknown).
     */
    restore(params) {
        const s = field(params, "session");
        if (!s || typeof s !== "object") throw invalidParams("missing object param `session`");
        if ((optStr(s, "auth") ?? "legacy") !== "legacy") throw failure("unsupported", "the SDK has no OAuth 2.0 refresh");
        if (!this.baseUrl) throw failure("other", "no homeserver URL");
        const c = MXCredentials.withHomeServer(this.baseUrl, reqStr(s, "user_id"), reqStr(s, "access_token"));
        c.deviceId = reqStr(s, "device_id");
        c.refreshToken = optStr(s, "refresh_token") ?? null;
        const expiresIn = optInt(s, "expires_in_ms");
        c.accessTokenExpiresAt = expiresIn === undefined ? 0n : BigInt.asUintN(64, nowSecondsTimes1000(this.env) + BigInt(expiresIn));
        this.addAccount(c);
        return {};
    }

    /**
     * MXKAccountManager.m:loadAccounts:613 + prepareSessionForActiveAccounts:84-96: the accounts file
     * is decoded; an account flagged soft-logged-out gets no session (the re-login screen instead).
     */
    resume() {
        let records;
        try {
            records = this.store.read();
        } catch (e) {
            throw failure("other", `the accounts file cannot be read: ${e.message}`);
        }
        const r = records[0];
        if (!r) throw failure("logged_out", "no account in the accounts file (logged out, or never logged in)");
        const credentials = decodeAccount(r, { observe: true });
        this.prepareRESTClient(credentials, r.isSoftLogout === true);
        this.reportTokens();
        if (r.isSoftLogout === true) {
            this.ended = { soft: true, reason: "the saved account is soft-logged-out" };
            throw failure("soft_logged_out", "the saved account is soft-logged-out: Element shows the re-login screen");
        }
        return {};
    }

    /** One call that `parallel` can run, checked before anything starts. */
    parseOp(method, params) {
        switch (method) {
            case "whoami":
                return async () => ({ user_id: await this.current().whoami() });
            case "sync": {
                const timeout = optInt(params, "timeout_ms") ?? 0;
                const since = optStr(params, "since");
                // MXSession.m:serverSyncWithServerTimeout:…:1516: one syncFromToken with the client
                // timeout MXSession uses (CLIENT_TIMEOUT_MS). MXSession's own loop is not run.
                return async () => {
                    const json = await this.current().syncFromToken(since, timeout, CLIENT_TIMEOUT_MS);
                    return { next_batch: json?.next_batch };
                };
            }
            case "send": {
                const roomId = reqStr(params, "room_id");
                const body = reqStr(params, "body");
                // MXRoom.m:_sendEventOfType:…:782-839 ends in this call; a failure only marks the
                // local echo failed (:580): no automatic resend.
                return async () => ({ event_id: await this.current().sendTextMessageToRoom(roomId, body) });
            }
            default:
                throw invalidParams(`op must be whoami, sync or send, not ${JSON.stringify(method)}`);
        }
    }

    async parallel(params) {
        const count = optInt(params, "count");
        if (count === undefined) throw invalidParams("missing param `count`");
        if (count > 10000) throw invalidParams("count is at most 10000");
        const op = this.parseOp(reqStr(params, "op"), field(params, "params") ?? {});
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

    /**
     * Element's MXKAccount.m:logout::966-1010: the server request without retries (:1009
     * maxNumberOfTries = 1), then the session is closed and the account removed whether the request
     * succeeded or not (:997-1005; MXKAccountManager.m:152-190).
     */
    async logout() {
        const client = this.current();
        const operation = new MXHTTPOperation(this.env);
        operation.maxNumberOfTries = 1;
        try {
            await client.logout(operation);
        } catch (e) {
            console.error(`driver: the logout request failed (Element closes the session anyway): ${e.message}`);
        }
        this.account.credentials.release();
        this.account = null;
        this.store.write([]);
        this.ended = { soft: false, reason: "logged out by the application" };
        return {};
    }

    session() {
        // After a hard logout Element holds nothing; after a soft logout the account keeps its
        // credentials (MXKAccount.m:softLogout does not clear them).
        if (!this.account || this.account.removed) return { access_token: null, refresh_token: null };
        const c = this.account.credentials;
        return { access_token: c.accessToken ?? null, refresh_token: c.refreshToken ?? null };
    }

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
            case "send":
                return this.parseOp(method, params)();
            case "parallel":
                return this.parallel(params);
            case "session":
                return this.session();
            case "logout":
                return this.logout();
            case "shutdown":
                return {};
            default:
                throw new RpcError(-32601, `method not found: ${method}`);
        }
    }
}

// ----- the JSON-RPC loop ------------------------------------------------------------------------

const app = new App();
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
        answer = { jsonrpc: "2.0", id, result: await app.dispatch(method, params) };
    } catch (e) {
        const error = app.toRpcError(e);
        console.error(`driver: ${method} failed: ${error.message}`);
        answer = { jsonrpc: "2.0", id, error: error.toJSON() };
    }
    send(answer);
    if (method === "shutdown" && answer.result) {
        shuttingDown = true;
        process.exit(0);
    }
}

process.on("unhandledRejection", (reason) => console.error(`driver: unhandled rejection: ${reason?.stack ?? reason}`));
process.on("uncaughtException", (err) => console.error(`driver: uncaught exception: ${err?.stack ?? err}`));

const rl = createInterface({ input: process.stdin, terminal: false, crlfDelay: Infinity });
rl.on("line", (line) => {
    chain = chain.then(() => handle(line)).catch((e) => console.error(`driver: ${e?.stack ?? e}`));
});
rl.on("close", () => {
    chain.then(() => {
        console.error("driver: input closed; exiting");
        process.exit(0);
    });
});
