// A model of matrix-ios-sdk's access-token handling, in Node.js: MXHTTPClient (request path, 401
// handling, retries), MXRestClient (login/register, the token provider, /refresh), MXCredentials
// (fields, expiry, the token-update notification). It is a MODEL, not the SDK: the SDK is
// Objective-C on Apple frameworks and cannot run here. Every decision copies the source at
//
//     matrix-org/matrix-ios-sdk @ 2529e7feb9ef4b76c5b7cfdc0a3aa617197762b0
//     (branch develop, 2024-12-10: release v0.27.17 (75fe517) plus the version bump)
//
// and says where: `File.m:function:line` (line numbers at that commit). The application's part
// (Element iOS: persistence, logout) is in driver.mjs. What the model had to choose where the
// source leaves room is listed in README.md, "Readings".

import { randomUUID } from "node:crypto";

export const SDK_COMMIT = "2529e7feb9ef4b76c5b7cfdc0a3aa617197762b0";
export const SDK_VERSION = "0.27.17";

// ----- constants (all from the pinned source) ---------------------------------------------------

// MXRestClient.m:108-113 PREEMPT_REFRESH_EXPIRATION_INTERVAL: refresh when less than 60 s are
// left. A uint64 subtraction in the source (accessTokenExpiresAt is uint64_t), hence a BigInt.
export const PREEMPT_REFRESH_EXPIRATION_INTERVAL = 60000n;
// MXHTTPClient.m:35 MXHTTPCLIENT_RATE_LIMIT_MAX_MS, :40 MXHTTPCLIENT_RETRY_JITTER_MS.
export const RATE_LIMIT_MAX_MS = 20000;
export const RETRY_JITTER_MS = 3000;
// MXHTTPOperation.m:28 MXHTTPOPERATION_DEFAULT_MAX_RETRIES, :33 MXHTTPOPERATION_DEFAULT_MAX_TIME_MS.
export const DEFAULT_MAX_TRIES = 4;
export const DEFAULT_MAX_RETRIES_TIME_MS = 180000;
// MXHTTPClient.m:328-332: a timeout of -1 leaves NSURLRequest's default timeoutInterval, 60 s
// (AFHTTPRequestSerializer's default too).
export const DEFAULT_TIMEOUT_S = 60;
// MXSession.m:89 CLIENT_TIMEOUT_MS, the client-side timeout MXSession gives every /sync.
export const CLIENT_TIMEOUT_MS = 120000;
// MXRestClient.m:42-43 kMXAPIPrefixPathR0 / kMXAPIPrefixPathV1; :199 apiPathPrefix = r0.
export const API_PREFIX_R0 = "_matrix/client/r0";
export const API_PREFIX_V1 = "_matrix/client/v1";

const U64 = (v) => BigInt.asUintN(64, v);

/** `(uint64_t)[NSDate date].timeIntervalSince1970 * 1000`: the cast binds first, so whole seconds. */
export function nowSecondsTimes1000(env) {
    return BigInt(Math.floor(env.now() / 1000)) * 1000n;
}

/**
 * `now_ms < (accessTokenExpiresAt - PREEMPT_REFRESH_EXPIRATION_INTERVAL)` exactly as compiled: the
 * subtraction is uint64 (it wraps below 0), the comparison converts it to double.
 * MXRestClient.m:tokenProviderHandler:300 and :startTokenRefreshWithLogId:371.
 */
export function beforePreemptiveDeadline(env, expiresAt) {
    return env.now() < Number(U64(expiresAt - PREEMPT_REFRESH_EXPIRATION_INTERVAL));
}

// ----- JSON model helpers (MXJSONModel.h:90-123) ------------------------------------------------

/** MXJSONModelSetString: set when the value is a string; anything else non-nil is logged and ignored. */
function jsonString(env, value, what) {
    if (value === undefined || value === null) return null;
    if (typeof value === "string") return value;
    env.log(`[MXJSONModel] ${what}: expected a string, got ${JSON.stringify(value)}`);
    return null;
}

/** MXJSONModelSetUInt64: an NSNumber's unsignedLongLongValue (truncated, wrapped); else 0. */
function jsonUInt64(env, value, what) {
    if (value === undefined || value === null) return 0n;
    // NSJSONSerialization turns true/false into NSNumbers too.
    if (typeof value === "boolean") return value ? 1n : 0n;
    if (typeof value === "number" && Number.isFinite(value)) return U64(BigInt(Math.trunc(value)));
    env.log(`[MXJSONModel] ${what}: expected a number, got ${JSON.stringify(value)}`);
    return 0n;
}

const isDict = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

// ----- errors -----------------------------------------------------------------------------------

/** An NSError of kMXNSErrorDomain (MXError.m:133-157): a Matrix error, from the server or the SDK. */
export class MXError extends Error {
    constructor(errcode, error, { status, userInfo } = {}) {
        super(`${errcode} - ${error}`);
        this.name = "MXError";
        this.errcode = errcode;
        this.error = error;
        /** httpResponse.statusCode; undefined for errors the SDK makes itself. */
        this.status = status;
        /** The JSON body minus errcode/error (MXHTTPClient.m:mxErrorFromJSON:898-914). */
        this.userInfo = userInfo ?? {};
    }
}

/** An NSError with an HTTP response but no Matrix error (AFNetworking's, plus the JSON if any). */
export class HTTPResponseError extends Error {
    constructor(status, message, responseData) {
        super(message);
        this.name = "HTTPResponseError";
        this.status = status;
        /** MXHTTPClientErrorResponseDataKey (MXHTTPClient.m:475-491): a JSON body without errcode. */
        this.responseData = responseData;
    }
}

/** An NSURLErrorDomain error: no HTTP response at all (timeout, reset, refused, not HTTP). */
export class URLError extends Error {
    constructor(code, message, cause) {
        super(message, { cause });
        this.name = "URLError";
        /** "timed-out" (-1001), "connection-lost" (-1005), "cannot-connect" (-1004),
         *  "bad-server-response" (-1011), "cannot-find-host" (-1003), "cancelled" (-999). */
        this.code = code;
    }
}

/** The model cannot go on the way the SDK would (e.g. the SDK never calls a completion block). */
export class ModelStop extends Error {
    constructor(message) {
        super(message);
        this.name = "ModelStop";
    }
}

// ----- MXCredentials and the token-update notification ------------------------------------------

/** The objects observing MXCredentialsUpdateTokensNotification (MXCredentials.m:176-184). */
const tokenObservers = new Set();

/** MXCredentials (MXCredentials.h). `accessTokenExpiresAt` is a uint64 in ms (0 = unknown). */
export class MXCredentials {
    constructor() {
        this.homeServer = null;
        this.userId = null;
        this.accessToken = null;
        this.accessTokenExpiresAt = 0n;
        this.refreshToken = null;
        this.deviceId = null;
    }

    /** MXCredentials.m:initWithHomeServer:userId:accessToken::28-40 — registers as an observer. */
    static withHomeServer(homeServer, userId, accessToken, { observe = true } = {}) {
        const c = new MXCredentials();
        c.homeServer = homeServer;
        c.userId = userId;
        c.accessToken = accessToken;
        if (observe) tokenObservers.add(c);
        return c;
    }

    /**
     * MXCredentials.m:initWithLoginResponse:andDefaultCredentials::42-101. The expiry is "now" in
     * whole seconds plus expires_in_ms (:50), so a response without expires_in_ms gives an expiry
     * of *now* — not "unknown" (0).
     */
    static fromLoginResponse(env, loginResponse, defaults) {
        const c = new MXCredentials();
        c.userId = loginResponse.userId;
        c.accessToken = loginResponse.accessToken;
        c.accessTokenExpiresAt = U64(nowSecondsTimes1000(env) + loginResponse.expiresInMs);
        c.refreshToken = loginResponse.refreshToken;
        c.deviceId = loginResponse.deviceId;
        // :56-63: well_known's base_url first, else the client's own homeserver.
        c.homeServer = loginResponse.wellKnownBaseUrl ?? defaults?.homeServer ?? null;
        tokenObservers.add(c);
        return c;
    }

    /** -dealloc (:105-108) unregisters. */
    release() {
        tokenObservers.delete(this);
    }

    /** MXCredentials.m:handleRestClientWillRefreshTokensNotification::186-199. */
    handleUpdateTokens(tokenData) {
        if (
            tokenData.userId && this.userId && this.userId === tokenData.userId &&
            tokenData.homeserver && this.homeServer && tokenData.homeserver === this.homeServer
        ) {
            // :193 a refresh response without refresh_token keeps the old one *in memory*.
            if (tokenData.refreshToken) this.refreshToken = tokenData.refreshToken;
            this.accessToken = tokenData.accessToken;
            this.accessTokenExpiresAt = tokenData.accessTokenExpiresAt;
        }
    }
}

/** [NSNotificationCenter postNotificationName:MXCredentialsUpdateTokensNotification …]: synchronous. */
export function postUpdateTokens(tokenData) {
    for (const c of tokenObservers) c.handleUpdateTokens(tokenData);
}

/** MXLoginResponse (MXJSONModels.m:233-260). */
export function parseLoginResponse(env, json) {
    const j = isDict(json) ? json : {};
    return {
        homeserver: jsonString(env, j.home_server, "home_server"),
        userId: jsonString(env, j.user_id, "user_id"),
        accessToken: jsonString(env, j.access_token, "access_token"),
        expiresInMs: jsonUInt64(env, j.expires_in_ms, "expires_in_ms"),
        refreshToken: jsonString(env, j.refresh_token, "refresh_token"),
        deviceId: jsonString(env, j.device_id, "device_id"),
        wellKnownBaseUrl: isDict(j.well_known) && isDict(j.well_known["m.homeserver"])
            ? jsonString(env, j.well_known["m.homeserver"].base_url, "well_known base_url")
            : null,
    };
}

/** MXRefreshResponse (MXRefreshResponse.m:modelFromJSON::21-33); nil for a nil/non-object JSON. */
function parseRefreshResponse(env, json) {
    if (!isDict(json)) return null; // MXJSONModelSetMXJSONModel needs an NSDictionary
    return {
        accessToken: jsonString(env, json.access_token, "access_token"),
        expiresInMs: jsonUInt64(env, json.expires_in_ms, "expires_in_ms"),
        refreshToken: jsonString(env, json.refresh_token, "refresh_token"),
    };
}

// ----- MXHTTPOperation --------------------------------------------------------------------------

/** MXHTTPOperation.m:init:45-57 — one per API call, shared by its retries and its 401 retry. */
export class MXHTTPOperation {
    constructor(env) {
        this.env = env;
        this.creationDate = env.now();
        this.numberOfTries = 0;
        this.maxNumberOfTries = DEFAULT_MAX_TRIES;
        this.maxRetriesTime = DEFAULT_MAX_RETRIES_TIME_MS;
    }
    /** MXHTTPOperation.m:age:69-72 (NSUInteger ms). */
    age() {
        return Math.trunc(this.env.now() - this.creationDate);
    }
}

// ----- MXHTTPClient -----------------------------------------------------------------------------

const JSON_TYPES = new Set(["application/json", "text/json", "text/javascript"]); // AFJSONResponseSerializer
const PARAMS_IN_URI = new Set(["GET", "HEAD", "DELETE"]); // AFHTTPRequestSerializer.HTTPMethodsEncodingParametersInURI

export class MXHTTPClient {
    /** MXHTTPClient.m:initWithBaseURL:authenticated:andOnUnrecognizedCertificateBlock::108-139. */
    constructor(baseURL, authenticated, env) {
        this.baseURL = baseURL;
        this.isAuthenticatedClient = authenticated;
        this.env = env;
        /** MXHTTPClient.h: (NSError) → BOOL "should the token be refreshed". */
        this.tokenValidationResponseHandler = null;
        /** MXHTTPClient.h: (NSError|nil) → access token (async). */
        this.tokenProviderHandler = null;
    }

    /**
     * MXHTTPClient.m:requestWithMethod:path:parameters:needsAuthentication:data:headers:timeout:…:202-283.
     * `operation` is the MXHTTPOperation the ObjC method returns; callers that change it (Element's
     * logout sets maxNumberOfTries = 1 right after the call) pass it in already changed.
     */
    async request(method, path, { parameters, data, headers, timeoutS = -1, needsAuthentication, operation } = {}) {
        const op = operation ?? new MXHTTPOperation(this.env);
        const auth = needsAuthentication ?? this.isAuthenticatedClient;
        const attempt = (token) => this.tryRequest(op, method, path, parameters, data, headers, token, timeoutS);
        // :215-228 unauthenticated: straight to tryRequest, no token.
        if (!this.isAuthenticatedClient || !auth) return attempt(null);
        // :230-232 "Before each authenticated request verify access token is valid."
        const accessToken = await this.tokenProviderHandler(null);
        try {
            return await attempt(accessToken);
        } catch (error) {
            // :242-244 an invalid-token response (M_UNKNOWN_TOKEN) asks the provider again, with the error…
            if (error && this.tokenValidationResponseHandler(error) && this.tokenProviderHandler) {
                const retryAccessToken = await this.tokenProviderHandler(error);
                // :260-270 …and retries ONCE; a second 401 goes to the caller (the plain `failure`).
                return attempt(retryAccessToken);
            }
            throw error;
        }
    }

    /** MXHTTPClient.m:tryRequest:…:286-629. Resolves with the JSON response (may be null). */
    async tryRequest(op, method, path, parameters, data, headers, accessToken, timeoutS) {
        for (;;) {
            op.numberOfTries++; // :341
            const started = this.env.now();
            const r = await this.transport(method, path, parameters, data, headers, accessToken, timeoutS);
            const status = r.response ? r.response.status : 0;
            this.env.log(`[MXHTTPClient] ${method} ${path} completed in ${this.env.now() - started}ms: ${r.error ? `${status} ${r.error.message}` : status}`);
            if (!r.error) return r.json; // :367-381
            let error = r.error;
            if (r.response) {
                // :386-493 a response arrived: never retried, except M_LIMIT_EXCEEDED below.
                if (r.json) {
                    if (r.json.errcode !== undefined || r.json.error !== undefined) {
                        // :395-399 a Matrix error (errcode or error present).
                        error = mxErrorFromJSON(r.json, status);
                        if (error.errcode === "M_LIMIT_EXCEEDED") {
                            // :410-449 wait retry_after_ms and try again, while the operation is
                            // younger than 20 s and the wait is under 20 s; otherwise give up.
                            if (op.age() < RATE_LIMIT_MAX_MS) {
                                const retryAfter = r.json.retry_after_ms;
                                if (retryAfter !== undefined && retryAfter !== null) {
                                    const delay = intValue(retryAfter);
                                    if (delay < RATE_LIMIT_MAX_MS) {
                                        this.env.log(`[MXHTTPClient] rate limited; wait for ${delay} ms`);
                                        await this.env.sleep(Math.max(0, delay));
                                        continue;
                                    }
                                }
                                this.env.log("[MXHTTPClient] Giving up rate limited request");
                            } else {
                                this.env.log("[MXHTTPClient] Giving up rate limited request: spent too long retrying.");
                            }
                        }
                    } else {
                        // :475-491 JSON without errcode (e.g. a UIA 401): reported in userInfo.
                        error = new HTTPResponseError(status, error.message, r.json);
                    }
                }
                throw error;
            }
            // :494-501 no response (network error): retried while tries < 4 and age < 3 min, unless
            // cancelled or the host does not exist. (`response.statusCode` is 0 here, so the
            // 400/401/403 exclusions never apply.)
            if (
                op.numberOfTries < op.maxNumberOfTries &&
                op.age() < op.maxRetriesTime &&
                error.code !== "cancelled" &&
                error.code !== "cannot-find-host"
            ) {
                // :504-527 the device is taken as reachable (AFNetworkReachabilityManager.isReachable
                // on a connected device): "simple retry later" after timeForRetry.
                const wait = MXHTTPClient.timeForRetry(op, this.env);
                this.env.log(`[MXHTTPClient] Retry request in ${wait} ms. Try #${op.numberOfTries + 1}/${op.maxNumberOfTries}`);
                await this.env.sleep(wait);
                continue;
            }
            throw error;
        }
    }

    /** MXHTTPClient.m:timeForRetry::631-637: 2 s, 4 s, 8 s … plus 0–3 s of jitter. */
    static timeForRetry(op, env) {
        const jitter = Math.floor(env.random() * RETRY_JITTER_MS); // arc4random_uniform(3000)
        return (2 << (op.numberOfTries - 1)) * 1000 + jitter;
    }

    /**
     * One HTTP exchange as NSURLSession + AFNetworking 4.0 (MatrixSDK.podspec: `AFNetworking ~> 4.0.0`)
     * present it: {response, json, error}. AFJSONResponseSerializer responseObjectForResponse:data:error:
     * — a status outside 200–299 is an error but its JSON body is still parsed; a body whose MIME type
     * is not JSON is an error without JSON; an empty body is nil.
     */
    async transport(method, path, parameters, data, headers, accessToken, timeoutS) {
        // :314 [NSURL URLWithString:path relativeToURL:baseURL]
        const url = new URL(path, this.baseURL);
        const h = { "Accept-Language": "en;q=1" };
        // :305-312 Bearer header when there is a token, else none.
        if (accessToken) h.Authorization = `Bearer ${accessToken}`;
        let body;
        if (parameters) {
            if (PARAMS_IN_URI.has(method)) {
                for (const [k, v] of Object.entries(parameters)) url.searchParams.set(k, String(v));
            } else {
                // AFJSONRequestSerializer (requestParametersInJSON = YES, :120-121)
                body = JSON.stringify(parameters);
                h["Content-Type"] = "application/json";
            }
        }
        if (data !== undefined && data !== null) {
            // :318-326 raw body plus the given headers
            body = data;
            Object.assign(h, headers ?? {});
        }
        const timeoutMs = (timeoutS === -1 ? DEFAULT_TIMEOUT_S : timeoutS) * 1000;
        let res;
        try {
            res = await this.env.fetch(url, { method, headers: h, body, signal: AbortSignal.timeout(timeoutMs) });
        } catch (e) {
            return { response: null, json: null, error: urlErrorFrom(e) };
        }
        let bytes;
        try {
            bytes = Buffer.from(await res.arrayBuffer());
        } catch (e) {
            // Headers arrived, the body did not: NSURLSession reports the error with the response.
            return { response: res, json: null, error: urlErrorFrom(e) };
        }
        const statusOk = res.status >= 200 && res.status <= 299;
        const mime = (res.headers.get("content-type") ?? "").split(";")[0].trim().toLowerCase();
        if (bytes.length > 0 && !JSON_TYPES.has(mime)) {
            return {
                response: res,
                json: null,
                error: new HTTPResponseError(res.status, `Request failed: unacceptable content-type: ${mime || "none"} (${res.status})`),
            };
        }
        let error = statusOk ? null : new HTTPResponseError(res.status, `Request failed: (${res.status})`);
        let json = null;
        const text = bytes.toString("utf8");
        if (text.length > 0 && text !== " ") {
            try {
                json = JSON.parse(text);
            } catch (e) {
                error = new HTTPResponseError(res.status, `JSON text could not be parsed: ${e.message}`);
            }
        }
        return { response: res, json, error };
    }
}

/** MXHTTPClient.m:mxErrorFromJSON::898-914 (+ httpResponse, :399). */
function mxErrorFromJSON(json, status) {
    const { errcode, error, ...rest } = json;
    return new MXError(errcode ?? null, error ?? null, { status, userInfo: rest });
}

/** -[NSNumber intValue] / -[NSString intValue]. */
function intValue(v) {
    if (typeof v === "number") return Math.trunc(v);
    if (typeof v === "string") return Number.parseInt(v, 10) || 0;
    return 0;
}

/** Node's fetch failures → the NSURLErrorDomain code NSURLSession would give. */
function urlErrorFrom(e) {
    if (e?.name === "TimeoutError" || e?.name === "AbortError") return new URLError("timed-out", "The request timed out.", e);
    const code = e?.cause?.code ?? e?.code ?? "";
    if (code === "ECONNREFUSED") return new URLError("cannot-connect", "Could not connect to the server.", e);
    if (code === "ENOTFOUND") return new URLError("cannot-find-host", "A server with the specified hostname could not be found.", e);
    if (typeof code === "string" && code.startsWith("HPE_")) return new URLError("bad-server-response", "The server response was not HTTP.", e);
    return new URLError("connection-lost", `The network connection was lost. (${code || e?.message || e})`, e);
}

// ----- the refresh queue ------------------------------------------------------------------------

/**
 * MXRestClient.m:refreshQueue:151-160 (a serial GCD queue) and :refreshDispatchGroup:162-170, both
 * static: one for the whole process, shared by every MXRestClient. Each token-provider call runs
 * as one block on the queue, after the previous refresh has left the group (:270). Element's persist
 * handler holds the block until the refresh ends (MXKAccountManager.m:readAndWriteCredentials:777
 * dispatch_group_wait), so "one block at a time, refresh included" is what runs.
 */
class SerialQueue {
    constructor() {
        this.tail = Promise.resolve();
    }
    run(fn) {
        const p = this.tail.then(fn);
        this.tail = p.catch(() => {});
        return p;
    }
}
export const refreshQueue = new SerialQueue();

// ----- MXRestClient -----------------------------------------------------------------------------

export class MXRestClient {
    /**
     * MXRestClient.m:initWithCredentials:andOnUnrecognizedCertificateBlock:andPersistentTokenDataHandler:
     * andUnauthenticatedHandler::191-347.
     * persistTokenDataHandler(handler): the app runs `handler(persistedCredentials)` (async, returns
     * didUpdate) under its file lock and writes the file when it returns true.
     * unauthenticatedHandler(mxError, isSoftLogout, isRefreshTokenAuth): async, resolves = completion().
     */
    constructor(credentials, { persistTokenDataHandler = null, unauthenticatedHandler = null, options, env }) {
        this.credentials = credentials;
        this.persistTokenDataHandler = persistTokenDataHandler;
        this.unauthenticatedHandler = unauthenticatedHandler;
        this.options = options; // MXSDKOptions.sharedInstance
        this.env = env;
        this.apiPathPrefix = API_PREFIX_R0; // :199
        this.completionQueue = "main"; // :342; nil after -close
        if (credentials.homeServer) {
            // :210-211 authenticated iff the credentials carry an access token.
            this.httpClient = new MXHTTPClient(credentials.homeServer, credentials.accessToken != null, env);
            // :254-261 only M_UNKNOWN_TOKEN (any status) is an invalid-token response.
            this.httpClient.tokenValidationResponseHandler = (error) =>
                error instanceof MXError && error.errcode === "M_UNKNOWN_TOKEN";
            this.httpClient.tokenProviderHandler = (error) => this.tokenProvider(error);
        }
    }

    /** MXRestClient.m:close:461-469. */
    close() {
        this.completionQueue = null;
    }

    /** MXRestClient.m:isSoftLogout::443-447: a 401 whose body says soft_logout: true. */
    static isSoftLogout(mxError) {
        const flag = mxError?.userInfo?.soft_logout;
        return mxError?.status === 401 && (flag === true || flag === 1);
    }

    /** MXRestClient.m:findMatchingCredential:inCredentials::449-459: same homeserver and user id. */
    static findMatchingCredential(credential, credentials) {
        for (const next of credentials) {
            if (next.homeServer && next.homeServer === credential.homeServer && next.userId && next.userId === credential.userId) {
                return next;
            }
        }
        return null;
    }

    /** MXRestClient.m:tokenProviderHandler:263-339 — the decision made before and after a request. */
    async tokenProvider(error) {
        const logId = `${process.pid}-${randomUUID()}`;
        const decision = await refreshQueue.run(async () => {
            this.env.log(`[MXRestClient] tokenProviderHandler: ${logId} refreshQueue enter`);
            if (!this.completionQueue) {
                // :271-276 client closed: returns without calling success or failure.
                return { kind: "dropped" };
            }
            const cred = this.credentials;
            // :284-285 initWithNSError gives nil for anything that is not a Matrix error.
            const mxError = error instanceof MXError ? error : null;
            const isTokenUnknownResponse = !!mxError && mxError.errcode === "M_UNKNOWN_TOKEN";
            if (!cred.refreshToken && isTokenUnknownResponse) {
                // :286-299 no refresh token and the token is refused: the app decides (soft or hard
                // logout); the block returns at once, the handler runs on the completion queue.
                return { kind: "unauthenticated", mxError, isSoftLogout: MXRestClient.isSoftLogout(mxError) };
            }
            // :300-310 use the current token when there is no refresh token, or when this is not a
            // 401 and the expiry is unknown (0) or more than 60 s away.
            if (
                !cred.refreshToken ||
                (!isTokenUnknownResponse && (cred.accessTokenExpiresAt === 0n || beforePreemptiveDeadline(this.env, cred.accessTokenExpiresAt)))
            ) {
                this.env.log(`[MXRestClient] tokenProviderHandler: ${logId} success token ${cred.refreshToken}, ${cred.accessTokenExpiresAt}`);
                // :304-307 success(self.credentials.accessToken) runs later, on the completion
                // queue: the token is read then, not here (see the switch below).
                return { kind: "token" };
            }
            // :312-315 otherwise: "Continue with token refresh if access token is not valid
            // (indicated by server response or the expiry date)".
            if (!this.persistTokenDataHandler) {
                // :313 NSAssert; release builds then call a nil block (a crash).
                throw new ModelStop("refresh needed but no persistTokenDataHandler (NSAssert in MXRestClient.m:313)");
            }
            const accessToken = await this.startTokenRefresh(logId);
            if (!this.completionQueue) return { kind: "dropped" }; // :319-323
            // :326-336 success hands over self.credentials.accessToken (what the notification set),
            // read on the completion queue like the branch above.
            if (accessToken) return { kind: "token" };
            return { kind: "failure", error: new MXError("CLIENT_ERROR", "Token refresh failed") };
        });
        switch (decision.kind) {
            case "token":
                // The completion-queue block of :304-307 / :328-331: `self.credentials.accessToken`
                // is read when it runs, after the refresh queue has moved on.
                return this.credentials.accessToken;
            case "failure":
                throw decision.error;
            case "unauthenticated":
                if (this.unauthenticatedHandler) {
                    // :292-295 failure(error) from the handler's completion: the original error.
                    await this.unauthenticatedHandler(decision.mxError, decision.isSoftLogout, false);
                    throw error;
                }
                throw new ModelStop("no unauthenticatedHandler: the SDK never completes this request (MXRestClient.m:292)");
            default:
                throw new ModelStop("the MXRestClient was closed: the SDK never completes this request (MXRestClient.m:271-276)");
        }
    }

    /**
     * MXRestClient.m:startTokenRefreshWithLogId:andRefreshCompletion::350-441. Resolves with the new
     * (or adopted) access token, or null when the refresh failed.
     */
    async startTokenRefresh(logId) {
        let result = null;
        let unauthenticated = null;
        // :354 "check persisted credentials (could have been updated in another process)"
        await this.persistTokenDataHandler(async (persisted) => {
            if (!this.completionQueue) return false; // :355-360
            const credential = MXRestClient.findMatchingCredential(this.credentials, persisted);
            if (!credential) {
                // :364-369
                this.env.log(`[MXRestClient] ${logId}: Could not find rest client credential in persisted credentials.`);
                return false;
            }
            // :371-384 a persisted token more than 60 s from ITS expiry is adopted instead of
            // refreshing — even when it is the very token the server just refused (nothing compares
            // them), and, through the uint64 wrap, always when its expiry is unknown (0).
            if (beforePreemptiveDeadline(this.env, credential.accessTokenExpiresAt)) {
                this.env.log(`[MXRestClient] ${logId}: found valid persisted token, using.`);
                postUpdateTokens({
                    userId: credential.userId,
                    homeserver: credential.homeServer,
                    accessToken: credential.accessToken,
                    refreshToken: credential.refreshToken,
                    accessTokenExpiresAt: credential.accessTokenExpiresAt,
                });
                result = credential.accessToken;
                return false; // shouldPersistCompletion(NO)
            }
            // :386-389 refresh with the IN-MEMORY refresh token.
            this.env.log(`[MXRestClient] ${logId}: refreshQueue refresh token start`);
            let refreshResponse;
            try {
                refreshResponse = await this.refreshAccessToken(this.credentials.refreshToken);
            } catch (error) {
                // :407-430 only M_FORBIDDEN / M_UNKNOWN_TOKEN (any status) reach the app's handler;
                // anything else (5xx, 404, 429 given up, network, HTML) is a plain failure.
                this.env.log(`[MXRestClient] ${logId}: refreshQueue refresh token request failure: ${error.message}`);
                const mxError = error instanceof MXError ? error : null;
                if (this.unauthenticatedHandler && mxError && (mxError.errcode === "M_FORBIDDEN" || mxError.errcode === "M_UNKNOWN_TOKEN")) {
                    unauthenticated = { mxError, isSoftLogout: MXRestClient.isSoftLogout(mxError) };
                }
                return false;
            }
            // :389-406 success. Expiry = whole seconds now + expires_in_ms (0 when absent: "now").
            const expiresAt = U64(nowSecondsTimes1000(this.env) + (refreshResponse?.expiresInMs ?? 0n));
            const accessToken = refreshResponse?.accessToken ?? null;
            const refreshToken = refreshResponse?.refreshToken ?? null;
            postUpdateTokens({
                userId: credential.userId,
                homeserver: credential.homeServer,
                accessToken,
                refreshToken,
                accessTokenExpiresAt: expiresAt,
            });
            // :401-403 the PERSISTED record takes the response as it is: no refresh_token in the
            // response = no refresh token on disk (memory keeps the old one, MXCredentials.m:193).
            credential.accessToken = accessToken;
            credential.refreshToken = refreshToken;
            credential.accessTokenExpiresAt = expiresAt;
            result = accessToken;
            return true; // :404 shouldPersistCompletion(YES)
        });
        if (unauthenticated) {
            // :420-426 the handler runs, then refreshCompletion(nil): the refresh group (and so every
            // queued request) waits for the app's logout handling.
            this.env.log(`[MXRestClient] ${logId}: refreshQueue unauthenticatedHandler`);
            await this.unauthenticatedHandler(unauthenticated.mxError, unauthenticated.isSoftLogout, true);
            return null;
        }
        return result;
    }

    /** MXRestClient.m:refreshAccessToken:success:failure::1117-1144 — POST /_matrix/client/v1/refresh. */
    async refreshAccessToken(refreshToken) {
        const json = await this.httpClient.request("POST", `${API_PREFIX_V1}/refresh`, {
            needsAuthentication: false,
            data: JSON.stringify({ refresh_token: refreshToken }),
            headers: { "Content-Type": "application/json" },
            timeoutS: -1,
        });
        return parseRefreshResponse(this.env, json);
    }

    /** MXRestClient.m:registerOrLogin:parameters:success:failure::1035-1098. */
    async registerOrLogin(action, parameters) {
        let params = { ...parameters };
        if (params.password !== undefined) {
            // :1039-1069 the device name, and x_show_msisdn for registration.
            if (params.initial_device_display_name === undefined) params.initial_device_display_name = this.options.deviceName;
            if (action === "register") params.x_show_msisdn = true;
        }
        // :1071-1077 refresh_token: true on every login and registration when the option is on.
        if (this.options.authEnableRefreshTokens) params = { ...params, refresh_token: true };
        return this.httpClient.request("POST", `${this.apiPathPrefix}/${action}`, { parameters: params });
    }

    /** MXRestClient.m:login:success:failure::853-858. */
    login(parameters) {
        return this.registerOrLogin("login", parameters);
    }

    /** MXRestClient.m:getRegisterSession:failure::656-711 — the UIA probe (no refresh flag). */
    async getRegisterSession() {
        try {
            return await this.httpClient.request("POST", `${this.apiPathPrefix}/register`, { parameters: { x_show_msisdn: true } });
        } catch (error) {
            // :686-708 the 401's body (MXHTTPClientErrorResponseDataKey) is the session.
            if (error instanceof HTTPResponseError && isDict(error.responseData)) return error.responseData;
            throw error;
        }
    }

    /** MXRestClient.m:registerWithLoginType:username:password:success:failure::720-784. */
    async registerWithLoginType(loginType, username, password) {
        const authSession = await this.getRegisterSession();
        const parameters = { auth: { type: loginType, session: authSession?.session }, password };
        if (username) parameters.username = username;
        const json = await this.registerOrLogin("register", parameters); // :713-718 registerWithParameters
        return MXCredentials.fromLoginResponse(this.env, parseLoginResponse(this.env, json), this.credentials);
    }

    /** MXRestClient.m:logout:failure::1100-1115 — POST r0/logout, authenticated. */
    logout(operation) {
        return this.httpClient.request("POST", `${this.apiPathPrefix}/logout`, { operation });
    }

    /** MXRestClient.m:syncFromToken:serverTimeout:clientTimeout:setPresence:filter:…:4099-4146. */
    syncFromToken(token, serverTimeout, clientTimeout) {
        const parameters = {};
        if (token) parameters.since = token;
        parameters.timeout = serverTimeout;
        return this.httpClient.request("GET", `${this.apiPathPrefix}/sync`, { parameters, timeoutS: clientTimeout / 1000 });
    }

    /** MXRestClient.m:sendTextMessageToRoom:threadId:text:…:2058-2072 → sendEventToRoom:…:1935-1998. */
    async sendTextMessageToRoom(roomId, text) {
        // :1943-1947 a fresh txnId per call (MXTools.m:generateTransactionId:539-542).
        const txnId = generateTransactionId();
        const path = `${this.apiPathPrefix}/rooms/${roomId}/send/m.room.message/${encodeURIComponent(txnId)}`;
        const json = await this.httpClient.request("PUT", path, { parameters: { msgtype: "m.text", body: text } });
        return jsonString(this.env, json?.event_id, "event_id");
    }

    /**
     * GET r0/account/whoami. The SDK has no whoami method; this is an authenticated request made the
     * way every MXRestClient method makes one (httpClient requestWithMethod:path:parameters:…).
     */
    async whoami() {
        const json = await this.httpClient.request("GET", `${this.apiPathPrefix}/account/whoami`);
        return jsonString(this.env, json?.user_id, "user_id");
    }
}

let transactionIdCount = 0;
/** MXTools.m:generateTransactionId:539-542: `m%u.%tu` with arc4random_uniform(INT32_MAX). */
export function generateTransactionId() {
    return `m${Math.floor(Math.random() * 0x7fffffff)}.${transactionIdCount++}`;
}

/** The default environment: real clock, real network, real timers, logs to stderr. */
export function defaultEnv() {
    return {
        now: () => Date.now(),
        sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
        random: Math.random,
        fetch: (url, init) => fetch(url, init),
        log: (message) => process.stderr.write(`${message}\n`),
    };
}
