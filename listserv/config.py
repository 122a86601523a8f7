"""config.toml into frozen dataclasses.

Every key has an embedded default, so listserv runs without any file. Unknown keys and
bad values are errors that name the key: a typo must never be silently ignored.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from ipaddress import ip_network
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

DEFAULT_PATH = "config.toml"


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and key."""


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = "sqlite:///var/listserv.db"
    # Seconds a writer waits for a locked SQLite database before the receiver answers 451.
    busy_timeout: float = 5.0


@dataclass(frozen=True)
class ReceiverConfig:
    host: str = "127.0.0.1"
    port: int = 8025
    max_message_bytes: int = 10 * 1024 * 1024
    max_recipients: int = 50
    # Seconds of silence after which an SMTP session is closed.
    timeout: float = 60.0
    # Let several receiver processes listen on one port (SO_REUSEPORT; the kernel spreads
    # connections over them). Off by default, so a second instance by mistake fails loudly.
    reuse_port: bool = False
    # Concurrent SMTP sessions; beyond it the idlest session makes room, or 421 4.7.0.
    max_sessions: int = 200
    # Concurrent sessions from one client address, so that one source cannot take every
    # slot; the trusted relays (a front MTA sends everything from one address) are exempt.
    max_sessions_per_ip: int = 20
    trusted_relays: tuple[str, ...] = ("127.0.0.1", "::1")
    # Seconds from MAIL FROM to the DATA command: no client keeps a transaction open longer.
    max_transaction_seconds: float = 120.0
    # Commands that make no progress (NOOP, RSET, HELP, VRFY, EXPN, a repeated HELO) a
    # session may send between two stored messages before it is closed.
    max_junk_commands: int = 20
    # Receiver processes (one per core): above 1, the serving process accepts connections
    # and hands them to these in turn.
    workers: int = 1


@dataclass(frozen=True)
class DeliveryConfig:
    transport: str = "maildir"
    host: str = "127.0.0.1"
    port: int = 25
    path: str = "var/mail"
    # Recipients per SMTP transaction.
    batch_size: int = 100
    # Parallel SMTP connections to the relay.
    connections: int = 4
    # Seconds an outbox worker may hold claimed deliveries before others may take them.
    lease_seconds: float = 300.0
    # Seconds between polls of the outbox when nothing woke the dispatcher.
    poll_seconds: float = 5.0
    timeout: float = 60.0
    # Hours a temporarily failing delivery is retried before it counts as a hard failure.
    max_age_hours: float = 120.0
    # Dispatcher processes (signing and composing on every core); 0: one per core when
    # [receiver] workers is above 1, else one, in the serving process.
    dispatchers: int = 0


@dataclass(frozen=True)
class ListsConfig:
    domain: str = "lists.example.org"
    digest_hour: int = 7
    timezone: str = "UTC"
    archive_url: str = ""
    # Seconds between the scheduler's checks for digests that are due.
    digest_check_seconds: float = 60.0


@dataclass(frozen=True)
class LimitsConfig:
    """Bounds applied before rich parsing, so crafted input cannot burn the CPU."""

    max_header_bytes: int = 256 * 1024
    max_header_field_bytes: int = 64 * 1024
    max_mime_header_bytes: int = 4096
    max_mime_params: int = 32
    max_mime_depth: int = 20
    max_mime_parts: int = 500
    # Raw copies kept of messages an unexpected error answered with 451; past either cap
    # no copy is written (the client still keeps the message), so even a bug met by every
    # retry cannot fill the disk.
    max_emergency_copies: int = 100
    max_emergency_bytes: int = 100 * 1024 * 1024


@dataclass(frozen=True)
class BouncesConfig:
    """Mailman-style bounce scores: one point per day for permanent bounces."""

    threshold: float = 5.0
    # Days without bounces after which a member's score starts again from zero.
    decay_days: int = 7
    # Comma-separated addresses told when a member's delivery is disabled.
    owners: str = ""


@dataclass(frozen=True)
class SecurityConfig:
    """Tokens and the notices we send in answer to mail."""

    # HMAC key for tokens; empty: a random one generated once and kept in the database.
    secret: str = ""
    # Days a subscription or leave confirmation stays valid.
    confirm_days: int = 7
    # Notices we answer one address with per day, so no auto-responder can loop with us.
    notices_per_day: int = 5
    # Each member's copy of a post carries their own List-Unsubscribe token; off: every
    # copy names the generic leave address.
    personal_unsubscribe: bool = True


@dataclass(frozen=True)
class ModerationConfig:
    # Days a held message waits for a moderator before it is discarded with a note.
    held_max_days: int = 14
    # Seconds between two runs of the expiry of held messages in `serve`.
    expire_every_seconds: float = 3600.0


@dataclass(frozen=True)
class DkimConfig:
    """DKIM signing of everything we send; off until all three keys are set."""

    selector: str = ""
    domain: str = ""
    private_key_file: str = ""
    # Seal posts with ARC too, recording what our front MTA checked (its
    # Authentication-Results with this authserv-id; empty: the [lists] domain).
    arc: bool = False
    arc_authserv_id: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.selector and self.domain and self.private_key_file)


@dataclass(frozen=True)
class WebConfig:
    """The HTTP server of the web role: the archive and one-click unsubscribe (RFC 8058)."""

    host: str = "127.0.0.1"
    port: int = 8080
    # The public URL it is reached at, e.g. "https://lists.example.org", for the links we
    # mail; empty: no one-click links or Archived-At, sign-in links to http://host:port.
    base_url: str = ""


@dataclass(frozen=True)
class DmarcConfig:
    """Keep the author's From when their domain's DMARC policy is p=none. Off by default:
    Gmail rejects unauthenticated gmail.com mail even at p=none, so we rewrite always."""

    lookup: bool = False
    # Seconds one DNS lookup may take; a slow answer means we rewrite.
    timeout: float = 2.0
    # Seconds a domain's policy is remembered.
    cache_seconds: float = 3600.0


@dataclass(frozen=True)
class Config:
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    receiver: ReceiverConfig = field(default_factory=ReceiverConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    lists: ListsConfig = field(default_factory=ListsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    bounces: BouncesConfig = field(default_factory=BouncesConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    moderation: ModerationConfig = field(default_factory=ModerationConfig)
    dkim: DkimConfig = field(default_factory=DkimConfig)
    web: WebConfig = field(default_factory=WebConfig)
    dmarc: DmarcConfig = field(default_factory=DmarcConfig)
    # Folder that relative paths in the file are relative to.
    base_dir: Path = Path(".")

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL with a relative SQLite path made absolute against base_dir."""
        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            rest = url[len(prefix):]
            if rest and rest != ":memory:" and not rest.startswith("file:"):
                return prefix + str((self.base_dir / rest).resolve())
        return url

    @property
    def maildir_path(self) -> Path:
        return (self.base_dir / self.delivery.path).resolve()

    @property
    def dkim_key_path(self) -> Path:
        return (self.base_dir / self.dkim.private_key_file).resolve()


_CLASSES: dict[str, type] = {
    "database": DatabaseConfig,
    "receiver": ReceiverConfig,
    "delivery": DeliveryConfig,
    "lists": ListsConfig,
    "limits": LimitsConfig,
    "bounces": BouncesConfig,
    "security": SecurityConfig,
    "moderation": ModerationConfig,
    "dkim": DkimConfig,
    "web": WebConfig,
    "dmarc": DmarcConfig,
}


def _coerce(where: str, value: Any, default: Any) -> Any:
    """Check a value against the type of its default; ints are accepted where floats are."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, tuple):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        expected = "list of strings" if isinstance(default, tuple) else type(default).__name__
        raise ConfigError(f"{where}: expected {expected}, got {value!r}")
    return value


def _is_network(text: str) -> bool:
    try:
        ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def _validate(cfg: Config, source: str) -> None:
    checks = [
        (cfg.delivery.transport in ("smtp", "maildir"),
         "delivery.transport", 'must be "smtp" or "maildir"'),
        (0 <= cfg.receiver.port < 65536, "receiver.port", "must be 0-65535 (0: any free port)"),
        (0 < cfg.delivery.port < 65536, "delivery.port", "must be 1-65535"),
        (cfg.receiver.max_message_bytes > 0, "receiver.max_message_bytes", "must be > 0"),
        (cfg.receiver.max_recipients > 0, "receiver.max_recipients", "must be > 0"),
        (cfg.delivery.batch_size > 0, "delivery.batch_size", "must be > 0"),
        (cfg.delivery.connections > 0, "delivery.connections", "must be > 0"),
        (0 <= cfg.lists.digest_hour <= 23, "lists.digest_hour", "must be 0-23"),
        (cfg.lists.digest_check_seconds > 0, "lists.digest_check_seconds", "must be > 0"),
        ("@" not in cfg.lists.domain and "." in cfg.lists.domain,
         "lists.domain", "must be a domain name such as lists.example.org"),
        (bool(cfg.database.url), "database.url", "must not be empty"),
        (cfg.receiver.max_sessions > 0, "receiver.max_sessions", "must be > 0"),
        (cfg.receiver.max_sessions_per_ip > 0, "receiver.max_sessions_per_ip", "must be > 0"),
        (all(_is_network(a) for a in cfg.receiver.trusted_relays), "receiver.trusted_relays",
         "must list IP addresses or networks (such as 127.0.0.1 or 10.0.0.0/24)"),
        (cfg.receiver.max_transaction_seconds > 0, "receiver.max_transaction_seconds",
         "must be > 0"),
        (cfg.receiver.max_junk_commands >= 0, "receiver.max_junk_commands", "must be >= 0"),
        (0 < cfg.receiver.workers <= 64, "receiver.workers", "must be 1-64"),
        (cfg.delivery.max_age_hours > 0, "delivery.max_age_hours", "must be > 0"),
        (0 <= cfg.delivery.dispatchers <= 64, "delivery.dispatchers",
         "must be 0-64 (0: one per core with [receiver] workers above 1)"),
        (cfg.bounces.threshold > 0, "bounces.threshold", "must be > 0"),
        (cfg.bounces.decay_days >= 0, "bounces.decay_days", "must be >= 0"),
        (cfg.security.confirm_days > 0, "security.confirm_days", "must be > 0"),
        (cfg.security.notices_per_day >= 0, "security.notices_per_day", "must be >= 0"),
        (cfg.moderation.held_max_days > 0, "moderation.held_max_days", "must be > 0"),
        (cfg.moderation.expire_every_seconds > 0, "moderation.expire_every_seconds",
         "must be > 0"),
        (cfg.dkim.enabled or not (cfg.dkim.selector or cfg.dkim.domain
                                  or cfg.dkim.private_key_file),
         "dkim", "needs selector, domain and private_key_file together"),
        (cfg.dkim.enabled or not cfg.dkim.arc, "dkim.arc",
         "needs selector, domain and private_key_file"),
        (0 < cfg.dmarc.timeout <= 30, "dmarc.timeout", "must be > 0 and <= 30 seconds"),
        (cfg.dmarc.cache_seconds >= 0, "dmarc.cache_seconds", "must be >= 0"),
        (0 <= cfg.web.port < 65536, "web.port", "must be 0-65535 (0: any free port)"),
        (not cfg.web.base_url or cfg.web.base_url.startswith(("https://", "http://")),
         "web.base_url", "must start with https:// (or http:// for testing)"),
    ]
    for ok, key, why in checks:
        if not ok:
            raise ConfigError(f"{source}: {key} {why}")
    try:
        ZoneInfo(cfg.lists.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{source}: lists.timezone {cfg.lists.timezone!r} is unknown") from exc
    if problem := _database_url_problem(cfg):
        raise ConfigError(f"{source}: database.url {problem}")


def _database_url_problem(cfg: Config) -> str | None:
    """Why the database URL cannot work, told before any command or server opens it: a bad
    URL, a driver that is not installed, or a SQLite file in a folder that does not exist
    (a typo must not create a new, empty database elsewhere; only the embedded default's
    own folder is made)."""
    try:
        url = make_url(cfg.database.url)
    except ArgumentError:
        return (f"{cfg.database.url!r} is not a database URL (e.g. {DatabaseConfig.url} "
                "or postgresql+psycopg://user@host/database)")
    try:
        url.get_dialect().import_dbapi()
    except NoSuchModuleError:
        return f"{url.drivername!r} is not a database this SQLAlchemy knows"
    except ImportError as exc:
        return (f"{url.drivername!r} needs the Python module {exc.name!r}, which is not "
                "installed: install it, or use sqlite or postgresql+psycopg")
    folder = _sqlite_folder(cfg)
    if folder is not None and cfg.database.url != DatabaseConfig.url and not folder.is_dir():
        return f"folder {folder} does not exist: create it, or correct the path"
    return None


def _sqlite_folder(cfg: Config) -> Path | None:
    """The folder of a SQLite database file (None for other databases and in-memory)."""
    url = make_url(cfg.database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:") \
            or url.database.startswith("file:"):
        return None
    return Path(url.database).parent


def parse(data: dict[str, Any], base_dir: Path, source: str = DEFAULT_PATH) -> Config:
    """Build a Config from decoded TOML, rejecting unknown sections and keys."""
    cfg = Config(base_dir=base_dir)
    for section, values in data.items():
        cls = _CLASSES.get(section)
        if cls is None:
            known = ", ".join(sorted(_CLASSES))
            raise ConfigError(f"{source}: unknown section [{section}] (known: {known})")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        current = getattr(cfg, section)
        allowed = {f.name for f in fields(cls)}
        changes = {}
        for key, value in values.items():
            if key not in allowed:
                raise ConfigError(
                    f"{source}: unknown key {section}.{key} (known: {', '.join(sorted(allowed))})"
                )
            changes[key] = _coerce(f"{source}: {section}.{key}", value, getattr(current, key))
        cfg = replace(cfg, **{section: replace(current, **changes)})
    _validate(cfg, source)
    return cfg


def load(path: str | Path | None, *, required: bool) -> Config:
    """Read a config file; a missing default file means the embedded defaults."""
    path = Path(path or DEFAULT_PATH)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if required:
            raise ConfigError(f"{path}: config file not found") from None
        return parse({}, Path.cwd(), str(path))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line} is not UTF-8 (TOML files are): save the "
                          "file as UTF-8") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    return parse(data, path.resolve().parent, str(path))
