/** Every error the client raises: `code` is the gateway's error code (docs/protocol.md). */
export class TidingsError extends Error {
  constructor(
    message: string,
    readonly code: string,
    /** The HTTP status, or the WebSocket close code of a stream. */
    readonly status: number,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/**
 * 401/403 or 4401/4403: a retry with the same credentials cannot help.
 * `code` is `token_expired` when a read token has expired: get a new one.
 */
export class AuthError extends TidingsError {}

/**
 * 4410: the resume position is gone (token or session expired, or the events
 * after it are past Kafka retention). Stream again with `from: "start"`.
 */
export class StreamExpiredError extends TidingsError {}
