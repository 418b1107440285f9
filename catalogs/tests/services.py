"""The catalog tier's servers: moto (Glue, IAM), MinIO and Trino 476.

Each runs as a process group of its own (so it is stopped whole) on a free
port of 127.0.0.1, logs to CATALOG_TMP/logs/NAME.log and writes its PID to
CATALOG_TMP/pids/NAME.pid, which catalogs/test.sh's EXIT trap reads to end a
server this session did not stop. `start_*` launches without waiting, so
several servers start at once; `Server.wait()` then waits until it answers.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import trino

REGION = "us-east-1"


_HANDED_OUT = set()


def free_port():
    """A port of 127.0.0.1 that is free now and was not handed out before in
    this process. Servers start side by side, and one that is not listening
    yet leaves its port free for the kernel to give out again: MinIO and
    Trino once got the same one, and Trino failed to bind."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def http_get(url, timeout=2):
    """(status, body) of a GET, or (None, error) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, urllib.error.URLError) as e:
        return None, str(e)


class Server:
    """One server process: started, waited for, measured, stopped."""

    def __init__(self, name, cmd, ready, tmp, env=None, cwd=None):
        self.name, self.cmd, self.ready = name, cmd, ready
        self.log = Path(tmp) / "logs" / f"{name}.log"
        self.pidfile = Path(tmp) / "pids" / f"{name}.pid"
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.proc = None
        self.startup_secs = None

    def start(self):
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        self._t0 = time.monotonic()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, cwd=self.cwd, start_new_session=True,
            )
        self.pidfile.write_text(f"{self.proc.pid}\n")
        return self

    def wait(self, timeout=180):
        """Until `ready()` is true; the log's tail in the error when it exits or times out."""
        while not self.ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}) during startup\n{self.tail()}")
            if time.monotonic() - self._t0 > timeout:
                raise RuntimeError(f"{self.name} not ready after {timeout}s\n{self.tail()}")
            time.sleep(0.25)
        if self.startup_secs is None:
            self.startup_secs = time.monotonic() - self._t0
        return self

    def memory_mib(self, field="VmRSS"):
        """Memory of the server's main process, MiB: resident now (VmRSS) or at its peak (VmHWM)."""
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) // 1024
        except OSError:
            pass
        return None

    def tail(self, lines=30):
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return f"(no log at {self.log})"
        return f"--- tail of {self.log} ---\n" + "\n".join(text[-lines:])

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            self.pidfile.unlink(missing_ok=True)
            return
        for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(grace)
                break
            except subprocess.TimeoutExpired:
                continue
        self.pidfile.unlink(missing_ok=True)


def start_moto(tmp, name="moto", iam_after=None):
    """moto's server: every AWS service moto has (Glue, IAM, STS...) at one endpoint.
    iam_after=N: IAM enforced after N requests (INITIAL_NO_AUTH_ACTION_COUNT), on
    Glue's own resources (moto_glue_iam.py)."""
    port = free_port()
    if iam_after is None:
        cmd, env = [os.environ["CATALOG_MOTO_SERVER"]], None
    else:
        cmd = [sys.executable, str(Path(__file__).with_name("moto_glue_iam.py"))]
        env = {"INITIAL_NO_AUTH_ACTION_COUNT": str(iam_after)}
    server = Server(
        name,
        [*cmd, "-H", "127.0.0.1", "-p", str(port)],
        lambda: http_get(f"http://127.0.0.1:{port}/moto-api/")[0] == 200,
        tmp, env=env,
    )
    server.endpoint = f"http://127.0.0.1:{port}"
    return server.start()


def start_minio(tmp, name="minio"):
    """MinIO with a root user of this run and the site region us-east-1."""
    port = free_port()
    server = Server(
        name,
        [os.environ["CATALOG_MINIO_BIN"], "server", str(Path(tmp) / f"{name}-data"),
         "--address", f"127.0.0.1:{port}", "--console-address", f"127.0.0.1:{free_port()}"],
        lambda: http_get(f"http://127.0.0.1:{port}/minio/health/ready")[0] == 200,
        tmp,
        env={"MINIO_ROOT_USER": "catalog-root", "MINIO_ROOT_PASSWORD": uuid.uuid4().hex,
             "MINIO_SITE_REGION": REGION, "MINIO_UPDATE": "off", "MINIO_BROWSER": "off"},
    )
    server.endpoint = f"http://127.0.0.1:{port}"
    server.root_user = server.env["MINIO_ROOT_USER"]
    server.root_password = server.env["MINIO_ROOT_PASSWORD"]
    return server.start()


def trino_query(port, sql, dicts=False, patience=60):
    """The rows of one statement (dicts: each row a dict by column name), on catalog `delta`.

    Retried while it fails with NO_NODES_AVAILABLE, for `patience` seconds: for
    a few seconds after it is ready, Trino does not yet know that its own node
    serves the catalog (the node's announcement is polled), and the first scans
    of a Delta table fail so."""
    deadline = time.monotonic() + patience
    while True:
        conn = trino.dbapi.connect(host="127.0.0.1", port=port, user="catalog-test", catalog="delta", request_timeout=120)
        try:
            cur = conn.cursor()
            cur.execute(sql)
            rows = cur.fetchall()
            if dicts:
                names = [d[0] for d in cur.description]
                return [dict(zip(names, row)) for row in rows]
            return rows
        except trino.exceptions.TrinoQueryError as e:
            if e.error_name != "NO_NODES_AVAILABLE" or time.monotonic() > deadline:
                raise
        finally:
            conn.close()
        time.sleep(1)


def write_properties(path, props):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))


def start_trino(tmp, glue, s3, name="trino", heap="1G"):
    """Trino 476, coordinator and worker in one JVM, with one catalog `delta`:
    the Delta Lake connector on the Glue metastore at `glue` (a moto Server)
    and native S3 at `s3` (a MinIO Server, root credentials). Its etc/ is
    written to CATALOG_TMP/NAME/etc; the JVM runs directly (no launcher)."""
    home = Path(os.environ["CATALOG_TRINO_HOME"])
    root = Path(tmp) / name
    etc = root / "etc"
    port = free_port()
    node = {
        "node.environment": "catalog_test",
        "node.id": str(uuid.uuid4()),
        "node.data-dir": root / "data",
        "node.internal-address": "127.0.0.1",
        "node.bind-ip": "127.0.0.1",
    }
    write_properties(etc / "node.properties", node)
    jvm = [f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:+ExitOnOutOfMemoryError", "-XX:-OmitStackTraceInFastThrow",
           "-XX:ReservedCodeCacheSize=256M", "-Djdk.attach.allowAttachSelf=true", "-Dfile.encoding=UTF-8",
           "-XX:+EnableDynamicAgentLoading",
           # JDK 25 warns of these at every start, Trino uses both.
           "--enable-native-access=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow"]
    (etc / "jvm.config").write_text("\n".join(jvm) + "\n")
    write_properties(etc / "config.properties", {
        "coordinator": "true",
        "node-scheduler.include-coordinator": "true",
        "http-server.http.port": port,
        "discovery.uri": f"http://127.0.0.1:{port}",
        "plugin.dir": home / "plugin",
        "catalog.config-dir": etc / "catalog",
    })
    write_properties(etc / "log.properties", {"io.trino": "INFO"})
    write_properties(etc / "catalog" / "delta.properties", {
        "connector.name": "delta_lake",
        "hive.metastore": "glue",
        "hive.metastore.glue.region": REGION,
        "hive.metastore.glue.endpoint-url": glue.endpoint,
        "hive.metastore.glue.aws-access-key": "catalog-test",
        "hive.metastore.glue.aws-secret-key": "catalog-test",
        "fs.native-s3.enabled": "true",
        "s3.endpoint": s3.endpoint,
        "s3.region": REGION,
        "s3.path-style-access": "true",
        "s3.aws-access-key": s3.root_user,
        "s3.aws-secret-key": s3.root_password,
    })

    def ready():
        status, body = http_get(f"http://127.0.0.1:{port}/v1/info")
        if status != 200 or json.loads(body).get("starting") is not False:
            return False
        # Started is not ready: until the scheduler sees its own node active
        # (a few seconds later), queries fail with NO_NODES_AVAILABLE.
        try:
            [[active]] = trino_query(port, "SELECT count(*) FROM system.runtime.nodes WHERE state = 'active'", patience=0)
        except (trino.exceptions.Error, trino.exceptions.HttpError, OSError):
            return False
        return active > 0

    server = Server(
        name,
        [os.environ["CATALOG_JAVA"], *jvm, "-cp", str(home / "lib" / "*"),
         # What bin/launcher would pass: node.properties as system properties.
         *(f"-D{k}={v}" for k, v in node.items()),
         f"-Dconfig={etc / 'config.properties'}", f"-Dlog.levels-file={etc / 'log.properties'}",
         "-Dlog.enable-console=true", "io.trino.server.TrinoServer"],
        ready, tmp, cwd=root,
    )
    server.endpoint = f"http://127.0.0.1:{port}"
    server.port = port
    return server.start()
