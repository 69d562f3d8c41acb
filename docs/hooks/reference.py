"""The reference pages of the documentation site, generated from the code at build time.

- `cli_reference()`: every command of the `rmq` typer application (`rmq.cli.main.app`), walked
  through its click command tree: usage, help text, arguments, options (as `--help` shows them)
  and their environment variables.
- `metrics_reference()`: every metric of `rmq.metrics`: name, type, labels (with their fixed
  values), help text and histogram buckets.
- `settings_reference()`: every field of `rmq.Settings`: environment variable, type, default,
  unit and the field's docstring.
- `benchmark_results()`: the last full benchmark run (`bench/results/latest.md`).
- `api_reference()`: a mkdocstrings page with one `::: rmq.<name>` block per name in
  `rmq.__all__`, grouped by the module that defines it.

Nothing here imports MkDocs: `docs/hooks/mkdocs_hooks.py` feeds these pages to the build, and the
tests in `tests/docs/` check them without it.
"""

from __future__ import annotations

import ast
import dataclasses
import html
import inspect
import math
import re
import textwrap
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer.main
from prometheus_client import Counter, Gauge, Histogram

import rmq
from rmq import errors, metrics
from rmq.settings import Settings

__all__ = [
    "PAGES",
    "api_reference",
    "cli_commands",
    "cli_reference",
    "metrics_reference",
    "metric_rows",
    "settings_reference",
    "setting_rows",
]

GENERATED = (
    "<!-- Generated from the code by docs/hooks/reference.py at build time: do not edit. -->\n\n"
)


def _escape(text: str) -> str:
    """Escape `<`, `>` and `&` outside `code spans` (Markdown escapes them inside)."""
    parts = text.split("`")
    return "`".join(p if i % 2 else html.escape(p, quote=False) for i, p in enumerate(parts))


def _cell(text: str) -> str:
    """Plain text made safe for a Markdown table cell (no HTML, no column breaks)."""
    return _escape(" ".join(text.split())).replace("|", "\\|")


def _code(text: str) -> str:
    """Inline code for a table cell (a `|` inside backticks does not split the cell)."""
    return f"`{text}`"


def _paragraphs(text: str) -> str:
    return _escape(inspect.cleandoc(text))


# ---------------------------------------------------------------------- CLI


@dataclasses.dataclass(frozen=True)
class CliCommand:
    """One command of the `rmq` tree, as its `--help` describes it."""

    path: tuple[str, ...]
    help: str
    usage: str
    arguments: list[tuple[str, bool, str]]
    """(name, required, help)."""
    options: list[tuple[str, str, str | None]]
    """(declaration as --help shows it, help with default and range, environment variable)."""
    subcommands: list[str]

    @property
    def name(self) -> str:
        return " ".join(self.path)

    @property
    def anchor(self) -> str:
        return "-".join(self.path)


def cli_commands() -> list[CliCommand]:
    """Every visible command of `rmq`, depth first, subcommands in registration order."""
    from rmq.cli.main import app

    root = typer.main.get_command(app)
    return list(_walk(root, ("rmq",), None))


def _walk(command: Any, path: tuple[str, ...], parent: Any) -> Iterator[CliCommand]:
    ctx = command.context_class(command, info_name=path[-1], parent=parent)
    children = {
        name: sub for name, sub in getattr(command, "commands", {}).items() if not sub.hidden
    }
    arguments: list[tuple[str, bool, str]] = []
    options: list[tuple[str, str, str | None]] = []
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        if param.param_type_name == "argument":
            arguments.append((param.name, bool(param.required), param.help or ""))
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        envvar = param.envvar if isinstance(param.envvar, str) else None
        options.append((record[0], record[1], envvar))
    usage = " ".join([*path, *command.collect_usage_pieces(ctx)])
    yield CliCommand(path, command.help or "", usage, arguments, options, list(children))
    for name, sub in children.items():
        yield from _walk(sub, (*path, name), ctx)


def cli_reference() -> str:
    """The CLI reference page."""
    out = [
        "# CLI reference\n\n",
        GENERATED,
        "Every command of `rmq` (also `python -m rmq`), with its arguments, options and "
        "environment variables, as `rmq <command> --help` prints them. The global options "
        "(`--redis-url`, `--namespace`, `--json`) go before the command. Exit codes: 0 ok, "
        "1 failure, 2 usage, 3 Redis unreachable. A task-oriented tour is in "
        "[the CLI guide](../operations/cli.md).\n\n",
    ]
    for command in cli_commands():
        depth = min(len(command.path) + 1, 4)
        out.append(f"{'#' * depth} `{command.name}` {{ #{command.anchor} }}\n\n")
        if command.help:
            out.append(_paragraphs(command.help) + "\n\n")
        out.append(f"```text\n{command.usage}\n```\n\n")
        if command.subcommands:
            links = ", ".join(
                f"[`{name}`](#{command.anchor}-{name})" for name in command.subcommands
            )
            out.append(f"Commands: {links}.\n\n")
        if command.arguments:
            out.append("| argument | required | meaning |\n| --- | --- | --- |\n")
            for name, required, text in command.arguments:
                out.append(f"| `{name}` | {'yes' if required else 'no'} | {_cell(text)} |\n")
            out.append("\n")
        if command.options:
            out.append("| option | meaning | environment |\n| --- | --- | --- |\n")
            for decl, text, envvar in command.options:
                env = _code(envvar) if envvar else ""
                shown = text.replace(f"  [env var: {envvar}]", "") if envvar else text
                out.append(f"| {_code(decl)} | {_cell(shown)} | {env} |\n")
            out.append("\n")
    return "".join(out)


# ---------------------------------------------------------------------- metrics

LABEL_VALUES: dict[str, tuple[str, ...]] = {
    "status": metrics.PUBLISH_STATUSES,
    "result": tuple(r.value for r in metrics.ConsumeResult),
    "reason": metrics.DEAD_LETTER_REASONS,
    "outcome": metrics.TRANSACTION_OUTCOMES,
    "state": metrics.TRIM_STATES,
}
"""The fixed values of the bounded labels, from `rmq.metrics`."""


@dataclasses.dataclass(frozen=True)
class MetricRow:
    name: str
    kind: str
    labels: tuple[str, ...]
    help: str
    source: str
    """"in-process" (counted by producers and consumers) or "Redis" (read at scrape time)."""
    buckets: tuple[float, ...] = ()


def metric_rows() -> list[MetricRow]:
    """Every metric rmq exposes, in-process ones first, in definition order."""
    rows: list[MetricRow] = []
    for value in vars(metrics).values():
        kinds: dict[type, str] = {Counter: "counter", Histogram: "histogram", Gauge: "gauge"}
        kind = kinds.get(type(value))
        if kind is None:
            continue
        name = value._name + ("_total" if kind == "counter" else "")
        bounds = tuple(b for b in getattr(value, "_upper_bounds", ()) if not math.isinf(b))
        labels = tuple(value._labelnames)
        rows.append(MetricRow(name, kind, labels, value._documentation, "in-process", bounds))
    state = getattr(metrics, "_STATE_METRICS", None)
    if not isinstance(state, dict):
        raise RuntimeError("rmq.metrics no longer has _STATE_METRICS: update docs/hooks")
    for name, (doc, labels) in state.items():
        rows.append(MetricRow(name, "gauge", tuple(labels), doc, "Redis"))
    return rows


def _labels(labels: tuple[str, ...]) -> str:
    shown = []
    for label in labels:
        values = LABEL_VALUES.get(label)
        shown.append(f"`{label}` ({', '.join(values)})" if values else f"`{label}`")
    return ", ".join(shown) or "none"


def metrics_reference() -> str:
    """The metrics reference page."""
    rows = metric_rows()
    out = [
        "# Metrics reference\n\n",
        GENERATED,
        "Every metric is defined in `rmq.metrics`. *In-process* metrics are counted by the "
        "producers and consumers of each process (with `rmq worker run --processes N`, summed "
        "over its processes by prometheus_client's multiprocess mode). *Redis* metrics are read "
        "from Redis at scrape time by one collector, in the process that serves `/metrics` "
        "(the worker supervisor or `rmq metrics serve`). How to scrape them, and what to alert "
        "on, is in [Monitoring](../operations/monitoring.md).\n\n",
        "| metric | type | labels | source | meaning |\n| --- | --- | --- | --- | --- |\n",
    ]
    out.extend(
        f"| `{row.name}` | {row.kind} | {_labels(row.labels)} | {row.source} | "
        f"{_cell(row.help)} |\n"
        for row in rows
    )
    histograms = [row for row in rows if row.buckets]
    if histograms:
        out.append("\n## Histogram buckets\n\n| metric | upper bounds |\n| --- | --- |\n")
        for row in histograms:
            bounds = ", ".join(f"{b:g}" for b in row.buckets)
            out.append(f"| `{row.name}` | {bounds} |\n")
    return "".join(out)


# ---------------------------------------------------------------------- settings

_BYTE_SIZED = frozenset({"compress_threshold"})
"""Integer settings measured in bytes whose name does not end in `_bytes`."""


@dataclasses.dataclass(frozen=True)
class SettingRow:
    section: str
    name: str
    env: str
    type: str
    default: str
    unit: str
    help: str


def _field_docs() -> dict[str, tuple[str, str]]:
    """field name -> (section comment above it, its docstring), read from the class source."""
    source = textwrap.dedent(inspect.getsource(Settings))
    lines = source.splitlines()
    tree = ast.parse(source)
    body = next(node for node in tree.body if isinstance(node, ast.ClassDef)).body
    out: dict[str, tuple[str, str]] = {}
    section = ""
    last_line = 0
    for index, node in enumerate(body):
        for line in lines[last_line : node.lineno - 1]:
            stripped = line.strip()
            if stripped.startswith("# "):
                section = stripped[2:].strip()
        last_line = node.end_lineno or node.lineno
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        doc = ""
        following = body[index + 1] if index + 1 < len(body) else None
        if (
            isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            doc = inspect.cleandoc(following.value.value)
        out[node.target.id] = (section, doc)
    return out


def _type_name(hint: Any) -> tuple[str, bool]:
    """(type shown, whether None is allowed)."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return " or ".join(a.__name__ for a in inner), type(None) in args
    return hint.__name__, False


def _unit(name: str, type_name: str) -> str:
    if type_name == "float":
        return "seconds"  # rmq/settings.py: "Durations are float seconds."
    if type_name == "int" and (name.endswith("_bytes") or name in _BYTE_SIZED):
        return "bytes"
    return ""


def _human(value: float, unit: str) -> str:
    """`value` with a friendlier form when it is a round number of a larger unit."""
    if unit == "seconds":
        for size, suffix in ((86400, "d"), (3600, "h"), (60, "min")):
            if value >= size and value % size == 0:
                return f"{value:g} ({value / size:g} {suffix})"
        return f"{value:g}"
    if unit == "bytes":
        for size, suffix in ((1024 * 1024, "MiB"), (1024, "KiB")):
            if value >= size and value % size == 0:
                return f"{int(value)} ({int(value // size)} {suffix})"
    return str(value) if isinstance(value, int) else f"{value:g}"


def setting_rows() -> list[SettingRow]:
    """Every settings field, in definition order."""
    docs = _field_docs()
    hints = typing.get_type_hints(Settings)
    rows = []
    for field in dataclasses.fields(Settings):
        section, doc = docs.get(field.name, ("", ""))
        type_name, optional = _type_name(hints[field.name])
        unit = _unit(field.name, type_name)
        default = field.default
        if default is None:
            shown = "unset (off)"
        elif isinstance(default, bool):
            shown = "on" if default else "off"
        elif isinstance(default, int | float):
            shown = _human(default, unit)
        else:
            shown = repr(default)
        type_shown = f"{type_name}, or empty for unset" if optional else type_name
        rows.append(
            SettingRow(
                section, field.name, Settings.env_var(field.name), type_shown, shown, unit, doc
            )
        )
    return rows


def settings_reference() -> str:
    """The settings reference page."""
    out = [
        "# Settings reference\n\n",
        GENERATED,
        "`rmq.Settings` is a frozen dataclass. `rmq.App()` reads it from the environment "
        "(`Settings.from_env()`): every field `name` is read from `RMQ_<NAME>`, and keyword "
        'arguments win over the environment (`rmq.App(namespace="shop")`, '
        "`settings.replace(...)`). Durations are seconds (fractions allowed); booleans accept "
        "`1 true yes on` and `0 false no off`; an empty value unsets a setting that may be "
        "unset. A bad value raises `rmq.ConfigError` (the CLI exits 2).\n\n",
    ]
    section = None
    for row in setting_rows():
        if row.section != section:
            lead = "" if section is None else "\n"
            section = row.section
            out.append(f"{lead}## {section or 'Other'}\n\n")
            out.append("| setting and environment variable | type | default | meaning |\n")
            out.append("| --- | --- | --- | --- |\n")
        kind = f"{row.type}, {row.unit}" if row.unit else row.type
        out.append(
            f"| `{row.name}`<br>`{row.env}` | {_cell(kind)} | {_cell(row.default)} | "
            f"{_cell(row.help)} |\n"
        )
    return "".join(out)


# ---------------------------------------------------------------------- API

_API_GROUPS: tuple[tuple[str, str], ...] = (
    ("rmq.app", "The app"),
    ("rmq.producer", "Producer"),
    ("rmq.message", "Messages and send results"),
    ("rmq.consumer", "Consumers"),
    ("rmq.retry", "Retry policies"),
    ("rmq.dlq", "Dead letters"),
    ("rmq.transaction", "Transactions"),
    ("rmq.settings", "Settings"),
    ("rmq.errors", "Errors and handler signals"),
)


def api_groups() -> list[tuple[str, list[str]]]:
    """(title, names) for every public name of `rmq.__all__` (but `__version__`)."""
    groups: dict[str, list[str]] = {title: [] for _, title in _API_GROUPS}
    for name in rmq.__all__:
        if name.startswith("__"):
            continue
        module = getattr(getattr(rmq, name), "__module__", "")
        title = next(
            (t for prefix, t in _API_GROUPS if module == prefix or module.startswith(prefix + ".")),
            None,
        )
        if title is None:
            raise RuntimeError(f"rmq.{name} (from {module}) fits no group of docs/hooks")
        groups[title].append(name)
    return [(title, names) for title, names in groups.items() if names]


def api_reference() -> str:
    """The public API page: mkdocstrings renders each name from its docstrings."""
    out = [
        "# API reference\n\n",
        GENERATED,
        "Everything `import rmq` exports (`rmq.__all__`), rendered from the docstrings. "
        f"`rmq.__version__` is the package version ({rmq.__version__} here).\n\n",
    ]
    for title, names in api_groups():
        out.append(f"## {title}\n\n")
        if title == _API_GROUPS[-1][1]:
            tree = (errors.__doc__ or "").split("```")
            if len(tree) >= 3:
                out.append(f"The exception tree (from `rmq.errors`):\n\n```text{tree[1]}```\n\n")
        out.extend(f"::: rmq.{name}\n\n" for name in names)
    for title, module, members in _SUBPACKAGES:
        out.append(f"## {title} (`{module}`)\n\n")
        out.extend(f"::: {module}.{name}\n\n" for name in members)
    return "".join(out)


_SUBPACKAGES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Blocking client", "rmq.sync", ("App", "Producer", "Transaction", "PullConsumer")),
    ("Tracing", "rmq.tracing", ("instrument", "uninstrument", "instrumented")),
    ("Lifecycle", "rmq.lifecycle", ("State",)),
)
"""Packages imported on their own (`import rmq.sync`), shown after `rmq.__all__`."""


# ---------------------------------------------------------------------- benchmark results

BENCH_RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "latest.md"


def benchmark_results() -> str:
    """The last full benchmark run, `bench/results/latest.md` (written by `make bench`), under
    a page title of its own (its headings move one level down)."""
    text = BENCH_RESULTS.read_text()
    demoted = re.sub(r"^(#+) ", r"#\1 ", text, flags=re.M)
    return (
        "# The last full benchmark run\n\n"
        "<!-- Generated from bench/results/latest.md at build time: do not edit. -->\n\n"
        "`bench/results/latest.md` as `make bench` wrote it; [Performance](performance.md) "
        "explains the figures and how to reproduce them.\n\n" + demoted
    )


PAGES = {
    "reference/cli.md": cli_reference,
    "reference/metrics.md": metrics_reference,
    "reference/settings.md": settings_reference,
    "reference/api.md": api_reference,
    "benchmark-results.md": benchmark_results,
}
"""Generated page path (under docs/) -> the function that renders it."""
