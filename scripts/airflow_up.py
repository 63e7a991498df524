"""A running Airflow 3 for this project: API server, scheduler, DAG processor and triggerer (plus Celery
workers when asked), the metadata database on PostgreSQL, the project's DAGs, connections, pools and
variables from airflow_settings.yaml, and the sandbox vendors.

    python scripts/airflow_up.py up   [--state-dir .state/up] [--port 8080] [--executor LocalExecutor|CeleryExecutor]
    python scripts/airflow_up.py down [--state-dir .state/up]
    python scripts/airflow_up.py status [--state-dir .state/up]

`up` starts from a clean slate every time: it (re)creates its own PostgreSQL databases (metadata and
ledger), a synthetic shop whose "yesterday" is today's yesterday, and fresh sandbox vendors. Everything it
starts carries VENDORPRIVACY_STACK=<state dir> in its environment, runs in its own session, and has its
PID in <state dir>/pids/ and its log in <state dir>/logs/; `down` stops those, then looks for any process
still carrying the marker (an orphaned task process, say) and stops it too, so nothing is leaked.

`source <state dir>/env.sh` gives a shell the same settings (the airflow CLI, `python -m vendorprivacy
erasure file --ledger "$VENDORPRIVACY_LEDGER_URL" ...`). The tests (tests/e2e, tests/faults) use the
`Stack` class directly, with their own state dir, databases and port, and an in-process sandbox.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PG = os.environ.get("VENDORPRIVACY_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432")
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
MARKER = "VENDORPRIVACY_STACK"
ADMIN = "admin"


def log(msg: str) -> None:
    print(f"[airflow-up {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # between fork and exec: SIGTERM when the spawning thread ends
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


def recreate_database(name: str, pg: str = PG) -> str:
    """DROP (forcing other sessions out) and CREATE a database; returns its SQLAlchemy URL."""
    import sqlalchemy as sa

    if not name.replace("_", "").isalnum():
        raise ValueError(f"bad database name {name!r}")
    eng = sa.create_engine(f"{pg}/postgres", isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    eng.dispose()
    return f"{pg}/{name}"


def _pg_conn_json(url: str) -> str:
    """An Airflow postgres connection (JSON) for a postgresql+psycopg2://user@host:port/db URL."""
    import sqlalchemy as sa

    u = sa.engine.make_url(url)
    return json.dumps({"conn_type": "postgres", "host": u.host, "port": u.port or 5432, "login": u.username or "",
                       "password": u.password or "", "schema": u.database})


@dataclass
class Stack:
    """One Airflow stack. `start()` brings it up (bounded waits), `stop()` takes it down."""

    state_dir: Path
    db: str = "airflow_up"
    ledger_db: str = "airflow_up_ledger"
    port: int | None = None
    executor: str = "LocalExecutor"
    celery_workers: int = 2
    parallelism: int = 4
    customers: int = 2000
    seed: int = 42
    as_of: dt.date | None = None          # the shop's as-of date (default: today, UTC)
    sandbox_env: dict[str, str] | None = None  # given: use these vendor connections, start no sandbox process
    extra_env: dict[str, str] = field(default_factory=dict)
    die_with_parent: bool = False         # tests: children get SIGTERM if the test process dies
    procs: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)
    last_stop_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir).resolve()

    # ------------------------------------------------------------------ paths and settings
    @property
    def pid_dir(self) -> Path:
        return self.state_dir / "pids"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def airflow_home(self) -> Path:
        return self.state_dir / "airflow"

    @property
    def info_path(self) -> Path:
        return self.state_dir / "stack.json"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metadata_url(self) -> str:
        return f"{PG}/{self.db}"

    @property
    def ledger_url(self) -> str:
        return f"{PG}/{self.ledger_db}"

    @property
    def shop_path(self) -> Path:
        return self.state_dir / "shop.db"

    @property
    def staging_dir(self) -> Path:
        return self.state_dir / "staging"

    @property
    def reports_dir(self) -> Path:
        return self.state_dir / "reports"

    @property
    def passwords_file(self) -> Path:
        return self.state_dir / "passwords.json"

    def admin_password(self) -> str:
        return json.loads(self.passwords_file.read_text())[ADMIN]

    def _secrets(self) -> dict[str, str]:
        path = self.state_dir / "secrets.json"
        if not path.exists():
            from cryptography.fernet import Fernet

            values = {"jwt": secrets.token_urlsafe(32), "api": secrets.token_urlsafe(32),
                      "fernet": Fernet.generate_key().decode(), "identity": secrets.token_urlsafe(32)}
            path.write_text(json.dumps(values))
            path.chmod(0o600)
        return json.loads(path.read_text())

    def env(self) -> dict[str, str]:
        """The environment every component (and a shell that sources env.sh) runs with."""
        from vendorprivacy.orchestration.airflow_settings import connection_env

        s = self._secrets()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_"))}
        settings = ROOT / "airflow_settings.yaml"
        env.update(connection_env(settings, base_dir=ROOT))
        keys = json.loads(env["AIRFLOW_CONN_VENDORPRIVACY_KEYS"])
        keys.setdefault("extra", {}).setdefault("identity_key", s["identity"])  # demo-only: per stack, never committed
        env.update({
            "AIRFLOW_CONN_VENDORPRIVACY_KEYS": json.dumps(keys),
            "AIRFLOW_CONN_SHOP_DB": json.dumps({"conn_type": "sqlite", "host": str(self.shop_path)}),
            "AIRFLOW_CONN_LEDGER_DB": _pg_conn_json(self.ledger_url),
        })
        env.update(self.sandbox_env or self._sandbox_env_from_file())
        home = self.airflow_home
        env.update({
            MARKER: str(self.state_dir),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": self.executor,
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(self.parallelism),
            "AIRFLOW__CORE__FERNET_KEY": s["fernet"],
            "AIRFLOW__CORE__AUTH_MANAGER":
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_url,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": s["api"],
            "AIRFLOW__API_AUTH__JWT_SECRET": s["jwt"],
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "300",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "60",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__TRIGGERER__CAPACITY": "50",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "VENDORPRIVACY_STATE_DIR": str(self.state_dir),
            "VENDORPRIVACY_REPORTS_DIR": str(self.reports_dir),
            "VENDORPRIVACY_LEDGER_URL": self.ledger_url,
            "VENDORPRIVACY_SHOP_URL": f"sqlite:///{self.shop_path}",
            "GX_ANALYTICS_ENABLED": "False",
            "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT)]
                                          + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])),
        })
        if self.executor == "CeleryExecutor":
            q = self._celery_queue()
            env.update({
                "AIRFLOW__CELERY__BROKER_URL": os.environ.get("VENDORPRIVACY_CELERY_BROKER", "redis://127.0.0.1:6379/7"),
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.metadata_url.replace("+psycopg2", ""),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
                "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
                "AIRFLOW__OPERATORS__DEFAULT_QUEUE": q,  # a queue of our own: other users of this Redis never see our tasks
                "AIRFLOW__CELERY__DEFAULT_QUEUE": q,
            })
        env.update(self.extra_env)
        return env

    def _celery_queue(self) -> str:
        path = self.state_dir / "celery_queue"
        if not path.exists():
            path.write_text(f"vendorprivacy_{secrets.token_hex(4)}")
        return path.read_text().strip()

    def _sandbox_env_from_file(self) -> dict[str, str]:
        path = self.state_dir / "sandbox.env"
        out = {}
        if path.exists():
            for line in path.read_text().splitlines():
                if line.startswith("export "):
                    key, _, value = line[len("export "):].partition("=")
                    out[key] = shlex.split(value)[0]
        return out

    # ------------------------------------------------------------------ processes
    def _spawn(self, name: str, argv: list[str], env: dict[str, str], stdout: Path | None = None) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        logf = open(self.log_dir / f"{name}.log", "ab")
        out = open(stdout, "wb") if stdout else logf
        try:
            proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=logf,
                                    start_new_session=True,
                                    preexec_fn=_die_with_parent if self.die_with_parent else None)
        finally:
            logf.close()
            if stdout:
                out.close()
        (self.pid_dir / f"{name}.pid").write_text(str(proc.pid))
        self.procs[name] = proc
        return proc

    def _airflow(self, *args: str, env: dict[str, str], timeout: float = 300) -> str:
        r = subprocess.run([sys.executable, "-m", "airflow", *args], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
        return r.stdout

    def running_pids(self) -> dict[str, int]:
        out = {}
        if self.pid_dir.exists():
            for f in self.pid_dir.glob("*.pid"):
                try:
                    pid = int(f.read_text())
                    os.kill(pid, 0)
                    out[f.stem] = pid
                except (ValueError, ProcessLookupError, PermissionError):
                    pass
        return out

    def start_component(self, name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """(Re)start one component: api-server, scheduler, dag-processor, triggerer or worker-<n>."""
        env = env or self.env()
        py = [sys.executable, "-m", "airflow"]
        if name == "api-server":
            argv = py + ["api-server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        elif name.startswith("worker-"):
            if env.get("VENDORPRIVACY_STAGING_URL"):  # each worker its own disk, as on separate machines
                env = {**env, "VENDORPRIVACY_STAGING_DIR": str(self.staging_dir / name)}
            argv = py + ["celery", "worker", "--concurrency", "2", "--celery-hostname", f"{name}@%h",
                         "--queues", env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"], "--skip-serve-logs"]
        else:
            argv = py + [name]
        return self._spawn(name, argv, env)

    def stop_component(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        pidf = self.pid_dir / f"{name}.pid"
        if not pidf.exists():
            return
        _stop_tree(int(pidf.read_text()), sig, timeout)
        pidf.unlink(missing_ok=True)
        self.procs.pop(name, None)

    # ------------------------------------------------------------------ up / down
    def start(self, timeout: float = 420) -> Stack:
        t0 = time.monotonic()
        if self.running_pids():
            raise RuntimeError(f"a stack is already running from {self.state_dir} "
                               f"({', '.join(self.running_pids())}): `make down` first")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for leftover in ("sandbox", "staging", "reports", "airflow", "logs", "pids"):
            _rmtree(self.state_dir / leftover)
        for f in ("shop.db", "passwords.json", "sandbox.env", "stack.json", "celery_queue"):
            (self.state_dir / f).unlink(missing_ok=True)
        if self.port is None:
            self.port = free_port()
        elif not _port_free(self.port):
            raise RuntimeError(f"port {self.port} is taken: choose another with --port / AIRFLOW_UP_PORT")
        try:
            self._start(t0, timeout)
        except BaseException:
            log(f"start failed; stopping what was started (logs in {self.log_dir})")
            self.stop()
            raise
        return self

    def _start(self, t0: float, timeout: float) -> None:
        from vendorprivacy.shop.generate import generate_shop

        log(f"PostgreSQL databases {self.db} (metadata) and {self.ledger_db} (ledger): created afresh")
        recreate_database(self.db)
        recreate_database(self.ledger_db)
        as_of = self.as_of or dt.datetime.now(dt.timezone.utc).date()
        log(f"shop: {self.customers} synthetic customers, as of {as_of} ({self.shop_path})")
        generate_shop(f"sqlite:///{self.shop_path}", customers=self.customers, seed=self.seed, as_of=as_of)
        self.passwords_file.write_text(json.dumps({ADMIN: secrets.token_urlsafe(12)}))
        self.passwords_file.chmod(0o600)
        if self.sandbox_env is None:
            self._start_sandbox()
        env = self.env()
        self._write_env_sh(env)
        self.staging_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        log("airflow db migrate")
        self._airflow("db", "migrate", env=env, timeout=300)
        self._load_pools_and_variables(env)
        names = list(COMPONENTS) + ([f"worker-{i + 1}" for i in range(self.celery_workers)]
                                    if self.executor == "CeleryExecutor" else [])
        for name in names:
            self.start_component(name, env)
        log(f"started {', '.join(names)} ({self.executor}); waiting for the API and the DAGs")
        self.info_path.write_text(json.dumps({"url": self.url, "port": self.port, "executor": self.executor,
                                              "metadata_db": self.db, "ledger_db": self.ledger_db,
                                              "components": names}, indent=2))
        remaining = max(30.0, timeout - (time.monotonic() - t0))
        self.wait_healthy(timeout=remaining)
        self.wait_dags(timeout=max(30.0, timeout - (time.monotonic() - t0)))
        log(f"up in {time.monotonic() - t0:.0f}s: {self.url} (user {ADMIN}, password in {self.passwords_file}); "
            f"logs in {self.log_dir}; `source {self.state_dir / 'env.sh'}` for the same settings in a shell")

    def _start_sandbox(self) -> None:
        log("sandbox vendors (OpenSSH sftp, moto S3, HTTPS vendor API)")
        proc = self._spawn("sandbox", [sys.executable, "-m", "sandbox", "up", "--state-dir", str(self.state_dir / "sandbox")],
                           {**os.environ, MARKER: str(self.state_dir)}, stdout=self.state_dir / "sandbox.env")
        deadline = time.monotonic() + 90
        while "sandbox up in" not in (self.log_dir / "sandbox.log").read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the sandbox did not start:\n" + (self.log_dir / "sandbox.log").read_text()[-3000:])
            time.sleep(0.2)

    def _write_env_sh(self, env: dict[str, str]) -> None:
        keep = {k: v for k, v in env.items() if k.startswith(("AIRFLOW", "VENDORPRIVACY", "GX_", MARKER))}
        keep["PYTHONPATH"] = env["PYTHONPATH"]
        path = self.state_dir / "env.sh"
        path.write_text("# source me: the settings of the running stack (demo-only secrets)\n"
                        + "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(keep.items())))
        path.chmod(0o600)

    def _load_pools_and_variables(self, env: dict[str, str]) -> None:
        from vendorprivacy.orchestration.airflow_settings import pools, variables

        settings = ROOT / "airflow_settings.yaml"
        pool_file = self.state_dir / "pools.json"
        pool_file.write_text(json.dumps({p["pool_name"]: {"slots": p["pool_slot"],
                                                           "description": p.get("pool_description", ""),
                                                           "include_deferred": False} for p in pools(settings)}))
        values = {}
        for name, value in variables(settings).items():
            if isinstance(value, str) and value.startswith(".state/"):  # the demo's state dir -> this stack's
                value = str(self.state_dir / value[len(".state/"):])
            values[name] = value
        var_file = self.state_dir / "variables.json"
        var_file.write_text(json.dumps(values))
        log(f"pools ({len(pools(settings))}) and variables ({len(values)}) from airflow_settings.yaml")
        self._airflow("pools", "import", str(pool_file), env=env, timeout=120)
        self._airflow("variables", "import", str(var_file), env=env, timeout=120)

    def stop(self, timeout: float = 30) -> list[int]:
        """Stop every component (SIGTERM, then SIGKILL after `timeout`), then every straggler carrying the
        marker. Returns the pids of stragglers found (should be empty)."""
        pids = {}
        if self.pid_dir.exists():
            for f in self.pid_dir.glob("*.pid"):
                try:
                    pids[f.stem] = int(f.read_text())
                except ValueError:
                    pass
        # the scheduler first (it stops handing out work), then everything else at once; SIGKILL what lingers
        t0 = time.monotonic()
        first = [n for n in pids if n == "scheduler"]
        if first:
            _stop_tree(pids["scheduler"], signal.SIGTERM, min(timeout, 15))
        family = []
        for name in pids:
            if name not in first:
                family += _signal_tree(pids[name], signal.SIGTERM)
        _reap(family, timeout)
        for name in pids:
            (self.pid_dir / f"{name}.pid").unlink(missing_ok=True)
        self.last_stop_seconds = time.monotonic() - t0
        stragglers = marked_processes(self.state_dir)
        for pid in stragglers:
            _stop_tree(pid, signal.SIGTERM, 5)
        self.procs.clear()
        return stragglers

    # ------------------------------------------------------------------ readiness
    def wait_healthy(self, timeout: float) -> dict:
        import httpx

        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{_tail(self.log_dir / f'{name}.log')}")
            try:
                last = httpx.get(f"{self.url}/api/v2/monitor/health", timeout=5).json()
                parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
                if all((last.get(p) or {}).get("status") == "healthy" for p in parts):
                    return last
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(1)
        raise TimeoutError(f"Airflow not healthy after {timeout:.0f}s (last: {last}); logs in {self.log_dir}")

    def wait_dags(self, timeout: float, dag_ids: list[str] | None = None) -> list[str]:
        from vendorprivacy.policy import load_register

        want = set(dag_ids or ["erasure_propagation"] + [f"share_{f.id}" for _, f in load_register().feeds()])
        api = self.api()
        deadline = time.monotonic() + timeout
        have: set[str] = set()
        while time.monotonic() < deadline:
            have = {d["dag_id"] for d in api.get("/api/v2/dags", params={"limit": 100}).json()["dags"]}
            if want <= have:
                errors = api.get("/api/v2/importErrors").json()
                if errors.get("total_entries"):
                    raise RuntimeError(f"DAG import errors: {errors}")
                return sorted(have)
            time.sleep(2)
        raise TimeoutError(f"DAGs not parsed after {timeout:.0f}s: missing {sorted(want - have)}")

    def api(self, username: str = ADMIN, password: str | None = None) -> "Api":
        return Api(self.url, username, password or self.admin_password())


class Api:
    """REST API v2, authenticated the way the UI is: POST /auth/token, then a bearer token."""

    def __init__(self, url: str, username: str, password: str) -> None:
        import httpx

        self.url = url
        r = httpx.post(f"{url}/auth/token", json={"username": username, "password": password}, timeout=30)
        r.raise_for_status()
        self.client = httpx.Client(base_url=url, timeout=30,
                                   headers={"Authorization": f"Bearer {r.json()['access_token']}"})

    def get(self, path: str, **kw):
        r = self.client.get(path, **kw)
        r.raise_for_status()
        return r

    def post(self, path: str, json_body: dict, **kw):
        r = self.client.post(path, json=json_body, **kw)
        r.raise_for_status()
        return r

    def patch(self, path: str, json_body: dict, **kw):
        r = self.client.patch(path, json=json_body, **kw)
        r.raise_for_status()
        return r

    # ---- what the UI does
    def unpause(self, dag_id: str) -> dict:
        return self.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False}).json()

    def pause(self, dag_id: str) -> dict:
        return self.patch(f"/api/v2/dags/{dag_id}", {"is_paused": True}).json()

    def trigger(self, dag_id: str, conf: dict, note: str | None = None) -> dict:
        body: dict[str, Any] = {"logical_date": None, "conf": conf}
        if note:
            body["note"] = note
        return self.post(f"/api/v2/dags/{dag_id}/dagRuns", body).json()

    def run(self, dag_id: str, run_id: str) -> dict:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()

    def runs(self, dag_id: str) -> list[dict]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100}).json()["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 200}).json()["task_instances"]

    def wait_run(self, dag_id: str, run_id: str, timeout: float, states=("success", "failed"),
                 on_poll=None) -> dict:
        deadline = time.monotonic() + timeout
        run: dict = {}
        while time.monotonic() < deadline:
            run = self.run(dag_id, run_id)
            if run["state"] in states:
                return run
            if on_poll:
                on_poll(run)
            time.sleep(2)
        tis = {t["task_id"] + (f"[{t['map_index']}]" if t["map_index"] >= 0 else ""): t["state"]
               for t in self.task_instances(dag_id, run_id)}
        raise TimeoutError(f"{dag_id} run {run_id} still {run.get('state')} after {timeout:.0f}s: {tis}")


# ---------------------------------------------------------------------- process helpers
def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def _signal_tree(pid: int, sig: int) -> list:
    """Signal a process, its process group and every descendant; returns them (psutil.Process)."""
    import psutil

    family = [pid] + _descendants(pid)
    try:
        os.killpg(pid, sig)  # every component leads its own session/group
    except (ProcessLookupError, PermissionError):
        pass
    procs = []
    for p in family:
        try:
            os.kill(p, sig)
            procs.append(psutil.Process(p))
        except (ProcessLookupError, psutil.Error):
            pass
    return procs


def _reap(procs: list, timeout: float) -> None:
    """Wait for the processes to exit; SIGKILL those still alive after `timeout`."""
    import psutil

    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)


def _stop_tree(pid: int, sig: int, timeout: float) -> None:
    """Signal a process tree; SIGKILL what is left after `timeout`."""
    _reap(_signal_tree(pid, sig), timeout)
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def marked_processes(state_dir: Path) -> list[int]:
    """Live processes whose environment carries VENDORPRIVACY_STACK=<state_dir> (ours, and only ours)."""
    needle = f"{MARKER}={Path(state_dir).resolve()}".encode()
    me = os.getpid()
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == me:
            continue
        try:
            if needle in (d / "environ").read_bytes().split(b"\0"):
                stat = (d / "stat").read_text()
                if ") Z" not in stat:  # zombies are already gone
                    found.append(int(d.name))
        except OSError:
            pass
    return found


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["up", "down", "status"])
    p.add_argument("--state-dir", type=Path, default=ROOT / ".state" / "up")
    p.add_argument("--port", type=int, default=int(os.environ.get("AIRFLOW_UP_PORT", "8080")))
    p.add_argument("--db", default=os.environ.get("AIRFLOW_UP_DB", "airflow_up"),
                   help="metadata database name (the ledger goes to <db>_ledger)")
    p.add_argument("--executor", default="LocalExecutor", choices=["LocalExecutor", "CeleryExecutor"])
    p.add_argument("--workers", type=int, default=2, help="Celery workers (CeleryExecutor only)")
    p.add_argument("--customers", type=int, default=2000)
    p.add_argument("--timeout", type=float, default=420, help="seconds to wait for everything to be ready")
    args = p.parse_args(argv)
    stack = Stack(args.state_dir, db=args.db, ledger_db=f"{args.db}_ledger", port=args.port,
                  executor=args.executor, celery_workers=args.workers, customers=args.customers)
    if args.command == "up":
        stack.start(timeout=args.timeout)
        return 0
    if args.command == "down":
        running = stack.running_pids()
        left = stack.stop()
        again = marked_processes(stack.state_dir)
        log(f"stopped {', '.join(sorted(running)) or 'nothing (was not running)'}"
            + (f" in {stack.last_stop_seconds:.0f}s" if running else "")
            + (f"; {len(left)} straggler(s) stopped" if left else "")
            + (f"; STILL RUNNING: {again}" if again else "; no process left"))
        return 1 if again else 0
    running = stack.running_pids()
    info = json.loads(stack.info_path.read_text()) if stack.info_path.exists() else {}
    print(json.dumps({"running": running, **info}, indent=2))
    return 0 if running else 3


if __name__ == "__main__":
    sys.path[:0] = [str(ROOT / "include"), str(ROOT)]
    sys.exit(main())
