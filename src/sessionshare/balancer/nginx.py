"""nginx mode: the same topology as an nginx config, and nginx run as a child process.

``render_config`` is a pure function of a ``BalancerConfig`` and an nginx version, so the
generated text is unit-tested without nginx. ``NginxProcess`` writes it into its own
prefix directory (no file outside it is touched, no root needed), runs ``nginx -t`` and
only then starts nginx in the foreground (``daemon off``) as our child.

Route stickiness depends on the version: open-source nginx got ``sticky`` in 1.29.6. Before
that, a ``map`` on the session cookie picks a per-route upstream that lists the route's
node first and every other node as ``backup`` (a dead route falls over to the others, as
the embedded balancer does).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from sessionshare.balancer.config import BalancerConfig, NodeSpec
from sessionshare.errors import ConfigError, SessionShareError

__all__ = [
    "STICKY_ROUTE_VERSION",
    "NginxError",
    "NginxProcess",
    "find_nginx",
    "nginx_version",
    "render_config",
]

#: The first open-source nginx with ``sticky`` (it was nginx Plus only before).
STICKY_ROUTE_VERSION = (1, 29, 6)
UPSTREAM = "sessionshare"
# What core.ids accepts (SPEC §2): 32 hex token, optional -storeNode, then .route.
_ID_PREFIX = r"^[0-9a-f]{32}(?:-[A-Za-z0-9_]{1,32})?\."
_COOKIE_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
#: nginx learnt ``-e`` (error log before the config is read) in 1.19.5.
_ERROR_LOG_FLAG = (1, 19, 5)


class NginxError(SessionShareError):
    """nginx is missing, rejected the generated config, or did not start."""


def find_nginx(binary: str = "nginx") -> str:
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/local/sbin")
    if path is None:
        raise NginxError(
            f"{binary!r} not found on PATH; install it (Debian: apt-get install nginx-light) "
            "or use the embedded balancer (--lb builtin)"
        )
    return path


def nginx_version(binary: str = "nginx") -> tuple[int, int, int]:
    """Parse ``nginx -v`` (it prints ``nginx version: nginx/1.22.1`` on stderr)."""
    result = subprocess.run(
        [find_nginx(binary), "-v"], capture_output=True, text=True, timeout=10, check=False
    )
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", result.stderr + result.stdout)
    if match is None:
        raise NginxError(f"cannot read the version from `nginx -v`: {result.stderr.strip()!r}")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def _seconds(value: float) -> str:
    return f"{int(value)}s" if value == int(value) else f"{int(value * 1000)}ms"


def _whole_seconds(value: float) -> str:
    """``fail_timeout`` is parsed in whole seconds by nginx (``ms`` is rejected)."""
    return f"{max(1, round(value))}s"


def _server_line(spec: NodeSpec, config: BalancerConfig, extra: str = "") -> str:
    health = config.health
    return (
        f"        server {spec.address} weight={spec.weight} max_fails={health.max_fails} "
        f"fail_timeout={_whole_seconds(health.fail_timeout)}{extra};"
    )


def _upstream(name: str, lines: list[str], config: BalancerConfig) -> list[str]:
    return [
        f"    upstream {name} {{",
        *lines,
        f"        keepalive {config.pool_size};",
        f"        keepalive_timeout {_seconds(config.upstream_keepalive)};",
        "    }",
    ]


def _balancing(config: BalancerConfig, version: tuple[int, int, int]) -> tuple[list[str], str]:
    """The upstream blocks (and sticky maps) and the ``proxy_pass`` target."""
    servers = [_server_line(spec, config) for spec in config.nodes]
    cookie = f"$cookie_{config.cookie_name}"
    match config.policy:
        case "round-robin":
            return _upstream(UPSTREAM, servers, config), f"http://{UPSTREAM}"
        case "ip-hash":
            return _upstream(UPSTREAM, ["        ip_hash;", *servers], config), f"http://{UPSTREAM}"
        case "least-conn":
            lines = ["        least_conn;", *servers]
            return _upstream(UPSTREAM, lines, config), f"http://{UPSTREAM}"
    # sticky
    if version >= STICKY_ROUTE_VERSION:
        routed = [_server_line(s, config, f" route={s.route}") for s in config.nodes]
        blocks = [
            f"    map {cookie} $sessionshare_route {{",
            f'        "~{_ID_PREFIX}(?<route>[A-Za-z0-9_]{{1,32}})$" $route;',
            '        default "";',
            "    }",
            *_upstream(UPSTREAM, ["        sticky route $sessionshare_route;", *routed], config),
        ]
        return blocks, f"http://{UPSTREAM}"
    blocks = [f"    map {cookie} $sessionshare_upstream {{", f"        default {UPSTREAM};"]
    blocks += [
        f'        "~{_ID_PREFIX}{spec.route}$" {UPSTREAM}_route_{spec.route};'
        for spec in config.nodes
    ]
    blocks.append("    }")
    blocks += _upstream(UPSTREAM, servers, config)
    for spec in config.nodes:
        lines = [_server_line(spec, config)]
        lines += [_server_line(o, config, " backup") for o in config.nodes if o is not spec]
        blocks += _upstream(f"{UPSTREAM}_route_{spec.route}", lines, config)
    return blocks, "http://$sessionshare_upstream"


def render_config(
    config: BalancerConfig,
    version: tuple[int, int, int] = (1, 22, 1),
    *,
    worker_processes: int = 1,
    run_as: str | None = None,
    extra_locations: Sequence[str] = (),
) -> str:
    """The nginx.conf for ``config``; paths are relative to nginx's ``-p`` prefix.

    ``extra_locations`` are whole ``location`` blocks placed before ``location /``
    (the cluster supervisor adds ``/_cluster/`` this way).
    """
    if _COOKIE_NAME.fullmatch(config.cookie_name) is None:
        raise ConfigError(
            f"cookie name {config.cookie_name!r} cannot be read by nginx's $cookie_ variable"
        )
    host = f"[{config.host}]" if ":" in config.host else config.host
    listen = f"{host}:{config.port}"
    upstreams, target = _balancing(config, version)
    # invalid_header: a malformed response head is retried, as the embedded balancer does.
    next_upstream = "error timeout invalid_header http_502" + (
        " non_idempotent" if config.retry_post else ""
    )
    user = [f"user {run_as};"] if run_as else []
    header_kib = max(1, config.max_header_bytes // 1024)
    lines = [
        f"# sessionshare nginx-config: policy {config.policy}, nginx {'.'.join(map(str, version))}",
        "# Health: passive only (max_fails/fail_timeout); open-source nginx has no active checks.",
        *user,
        f"worker_processes {worker_processes};",
        "pid nginx.pid;",
        "error_log logs/error.log warn;",
        "events {",
        "    worker_connections 4096;",
        "}",
        "http {",
        "    access_log off;",
        "    default_type application/octet-stream;",
        "    client_body_temp_path tmp/client_body;",
        "    proxy_temp_path tmp/proxy;",
        "    fastcgi_temp_path tmp/fastcgi;",
        "    uwsgi_temp_path tmp/uwsgi;",
        "    scgi_temp_path tmp/scgi;",
        f"    keepalive_timeout {_seconds(config.client_keepalive)};",
        "    keepalive_requests 100000;",
        # One large buffer: a request head past 32 KiB overflows it → 494, turned into 431.
        f"    large_client_header_buffers 2 {header_kib}k;",
        f"    client_max_body_size {config.max_body_bytes};",
        *upstreams,
        "    server {",
        f"        listen {listen};",
        "        error_page 494 =431 @sessionshare_431;",
        "        error_page 502 503 =503 @sessionshare_503;",
        "        location @sessionshare_431 {",
        "            default_type text/html;",
        '            return 431 "<!doctype html><h1>431 Request Header Fields Too Large</h1>\\n";',
        "        }",
        "        location @sessionshare_503 {",
        "            default_type text/html;",
        '            return 503 "<!doctype html><h1>503 Service Unavailable</h1>'
        '<p>No healthy node is available. Try again shortly.</p>\\n";',
        "        }",
        *(f"        {line}" for block in extra_locations for line in block.splitlines()),
        "        location / {",
        f"            proxy_pass {target};",
        "            proxy_http_version 1.1;",
        '            proxy_set_header Connection "";',
        "            proxy_set_header Host $http_host;",
        "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "            proxy_set_header X-Real-IP $remote_addr;",
        "            proxy_set_header X-Forwarded-Proto $scheme;",
        # Hop-by-hop headers nginx does not know as such; Expect is answered by nginx.
        '            proxy_set_header Proxy-Connection "";',
        '            proxy_set_header Proxy-Authorization "";',
        '            proxy_set_header Expect "";',
        # Request buffering stays on (nginx's default): a buffered body can be resent to the
        # next node, as the embedded balancer resends bodies it kept (≤ 64 KiB).
        f"            proxy_next_upstream {next_upstream};",
        f"            proxy_next_upstream_tries {config.max_tries or 0};",
        f"            proxy_connect_timeout {_seconds(config.connect_timeout)};",
        f"            proxy_read_timeout {_seconds(config.read_timeout)};",
        f"            proxy_send_timeout {_seconds(config.read_timeout)};",
        "        }",
        "    }",
        "}",
        "",
    ]
    return "\n".join(lines)


class NginxProcess:
    """nginx for one ``BalancerConfig``, in its own prefix directory, as our child.

    ``start()`` runs ``nginx -t`` first: a config nginx rejects never replaces a running
    balancer, and the error shows nginx's own message.
    """

    def __init__(
        self,
        config: BalancerConfig,
        prefix: Path | None = None,
        *,
        binary: str = "nginx",
        worker_processes: int = 1,
        extra_locations: Sequence[str] = (),
    ) -> None:
        self.config = config
        self.extra_locations = tuple(extra_locations)
        self.binary = find_nginx(binary)
        self.version = nginx_version(self.binary)
        self._owns_prefix = prefix is None
        self.prefix = Path(prefix or tempfile.mkdtemp(prefix="sessionshare-nginx-"))
        self.worker_processes = worker_processes
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def conf_path(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.config.port}"

    def write(self) -> Path:
        for sub in ("logs", "tmp"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        # Started as root, nginx drops its workers to "nobody", who cannot enter a private
        # prefix (pytest's and mkdtemp's directories are 0700): keep them as the caller.
        run_as = "root" if os.geteuid() == 0 else None
        text = render_config(
            self.config,
            self.version,
            worker_processes=self.worker_processes,
            run_as=run_as,
            extra_locations=self.extra_locations,
        )
        self.conf_path.write_text(text)
        return self.conf_path

    def command(self, *extra: str) -> list[str]:
        """The nginx command line for this prefix (``extra``: e.g. ``"-g", "daemon off;"``)."""
        argv = [self.binary, "-p", f"{self.prefix}/", "-c", str(self.conf_path)]
        # -e (nginx >= 1.19.5): without it nginx first opens its compiled-in
        # /var/log/nginx/error.log, which a non-root user cannot write (the config's
        # error_log only applies later).
        if self.version >= _ERROR_LOG_FLAG:
            argv += ["-e", str(self.prefix / "logs" / "error.log")]
        return [*argv, *extra]

    def check(self) -> None:
        """``nginx -t``; raises ``NginxError`` with nginx's message when it fails."""
        result = subprocess.run(
            self.command("-t", "-q"), capture_output=True, text=True, timeout=30, check=False
        )
        if result.returncode != 0:
            raise NginxError(f"nginx -t rejected {self.conf_path}:\n{result.stderr.strip()}")

    def start(self, timeout: float = 10.0) -> None:
        self.write()
        self.check()
        self.process = subprocess.Popen(self.command("-g", "daemon off;"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.prefix / "logs" / "error.log").read_text(errors="replace")
                raise NginxError(f"nginx exited with {self.process.returncode}:\n{log[-2000:]}")
            try:
                with socket.create_connection((self.config.host, self.config.port), 0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise NginxError(f"nginx did not listen on {self.url} within {timeout}s")

    def wait(self) -> int:
        assert self.process is not None
        return self.process.wait()

    def signal_stop(self) -> None:
        """Ask nginx to stop gracefully (SIGQUIT: workers finish their requests)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGQUIT lets workers finish requests), SIGKILL if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.signal_stop()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def cleanup(self) -> None:
        """Remove the prefix directory if we created it (a temp dir) and nginx is gone."""
        if self._owns_prefix and (self.process is None or self.process.poll() is not None):
            shutil.rmtree(self.prefix, ignore_errors=True)

    def __repr__(self) -> str:
        if self.process is None:
            state = "not started"
        elif self.process.poll() is None:
            state = f"running pid={self.process.pid}"
        else:
            state = f"exited {self.process.returncode}"
        version = ".".join(map(str, self.version))
        return f"<NginxProcess {state} nginx/{version} {self.url} prefix={self.prefix}>"
