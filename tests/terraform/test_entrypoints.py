"""What the tasks run, against what the image can run.

A task's command is appended to the image's ENTRYPOINT: with ``ENTRYPOINT ["queuefront"]``,
``["python", "-m", "service"]`` becomes ``queuefront python -m service`` and the task dies
with "unknown role 'python'". So each command in deploy/terraform (task definitions, health
checks, the run-task overrides) is put behind the Dockerfile's ENTRYPOINT and resolved the
way the image resolves it: the console script in pyproject.toml, then the role among the
entry points it declares (group ``queuefront.roles``).
The config the image ships (route table, RDS CA bundle) is checked against what Terraform
points the processes at.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pytest

from queuefront import cli, ports
from queuefront.routes import load_routes
from queuefront.settings import Settings
from tests.terraform.tfmodel import MODULES_DIR, REPO, TF_ROOT, load_module, parse_file, unquote

DOCKERFILE = REPO / "Dockerfile"


def stages() -> dict[str, list[tuple[str, str]]]:
    """Dockerfile stages by name: their (instruction, arguments), continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            current = args.split(" AS ")[-1].strip() if " AS " in args else args
            out[current] = []
        out[current].append((instruction.upper(), args.strip()))
    return out


def default_target() -> str:
    """`docker build .` builds the last stage."""
    return list(stages())[-1]


def effective(stage: str, instruction: str) -> list[str]:
    """Every value of ``instruction`` in ``stage`` and the stages it is built FROM."""
    chain = []
    all_stages = stages()
    while stage in all_stages:
        chain.append(stage)
        stage = all_stages[stage][0][1].split(" AS ")[0].strip()
    values = []
    for name in reversed(chain):
        values += [args for ins, args in all_stages[name] if ins == instruction]
    return values


def entrypoint(stage: str) -> list[str]:
    values = effective(stage, "ENTRYPOINT")
    assert values, f"stage {stage} has no ENTRYPOINT"
    parsed = json.loads(values[-1])
    assert isinstance(parsed, list)
    return [str(p) for p in parsed]


def env(stage: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for args in effective(stage, "ENV"):
        for key, value in re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", args):
            out[key] = value
    return out


def console_script(name: str) -> str:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    return str(scripts[name])


def declared_roles() -> dict[str, str]:
    """The roles pyproject.toml declares: name -> ``module:main``."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {k: str(v) for k, v in project["entry-points"][cli.ROLE_GROUP].items()}


def resolve(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs ``argv`` (entrypoint + command) as the image would, up to the role's entry
    point, and returns the role that ran; SystemExit (unknown role) propagates."""
    program, *args = argv
    target = console_script(program)
    module, _, func = target.partition(":")
    assert (module, func) == ("queuefront.cli", "main"), target
    ran: list[str] = []

    def recorder(entry: EntryPoint) -> cli.Main:
        return lambda: ran.append(entry.name)

    def fake_healthcheck(environ: object = None) -> int:
        ran.append("healthcheck")
        return 0

    monkeypatch.setattr(cli, "load", recorder)
    monkeypatch.setattr(cli, "healthcheck", fake_healthcheck)
    try:
        cli.main(args)
    except SystemExit as exc:
        if ran == ["healthcheck"] and exc.code == 0:
            return "healthcheck"
        raise
    assert len(ran) == 1, ran
    return ran[0]


def task_commands() -> dict[str, list[str]]:
    processes = load_module(MODULES_DIR / "compute").locals["processes"]
    return {p: [unquote(c) for c in body["command"]] for p, body in processes.items()}


def test_the_default_image_is_the_production_one() -> None:
    assert default_target() == "production"
    prod = effective("production", "COPY") + effective("production", "ADD")
    assert not [c for c in prod if "examples" in c], f"demo code in the production image: {prod}"
    assert any("examples" in c for c in effective("demo", "COPY")), "the demo target has examples/"


def test_entrypoint_is_the_console_script() -> None:
    for stage in ("production", "demo"):
        assert entrypoint(stage) == ["queuefront"]
    assert console_script("queuefront") == "queuefront.cli:main"


@pytest.mark.parametrize("process", sorted(task_commands()))
def test_task_command_runs_its_role(process: str, monkeypatch: pytest.MonkeyPatch) -> None:
    command = task_commands()[process]
    role = resolve([*entrypoint("production"), *command], monkeypatch)
    assert role == process, f"{process}'s task runs the role {role!r}"


def test_health_check_command_is_a_role(monkeypatch: pytest.MonkeyPatch) -> None:
    locals_ = load_module(MODULES_DIR / "compute").locals
    check = [unquote(c) for c in locals_["health_check_command"]]
    assert check[0] == "CMD", check  # exec form: no ENTRYPOINT, the binary itself
    assert resolve(check[1:], monkeypatch) == "healthcheck"
    healthcheck = effective("production", "HEALTHCHECK")[-1]
    assert json.loads(healthcheck.split("CMD", 1)[1].strip()) == ["queuefront", "healthcheck"]


def test_run_task_overrides_run_the_admin_role(monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = (MODULES_DIR / "compute" / "outputs.tf").read_text()
    overrides = re.findall(r"command = \[([^\]]*)\]", outputs)
    assert len(overrides) == 2, overrides  # redrive_<queue> and reconcile
    for raw in overrides:
        # a variable (the queue name) stands for a real queue's name
        command = [
            unquote(c.strip()) if c.strip().startswith('"') else "queuefront-high"
            for c in raw.split(",")
        ]
        assert command[1] in {"redrive", "reconcile"}, command
        assert resolve([*entrypoint("production"), *command], monkeypatch) == "admin"


def test_the_old_commands_would_not_start() -> None:
    """The defect this guards: a python -m command behind the queuefront ENTRYPOINT."""
    with pytest.raises(SystemExit, match="unknown role 'python'"):
        cli.main(["python", "-m", "service"])


def test_an_unknown_role_names_every_role() -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["nosuch"])
    names = ", ".join([*sorted(declared_roles()), "healthcheck"])
    assert exited.value.code == f"unknown role 'nosuch'; one of: {names}"


def test_the_installed_roles_are_the_declared_ones() -> None:
    """A stale install (pyproject.toml changed, ``make deps`` not run) fails here first."""
    installed = {e.name: e.value for e in entry_points(group=cli.ROLE_GROUP)}
    assert installed == declared_roles()


@pytest.mark.parametrize("role", sorted(declared_roles()))
def test_every_role_resolves_to_a_callable_main(role: str) -> None:
    entry = cli.roles()[role]
    assert entry.attr == "main", entry.value
    assert callable(cli.load(entry)), f"{entry.value} is not callable"


def test_production_image_leaves_the_demo_backend_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in the production image: the role is declared, its package is not there."""
    for name in [m for m in sys.modules if m == "examples" or m.startswith("examples.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "examples", None)  # import of examples: ModuleNotFoundError
    with pytest.raises(SystemExit, match=r"role 'backend' is not in this image.*'demo' target"):
        cli.main(["backend"])


def test_a_missing_dependency_of_an_installed_role_is_not_called_absent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the role's own module may be absent; anything else missing is a real fault."""
    entry = EntryPoint("backend", "examples.legacy_backend:main", cli.ROLE_GROUP)
    for name in [m for m in sys.modules if m == "examples.legacy_backend"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "aiohttp", None)
    with pytest.raises(ModuleNotFoundError, match="aiohttp"):
        cli.load(entry)


def test_healthcheck_reads_the_ports_the_settings_read() -> None:
    """The same ports as Settings, defaults and overrides alike (names case-insensitive
    like pydantic-settings)..."""
    defaults = Settings()
    assert ports.probe_ports({}) == [
        defaults.http_port,
        defaults.metrics_port,
        defaults.demo_port,
    ]
    environ = {"QF_HTTP_PORT": "18080", "qf_metrics_port": "19100", "QF_DEMO_PORT": "19000"}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in environ.items():
            mp.setenv(name, value)
        configured = Settings()
    assert ports.probe_ports(environ) == [
        configured.http_port,
        configured.metrics_port,
        configured.demo_port,
    ]


# --- the config the image ships, and what Terraform points the processes at --------------


def test_terraform_reads_the_route_table_the_image_ships() -> None:
    image_routes = env("production")["QF_ROUTES_FILE"]
    assert image_routes == "/app/config/routes.toml"
    copies = effective("production", "COPY")
    assert "config/routes.toml /app/config/routes.toml" in copies
    root = load_module(TF_ROOT).variables["settings"]["type"]
    assert f'routes_file = optional(string, "{image_routes}")' in str(root).replace("'", '"')
    tfvars = parse_file(TF_ROOT / "examples" / "production.tfvars")
    assert unquote(tfvars["settings"]["routes_file"]) == image_routes
    # the default, whatever this shell exports
    assert Settings.model_fields["routes_file"].default == "config/routes.toml"


def production_routes() -> Any:
    return load_routes(REPO / "config" / "routes.toml")


def test_reply_window_covers_the_longest_route() -> None:
    longest = max(r.timeout_s for r in production_routes().routes)
    default = float(load_module(TF_ROOT).variables["reply_window_s"]["default"])
    tfvars = parse_file(TF_ROOT / "examples" / "production.tfvars")
    assert longest <= default
    assert longest <= float(tfvars["reply_window_s"])


def test_edge_cached_paths_are_the_public_edge_ttl_routes() -> None:
    expected = sorted(
        re.sub(r"\{[^}]+\}", "*", r.path)
        for r in production_routes().routes
        if r.edge_ttl_s and r.method == "GET" and r.public
    )
    for path in (TF_ROOT, MODULES_DIR / "edge"):
        default = load_module(path).variables["edge_cached_paths"]["default"]
        assert sorted(unquote(p) for p in default) == expected


def test_credential_headers_are_the_ones_auth_reads() -> None:
    auth = (REPO / "service" / "auth.py").read_text()
    read = set(re.findall(r'request\.headers\.get\("([A-Za-z-]+)"', auth)) - {"X-Forwarded-For"}
    default = load_module(MODULES_DIR / "edge").variables["credential_headers"]["default"]
    assert {unquote(h) for h in default} == read, (
        "CloudFront's cache key must list every credential"
    )
    suite = (MODULES_DIR / "edge" / "tests" / "edge.tftest.hcl").read_text()
    assert all(f'"{h}"' in suite for h in read)


def test_rds_ca_bundle_is_where_the_database_url_says() -> None:
    adds = effective("production", "ADD")
    assert any(a.endswith("/app/certs/rds-global-bundle.pem") for a in adds), adds
    default = load_module(MODULES_DIR / "database").variables["ca_bundle_path"]["default"]
    assert unquote(default) == "/app/certs/rds-global-bundle.pem"
