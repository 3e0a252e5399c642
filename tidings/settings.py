"""Settings, one class per concern, each read from its own ``TIDINGS_*`` prefix.

Entry points build these once and pass them down; nothing below an entry point
reads the environment. A bad value fails at start with pydantic's message, which
names the variable (see :func:`load`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tidings.errors import ConfigError
from tidings.topics import is_valid_tenant

# Known development credentials: accepted by the local stack, refused elsewhere.
DEV_API_KEYS: dict[str, str] = {"dev-key-demo": "demo"}
DEV_TOKEN_SECRET = "dev-token-secret-change-me"  # a deliberately public dev value


class Environment(StrEnum):
    LOCAL = "local"
    PRODUCTION = "production"


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", frozen=True, validate_default=True)


class RuntimeSettings(BaseSettings):
    """Where this process runs. ``production`` refuses every development credential."""

    model_config = _config("TIDINGS_")

    env: Environment = Environment.LOCAL
    log_level: str = "INFO"
    # json: one object per line for log shippers; text: for a human at a terminal.
    log_format: str = Field(default="json", pattern="^(json|text)$")

    @property
    def is_local(self) -> bool:
        return self.env is Environment.LOCAL


class KafkaSecurityProtocol(StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class KafkaSaslMechanism(StrEnum):
    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"
    OAUTHBEARER = "OAUTHBEARER"


class TemporalSettings(BaseSettings):
    model_config = _config("TIDINGS_TEMPORAL_")

    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    task_queue: str = "tidings"
    ui_url: str = "http://127.0.0.1:8233"
    # TLS to the frontend (tidings.temporal_connect). Any TLS file or an API
    # key turns it on; ``tls`` alone uses the system's CAs (Temporal Cloud).
    tls: bool = False
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_server_name: str = ""
    api_key: SecretStr = SecretStr("")

    @property
    def uses_tls(self) -> bool:
        # An API key is a bearer secret: never sent without TLS (as temporalio does).
        return (
            self.tls
            or bool(self.api_key.get_secret_value())
            or any(f is not None for f in (self.tls_ca_file, self.tls_cert_file, self.tls_key_file))
        )

    @model_validator(mode="after")
    def _tls(self) -> TemporalSettings:
        _require_files(
            "TIDINGS_TEMPORAL_",
            tls_ca_file=self.tls_ca_file,
            tls_cert_file=self.tls_cert_file,
            tls_key_file=self.tls_key_file,
        )
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError(
                "TIDINGS_TEMPORAL_TLS_CERT_FILE and TIDINGS_TEMPORAL_TLS_KEY_FILE go together "
                "(a client certificate needs its key)"
            )
        if self.tls_server_name and not self.uses_tls:
            raise ValueError(
                "TIDINGS_TEMPORAL_TLS_SERVER_NAME is set but TLS is off: set "
                "TIDINGS_TEMPORAL_TLS=true or TIDINGS_TEMPORAL_TLS_CA_FILE"
            )
        return self


class KafkaSettings(BaseSettings):
    """The event plane. Tenant topics are created from this template on first use."""

    model_config = _config("TIDINGS_KAFKA_")

    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = "tidings"
    partitions: int = Field(default=6, ge=1, le=1000)
    replication_factor: int = Field(default=1, ge=1, le=10)
    retention_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=60_000)
    request_timeout_ms: int = Field(default=30_000, ge=1_000)
    # Security (tidings/kafka_connection.py turns these into client options).
    # SSL with no CA file trusts the system's store, as managed clusters expect.
    security_protocol: KafkaSecurityProtocol = KafkaSecurityProtocol.PLAINTEXT
    sasl_mechanism: KafkaSaslMechanism = KafkaSaslMechanism.PLAIN
    sasl_username: str = ""
    sasl_password: SecretStr = SecretStr("")
    # OAUTHBEARER: "module:callable" returning an aiokafka AbstractTokenProvider,
    # imported and called once when the settings are built.
    sasl_oauth_token_provider: str = ""
    ssl_ca_file: Path | None = None
    ssl_cert_file: Path | None = None
    ssl_key_file: Path | None = None
    ssl_key_password: SecretStr = SecretStr("")
    _token_provider: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _security(self) -> KafkaSettings:
        from tidings.kafka_connection import check_security

        self._token_provider = check_security(self)
        return self

    @property
    def token_provider(self) -> Any:
        """The OAUTHBEARER token provider the settings loaded, or ``None``."""
        return self._token_provider


class RedisSettings(BaseSettings):
    model_config = _config("TIDINGS_REDIS_")

    url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    # The gateway's pool blocks (up to its timeout) when all are busy, so a
    # burst of socket opens waits for a connection instead of failing.
    max_connections: int = Field(default=256, ge=1, le=100_000)
    # An ACL user (Redis 6+); may instead be in the URL, but not in both.
    username: str = ""
    password: SecretStr = SecretStr("")
    # The CA that signed the server's certificate (rediss:// only; default:
    # the system's CAs).
    tls_ca_file: Path | None = None
    # Sentinel: the URL then gives only the scheme (rediss: TLS), the database
    # and credentials; the master's address comes from these sentinels.
    sentinels: Annotated[list[str], NoDecode] = Field(default_factory=list)
    sentinel_master: str = ""

    @field_validator("sentinels", mode="before")
    @classmethod
    def _split_sentinels(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        for item in value:
            host, _, port = str(item).rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"must be host:port,host:port,... (got {item!r})")
        return value

    @property
    def is_tls(self) -> bool:
        return self.url.get_secret_value().startswith("rediss://")

    @model_validator(mode="after")
    def _combination(self) -> RedisSettings:
        url = self.url.get_secret_value()
        scheme = url.partition("://")[0]
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError("TIDINGS_REDIS_URL must start with redis://, rediss:// or unix://")
        _require_files("TIDINGS_REDIS_", tls_ca_file=self.tls_ca_file)
        if self.tls_ca_file is not None and not self.is_tls:
            raise ValueError(
                "TIDINGS_REDIS_TLS_CA_FILE is set but TIDINGS_REDIS_URL is not rediss://"
            )
        netloc = url.partition("://")[2].partition("/")[0]
        in_url = netloc.rpartition("@")[0] if "@" in netloc else ""
        if in_url and (self.username or self.password.get_secret_value()):
            raise ValueError(
                "credentials are both in TIDINGS_REDIS_URL and in TIDINGS_REDIS_USERNAME/"
                "TIDINGS_REDIS_PASSWORD; keep one"
            )
        if self.username and not self.password.get_secret_value():
            raise ValueError("TIDINGS_REDIS_USERNAME needs TIDINGS_REDIS_PASSWORD")
        if bool(self.sentinels) != bool(self.sentinel_master):
            raise ValueError(
                "TIDINGS_REDIS_SENTINELS and TIDINGS_REDIS_SENTINEL_MASTER go together "
                "(the sentinels, and the name of the master they watch)"
            )
        if self.sentinels and scheme == "unix":
            raise ValueError(
                "TIDINGS_REDIS_SENTINELS needs a redis:// or rediss:// TIDINGS_REDIS_URL"
            )
        return self


class TenantSettings(BaseSettings):
    """API keys and per-tenant limits.

    ``TIDINGS_TENANTS_API_KEYS`` is a JSON object mapping each API key to its
    tenant. Keys are secrets: they never appear in ``repr`` or logs.
    """

    model_config = _config("TIDINGS_TENANTS_")

    api_keys: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=lambda: dict(DEV_API_KEYS), repr=False
    )
    max_concurrent_runs: int = Field(default=100, ge=1)
    max_events_per_second: int = Field(default=5_000, ge=1)
    max_sockets: int = Field(default=10_000, ge=1)
    # Records the slowest gateway's live tail is behind the tenant's topic end
    # (see tidings.lag). Past max_events_lag new runs are shed with 429; past
    # coalesce_lag the worker merges step.token events into fewer records.
    max_events_lag: int = Field(default=50_000, ge=1)
    coalesce_lag: int = Field(default=5_000, ge=1)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"must be a JSON object of api key -> tenant ({exc.msg})"
                ) from None
        if not isinstance(value, dict) or not value:
            raise ValueError("must be a non-empty JSON object of api key -> tenant")
        for key, tenant in value.items():
            if not isinstance(key, str) or len(key) < 8:
                raise ValueError("every api key must be a string of at least 8 characters")
            if not isinstance(tenant, str) or not is_valid_tenant(tenant):
                raise ValueError(f"tenant names are [a-z0-9-]{{1,48}}, got {tenant!r}")
        return value

    def tenant_for(self, api_key: str) -> str | None:
        return self.api_keys.get(api_key)


class JwtIssuer(BaseModel):
    """A customer's token issuer (``TIDINGS_GATEWAY_JWT_ISSUERS``): its tenant,
    and an HMAC ``secret`` or the ``jwks_url`` of its public keys."""

    model_config = {"frozen": True, "extra": "forbid"}

    tenant: str
    secret: SecretStr | None = None
    jwks_url: str | None = None

    @model_validator(mode="after")
    def _one_key_source(self) -> JwtIssuer:
        if not is_valid_tenant(self.tenant):
            raise ValueError(f"tenant names are [a-z0-9-]{{1,48}}, got {self.tenant!r}")
        if (self.secret is None) == (self.jwks_url is None):
            raise ValueError("each issuer needs exactly one of secret or jwks_url")
        if self.secret is not None and len(self.secret.get_secret_value()) < 32:
            raise ValueError("an issuer's HMAC secret must be at least 32 characters")
        return self


class GatewaySettings(BaseSettings):
    model_config = _config("TIDINGS_GATEWAY_")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Processes sharing the port (gateway/server/supervisor.py); with metrics_port,
    # process i also listens alone on metrics_port + i for per-process scrapes.
    processes: int = Field(default=1, ge=1, le=64)
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    public_url: str = ""
    token_secret: SecretStr = SecretStr(DEV_TOKEN_SECRET)
    # Accepted for verification only, so keys can rotate without cutting clients off.
    token_secrets_previous: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    token_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    # Read tokens (gateway/access.py): the one POST /v1/runs answers with, and
    # the longest POST /v1/tokens mints.
    stream_token_ttl_seconds: int = Field(default=3600, ge=60)
    stream_token_max_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    # The customer's own JWTs: issuer -> {tenant, secret | jwks_url} (JSON).
    jwt_issuers: Annotated[dict[str, JwtIssuer], NoDecode] = Field(default_factory=dict, repr=False)
    jwt_audience: str = "tidings"
    jwt_runs_claim: str = "tidings_runs"
    # A token naming an unknown key id fetches the JWKS again, at most this often.
    jwks_min_refresh_seconds: float = Field(default=10.0, ge=0)
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    max_frame_bytes: int = Field(default=64 * 1024, ge=256)
    # The request head (request line and headers): a client that has not sent
    # all of it within the timeout gets 408 and is closed (slowloris); one
    # larger than the limit gets 431 (gateway/server/http_protocol.py).
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    max_header_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    send_queue_max_events: int = Field(default=1_000, ge=1)
    send_queue_max_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Bytes queued for one tenant's sockets on this gateway (summed over the
    # sockets; a frame shared by n sockets counts n times). Above high the
    # tenant's live tail pauses its Kafka partitions; below low it resumes.
    buffer_high_bytes: int = Field(default=64 * 1024 * 1024, ge=4096)
    buffer_low_bytes: int = Field(default=32 * 1024 * 1024, ge=0)
    # Stream sockets write each event's frame, encoded once, straight to their
    # transports (gateway/server/ws_protocol.py); false sends every frame through
    # ASGI instead, as any other server would.
    direct_frames: bool = True
    # How often the gateway re-reads the pipelines workers announced
    # (workers.announce); an unknown name is looked up again at once.
    pipelines_refresh_seconds: float = Field(default=5.0, gt=0, le=3600)
    # SO_SNDBUF of each stream socket (Linux doubles it for bookkeeping, so
    # the kernel holds at most twice this for a client that stops reading);
    # 0 leaves the kernel's autotuning, megabytes per socket.
    send_buffer_bytes: int = Field(default=128 * 1024, ge=0, le=64 * 1024 * 1024)
    # Acks are written to Redis coalesced (the latest per session) at most
    # this often; a gateway killed with kill -9 loses about this much of them.
    ack_flush_ms: int = Field(default=5, ge=1, le=1000)
    # How long Redis keeps a run's owner and start for the other gateways'
    # stream opens, refreshed on every open (gateway/stream/run_index.py);
    # 0 = no index: every gateway asks Temporal about each run once.
    run_index_ttl_seconds: int = Field(default=3600, ge=0, le=30 * 24 * 3600)
    # Every this many seconds the gateway looks at its RSS; once it has grown
    # by memory_trim_growth_mib since the last clean-up, it runs a full
    # garbage collection and malloc_trim(0) (gateway/server/memory.py). 0 = never.
    memory_trim_seconds: float = Field(default=30.0, ge=0, le=3600)
    memory_trim_growth_mib: int = Field(default=32, ge=1, le=65536)

    @model_validator(mode="after")
    def _watermarks(self) -> GatewaySettings:
        if "tidings" in self.jwt_issuers:
            raise ValueError(
                "TIDINGS_GATEWAY_JWT_ISSUERS: the issuer 'tidings' is the gateway's own"
            )
        if self.stream_token_ttl_seconds > self.stream_token_max_ttl_seconds:
            raise ValueError(
                "TIDINGS_GATEWAY_STREAM_TOKEN_TTL_SECONDS must not exceed "
                "TIDINGS_GATEWAY_STREAM_TOKEN_MAX_TTL_SECONDS"
            )
        if self.buffer_low_bytes >= self.buffer_high_bytes:
            raise ValueError(
                "TIDINGS_GATEWAY_BUFFER_LOW_BYTES must be below TIDINGS_GATEWAY_BUFFER_HIGH_BYTES"
            )
        return self

    @field_validator("jwt_issuers", mode="before")
    @classmethod
    def _parse_issuers(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as exc:
                message = f"must be a JSON object of issuer -> settings ({exc.msg})"
                raise ValueError(message) from None
        return value

    @field_validator("token_secrets_previous", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part for part in value.split(",") if part]
        return value

    def base_url(self) -> str:
        return self.public_url.rstrip("/") or f"http://{self.host}:{self.port}"


class WorkerSettings(BaseSettings):
    model_config = _config("TIDINGS_WORKER_")

    max_concurrent_activities: int = Field(default=50, ge=1)
    max_concurrent_workflow_tasks: int = Field(default=50, ge=1)
    pipelines_dir: Path | None = None
    # How often a worker re-announces its pipelines to the registry in Redis
    # (workers.announce); an announcement lives three periods.
    announce_seconds: int = Field(default=20, ge=1, le=3600)
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    # 0 = no metrics endpoint (tests, and `tidings up`, where several workers
    # share one host); compose sets 9464.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    # While a tenant's lag is high, tokens are buffered up to this long / this
    # many bytes of text and sent as one step.token record.
    coalesce_max_ms: int = Field(default=100, ge=1, le=10_000)
    coalesce_max_bytes: int = Field(default=4096, ge=16, le=1024 * 1024)
    # The run-close watcher (workers/run_close.py) lists the runs Temporal
    # closed this often; its first pass looks this far back, for runs closed
    # while no worker ran. 0 turns it off (a closed run's sockets then wait).
    run_close_poll_seconds: float = Field(default=1.0, ge=0, le=60)
    run_close_catch_up_seconds: float = Field(default=3600.0, ge=0)
    # A finished step's result is kept in Redis this long, so an attempt that
    # Temporal starts again after an outage returns it instead of redoing the
    # step (workers/finished_steps.py); 0 keeps nothing.
    step_result_ttl_seconds: int = Field(default=900, ge=0, le=7 * 24 * 3600)
    # While Kafka does not take a record, the emitter offers it again after
    # this backoff: the first delay, doubling up to the maximum.
    emit_backoff_initial_ms: int = Field(default=200, ge=1, le=60_000)
    emit_backoff_max_ms: int = Field(default=5_000, ge=1, le=600_000)


class ModelSettings(BaseSettings):
    """The model provider behind AI steps. ``offline`` needs no network."""

    model_config = _config("TIDINGS_MODEL_")

    provider: str = Field(default="offline", pattern="^(offline|openai)$")
    base_url: str = "http://127.0.0.1:11434/v1"
    name: str = "llama3.2"
    api_key: SecretStr = SecretStr("")
    timeout_seconds: float = Field(default=60.0, gt=0)
    # Agent steps: a tool's return is cut to this many characters in its
    # step.tool_result event (the model still gets all of it).
    tool_result_max_chars: int = Field(default=2000, ge=16, le=1_000_000)


class TracingSettings(BaseSettings):
    """OpenTelemetry tracing. No endpoint: spans are made (and propagated in
    Temporal and Kafka headers) but exported nowhere."""

    model_config = _config("TIDINGS_TRACING_")

    otlp_endpoint: str = ""
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)


class Settings:
    """Everything one process needs, validated together at its entry point."""

    def __init__(self, **overrides: BaseSettings) -> None:
        self.runtime: RuntimeSettings = _get(overrides, "runtime", RuntimeSettings)
        self.temporal: TemporalSettings = _get(overrides, "temporal", TemporalSettings)
        self.kafka: KafkaSettings = _get(overrides, "kafka", KafkaSettings)
        self.redis: RedisSettings = _get(overrides, "redis", RedisSettings)
        self.tenants: TenantSettings = _get(overrides, "tenants", TenantSettings)
        self.gateway: GatewaySettings = _get(overrides, "gateway", GatewaySettings)
        self.worker: WorkerSettings = _get(overrides, "worker", WorkerSettings)
        self.model: ModelSettings = _get(overrides, "model", ModelSettings)
        self.tracing: TracingSettings = _get(overrides, "tracing", TracingSettings)
        self._refuse_dev_credentials()
        self._check_resume_window()

    _PARTS = (
        "runtime",
        "temporal",
        "kafka",
        "redis",
        "tenants",
        "gateway",
        "worker",
        "model",
        "tracing",
    )

    def replace(self, **parts: BaseSettings) -> Settings:
        """These settings with some parts swapped, validated together again."""
        kept = {name: getattr(self, name) for name in self._PARTS}
        return Settings(**{**kept, **parts})

    def _check_resume_window(self) -> None:
        # A token that outlives the events it points at would promise a resume
        # that Kafka retention has already made impossible.
        if self.gateway.token_ttl_seconds * 1000 > self.kafka.retention_ms:
            raise ConfigError(
                "TIDINGS_GATEWAY_TOKEN_TTL_SECONDS must not exceed TIDINGS_KAFKA_RETENTION_MS "
                "(a resume token must not outlive the events it points at)"
            )

    def _refuse_dev_credentials(self) -> None:
        if self.runtime.is_local:
            return
        if any(key in DEV_API_KEYS for key in self.tenants.api_keys):
            raise ConfigError(
                "TIDINGS_TENANTS_API_KEYS holds a development key; set real keys when "
                "TIDINGS_ENV=production"
            )
        if self.gateway.token_secret.get_secret_value() == DEV_TOKEN_SECRET or (
            len(self.gateway.token_secret.get_secret_value()) < 32
        ):
            raise ConfigError(
                "TIDINGS_GATEWAY_TOKEN_SECRET is the development secret or shorter than 32 "
                "characters; set a strong one when TIDINGS_ENV=production"
            )


S = TypeVar("S", bound=BaseSettings)


def _require_files(prefix: str, **files: Path | None) -> None:
    """A file setting that names no readable file stops the process at start."""
    for field, path in files.items():
        if path is not None and not path.is_file():
            raise ValueError(f"{prefix}{field.upper()}: no such file {str(path)!r}")


def _get(overrides: dict[str, BaseSettings], name: str, cls: type[S]) -> S:
    given = overrides.get(name)
    if given is not None:
        if not isinstance(given, cls):
            raise TypeError(f"{name} must be {cls.__name__}")
        return given
    return load(cls)


def load(cls: type[S]) -> S:
    """Build one settings class from the environment, or raise :class:`ConfigError`
    whose message names every bad variable."""
    try:
        return cls()
    except ValidationError as exc:
        prefix = str(cls.model_config.get("env_prefix", ""))
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            variable = f"{prefix}{field}".upper() if field else prefix.rstrip("_")
            problems.append(f"{variable}: {error['msg']}")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from None


def all_settings_classes() -> list[type[BaseSettings]]:
    """The settings classes a worker or a gateway reads."""
    return [
        RuntimeSettings,
        TemporalSettings,
        KafkaSettings,
        RedisSettings,
        TenantSettings,
        GatewaySettings,
        WorkerSettings,
        ModelSettings,
        TracingSettings,
    ]


def env_names(classes: Iterable[type[BaseSettings]] | None = None) -> set[str]:
    """Every environment variable ``classes`` read (default: the processes'
    settings), for docs and compose checks."""
    names: set[str] = set()
    for cls in all_settings_classes() if classes is None else classes:
        prefix = str(cls.model_config.get("env_prefix", ""))
        names.update(f"{prefix}{field}".upper() for field in cls.model_fields)
    return names
