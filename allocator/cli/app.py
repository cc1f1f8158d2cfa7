"""The ``allocator`` command line.

Every command imports what it needs when it runs, so ``allocator --help`` is instant and
the runtime's import path stays light.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from allocator.errors import AllocatorError

__all__ = ["app", "main"]

app = typer.Typer(
    name="allocator",
    help=(
        "ttc-allocator: learn from your logged LLM runs how much test-time compute each "
        "query deserves (stop, sample more, refine, or verify).\n\n"
        "Typical flow: `allocator ingest` your logs into the project's format, then "
        "replay and evaluate allocation policies on them. `allocator demo` runs the whole "
        "path on built-in simulated data."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



def _print_version(value: bool) -> None:
    if value:
        from allocator import __version__

        print(f"ttc-allocator {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the version and exit.")] = False,
) -> None:
    """Options of every command."""


GENERIC_FORMATS = ("auto", "jsonl", "csv", "parquet")

_MAPPING_PANEL = "Column mapping (generic jsonl/csv/parquet tables)"

# Options several commands share, declared once.
#: ``--address`` of the commands that run on Ray (``evaluate --ray``, ``sweep``).
_RayAddress = Annotated[str | None, typer.Option(
    help="A Ray cluster to run on (HOST:PORT of `ray start --head`; default: RAY_ADDRESS, "
         "else an embedded local Ray).")]
#: ``--alias`` of the commands that register a bundle in MLflow (``train``, ``sweep``).
_RegistryAlias = Annotated[str, typer.Option(help="Alias of the registered version.")]


def _fail(error: Exception) -> typer.Exit:
    from allocator.console import stderr_console

    stderr_console().print(f"[bold red]error:[/] {error}", highlight=False, markup=True)
    return typer.Exit(code=2)


def _require_extra(extra: str, purpose: str) -> None:
    """Exit with the install line where ``extra`` is missing (a serving-only install)."""
    from rich.markup import escape  # the install line holds brackets: [train]

    from allocator.extras import require_extra

    try:
        require_extra(extra, purpose)
    except AllocatorError as error:
        raise _fail(AllocatorError(escape(str(error)))) from None


def _parse_options(pairs: list[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--option")
        options[key.strip().replace("-", "_")] = value.strip()
    return options


def _parse_prices(pairs: list[str]) -> dict[str, float]:
    prices = {}
    for pair in pairs:
        arm, sep, value = pair.rpartition("=")
        try:
            prices[arm] = float(value)
        except ValueError:
            sep = ""
        if not sep or not arm:
            raise typer.BadParameter(f"expected ARM=PRICE (a number), got {pair!r}",
                                     param_hint="--price")
    return prices


@app.command()
def ingest(
    source: Annotated[Path, typer.Argument(help="A log file or folder to convert.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the log "
                                         "(Parquet).")],
    format: Annotated[str, typer.Option(
        "--format", "-f",
        help="A converter name (see `allocator formats`) or a generic table format: "
             "auto (by file suffix), jsonl, csv, parquet.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the per-arm summary as JSON "
                                          "on stdout.")] = False,
    skip_invalid: Annotated[bool, typer.Option(
        "--skip-invalid",
        help="Set invalid rows aside in a side file (OUTPUT.rejected.jsonl) instead of "
             "failing on the first one.")] = False,
    threshold: Annotated[float, typer.Option(
        help="Grade at or above which an attempt counts as correct in the summary.")] = 0.5,
    common_queries: Annotated[bool, typer.Option(
        "--common-queries",
        help="Keep only the queries that every arm has sampled (for comparing arms); the "
             "number of queries left out is printed.")] = False,
    price: Annotated[list[str] | None, typer.Option(
        "--price", metavar="ARM=PRICE",
        help="Multiply an arm's logged costs by a price (repeatable), e.g. tokens to "
             "dollars: --price gpt-4=30e-6 --price llama-2-13b=0.2e-6; arms not named keep "
             "their costs.")] = None,
    option: Annotated[list[str] | None, typer.Option(
        "--option", "-O", metavar="KEY=VALUE",
        help="A converter option (repeatable), e.g. -O tasks=date -O models=gpt-3.5-turbo; "
             "`allocator formats` lists each converter's options.")] = None,
    queries: Annotated[Path | None, typer.Option(
        help="A separate query table (query_id, text, metadata...).",
        rich_help_panel=_MAPPING_PANEL)] = None,
    query_col: Annotated[str, typer.Option(rich_help_panel=_MAPPING_PANEL)] = "query_id",
    answer_col: Annotated[str, typer.Option(rich_help_panel=_MAPPING_PANEL)] = "answer",
    correct_col: Annotated[str, typer.Option(rich_help_panel=_MAPPING_PANEL)] = "correct",
    cost_col: Annotated[str, typer.Option(rich_help_panel=_MAPPING_PANEL)] = "cost",
    arm_col: Annotated[str, typer.Option(rich_help_panel=_MAPPING_PANEL)] = "arm",
    kind_col: Annotated[str, typer.Option(rich_help_panel=_MAPPING_PANEL)] = "kind",
    round_col: Annotated[str, typer.Option(rich_help_panel=_MAPPING_PANEL)] = "round",
    score_col: Annotated[str, typer.Option(rich_help_panel=_MAPPING_PANEL)] = "score",
    id_col: Annotated[str, typer.Option(rich_help_panel=_MAPPING_PANEL)] = "attempt_id",
    text_col: Annotated[str, typer.Option(help="Query text column.",
                                          rich_help_panel=_MAPPING_PANEL)] = "text",
    meta_col: Annotated[list[str] | None, typer.Option(
        help="Query-level metadata column (repeatable).",
        rich_help_panel=_MAPPING_PANEL)] = None,
) -> None:
    """Convert and validate a log, write it as Parquet, and print per-arm statistics."""
    from allocator.console import stderr_console, summary_table
    from allocator.logs import summarize, write_log
    from allocator.logs.parquet import check_output_path
    from allocator.logs.readers import ColumnMapping, read_attempts, write_rejected

    try:
        check_output_path(output, owner="allocator ingest", parameter="--output",
                          inputs=(source, queries), parquet_name=True)
        if format in GENERIC_FORMATS:
            mapping = ColumnMapping(
                query_id=query_col, answer=answer_col, correct=correct_col, cost=cost_col,
                arm=arm_col, kind=kind_col, round=round_col, score=score_col,
                attempt_id=id_col, text=text_col, metadata=tuple(meta_col or ()),
            )
            log, rejected = read_attempts(
                source, file_format=None if format == "auto" else format, mapping=mapping,
                queries=queries, skip_invalid=skip_invalid,
            )
        else:
            from allocator.converters import convert

            log, rejected = convert(
                source, format, skip_invalid=skip_invalid, **_parse_options(option or [])
            )
        if price:
            log = log.with_prices(_parse_prices(price))
        dropped = 0
        if common_queries:
            keep = log.common_queries()
            dropped = log.n_queries - len(keep)
            log = log.select_queries(keep)
        write_log(log, output)
    except AllocatorError as error:
        raise _fail(error) from None
    console = stderr_console()
    if dropped:
        console.print(f"--common-queries: left out {dropped:,} queries that not every arm "
                      "sampled")
    side = output.with_name(output.name + ".rejected.jsonl")
    if len(rejected):
        write_rejected(rejected, side)
        console.print(f"[yellow]{len(rejected):,} invalid rows set aside in {side}[/]")
    elif side.is_file():  # an earlier run's rejects no longer describe this output
        side.unlink()
        console.print(f"removed {side} (left by an earlier run; no row was set aside now)")
    summary = summarize(log, threshold=threshold)
    console.print(f"wrote {log.n_attempts:,} attempts of {log.n_queries:,} queries to {output}")
    no_answer = sum(row.no_answer for arm, row in summary.items() if arm != "(all arms)")
    if no_answer:
        console.print(f"[yellow]{no_answer:,} attempts have no answer[/] (nothing could be "
                      "extracted: they count as incorrect and never vote; `no_answer` per arm "
                      "in --json)")
    if as_json:
        json.dump({arm: row.to_dict() for arm, row in summary.items()}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        console.print(summary_table(summary, title=f"{source} ({format})"))


@app.command()
def summarize(
    log_path: Annotated[Path, typer.Argument(metavar="LOG", help="A log written by "
                                             "`allocator ingest` (Parquet).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
    threshold: Annotated[float, typer.Option(help="Grade counted as correct.")] = 0.5,
) -> None:
    """Print per-arm statistics of a log."""
    from allocator.console import stderr_console, summary_table
    from allocator.logs import read_log
    from allocator.logs import summarize as summarize_log

    try:
        log = read_log(log_path)
    except AllocatorError as error:
        raise _fail(error) from None
    summary = summarize_log(log, threshold=threshold)
    if as_json:
        json.dump({arm: row.to_dict() for arm, row in summary.items()}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        label = " (simulated)" if log.simulated else ""
        stderr_console().print(summary_table(summary, title=f"{log_path}{label}"))


@app.command()
def formats() -> None:
    """List the converters and generic table formats `allocator ingest` accepts."""
    from rich.table import Table

    from allocator.console import stderr_console
    from allocator.converters import CONVERTERS

    table = Table(title="ingest formats", title_justify="left")
    table.add_column("--format", style="bold")
    table.add_column("reads")
    table.add_column("options (-O KEY=VALUE)")
    for name, converter in CONVERTERS.items():
        table.add_row(name, converter.description, ", ".join(converter.options) or "-")
    table.add_row("auto | jsonl | csv | parquet",
                  "any flat table of graded attempts, with the column-mapping options")
    stderr_console().print(table)


@app.command()
def evaluate(
    log_path: Annotated[Path, typer.Argument(metavar="LOG", help="A log (Parquet from "
                                             "`allocator ingest`), or a folder of Parquet "
                                             "shards of one log.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for report.json "
                                         "and the plots.")] = Path("evaluation"),
    policy: Annotated[list[str] | None, typer.Option(
        "--policy", "-p", help="A policy to sweep (repeatable; default: every baseline).")] = None,
    arm: Annotated[str | None, typer.Option(help="The arm single-arm baselines sample "
                                            "(default: the most sampled arm).")] = None,
    orders: Annotated[int, typer.Option(help="Seeded random orders replayed per query.")] = 20,
    test_fraction: Annotated[float, typer.Option(help="Share of queries held out.")] = 0.5,
    seed: Annotated[int, typer.Option(help="Seed of the split, orders and bootstrap.")] = 0,
    reference: Annotated[str, typer.Option(help="Policy that paired differences are "
                                           "measured against.")] = "adaptive-consistency",
    no_difficulty: Annotated[bool, typer.Option(
        "--no-difficulty", help="Skip the difficulty predictor (and difficulty-binned).")] = False,
    bundle: Annotated[Path | None, typer.Option(
        help="A trained allocator bundle (from `allocator train`) to compare with the "
             "baselines, swept over lambda.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on "
                                          "stdout.")] = False,
    mlflow: Annotated[bool, typer.Option(
        "--mlflow", help="Log the run to MLflow (MLFLOW_TRACKING_URI, default "
                         "sqlite:///mlflow.db).")] = False,
    verify_cost: Annotated[float | None, typer.Option(
        help="Verifier cost per verified candidate, in the log's cost units (default: the "
             "mean cost of the log's verify rows, 0 without any).")] = None,
    target_accuracy: Annotated[float | None, typer.Option(
        help="Accuracy the headline's costs are measured at (default: the best accuracy "
             "any baseline reaches).")] = None,
    cost_unit: Annotated[str | None, typer.Option(
        help="Name of the log's cost unit for tables and plots (e.g. tokens, USD).")] = None,
    ray_shards: Annotated[int | None, typer.Option(
        "--ray", metavar="SHARDS", min=1,
        help="Replay the test queries on SHARDS Ray workers (on --address), each reading "
             "its own queries from the Parquet log or shards; this process reads only the "
             "log's outline and training queries. The same report; needs the ray "
             "extra.")] = None,
    address: _RayAddress = None,
) -> None:
    """Replay every policy on held-out queries: accuracy, cost, intervals, Pareto fronts."""
    _require_extra("train", "allocator evaluate")
    from allocator.cli.evaluate_command import run_evaluate

    try:
        run_evaluate(log_path, output, policies=policy, arm=arm, orders=orders,
                     test_fraction=test_fraction, seed=seed, reference=reference,
                     difficulty=not no_difficulty, as_json=as_json, mlflow=mlflow,
                     bundle=bundle, verify_cost=verify_cost,
                     target_accuracy=target_accuracy, cost_unit=cost_unit,
                     ray_shards=ray_shards, address=address)
    except AllocatorError as error:
        raise _fail(error) from None


@app.command()
def train(
    log_path: Annotated[Path, typer.Argument(metavar="LOGS", help="A pool log (Parquet from "
                                             "`allocator ingest` or `allocator synth`).")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", metavar="RUN_DIR",
        help="The run's folder: bundle/, checkpoints/, report.json, plots, config.toml.")],
    config: Annotated[Path | None, typer.Option(
        "--config", help="A TOML file of training settings (any subset of TrainConfig's "
                         "fields; unknown keys are refused).")] = None,
    seed: Annotated[int | None, typer.Option(
        help="Seed of the split, the training and the evaluation (overrides the "
             "config).")] = None,
    timesteps: Annotated[int | None, typer.Option(
        help="Environment steps to train for (overrides the config's "
             "total_timesteps).")] = None,
    mlflow: Annotated[bool, typer.Option(
        "--mlflow/--no-mlflow", help="Log the run to MLflow (MLFLOW_TRACKING_URI, default "
                                     "sqlite:///mlflow.db); off by default.")] = False,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the interrupted run whose checkpoints RUN_DIR "
                         "holds.")] = False,
    register: Annotated[str | None, typer.Option(
        metavar="NAME", help="Register the bundle as a new version of this MLflow model "
                             "(load it with allocator.load('models:/NAME@ALIAS')).")] = None,
    alias: _RegistryAlias = "candidate",
    calibrate: Annotated[bool, typer.Option(
        "--calibrate/--no-calibrate",
        help="Calibrate the bundle's default lambda on a validation split of the training "
             "queries (held out of training): the cheapest lambda that reaches "
             "majority-of-all accuracy there, or --target-cost.")] = True,
    target_cost: Annotated[float | None, typer.Option(
        "--target-cost", help="Calibrate to this mean cost per query (log units) instead "
                              "of to majority-of-all accuracy.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run's summary and "
                                          "report as JSON on stdout.")] = False,
    no_safety_net: Annotated[bool, typer.Option(
        "--no-safety-net", help="Always export the learned policy (trained on every "
                                "training query), even where a baseline beats it on "
                                "validation queries.")] = False,
    verify_cost: Annotated[float | None, typer.Option(
        "--verify-cost", help="Price of verifying a candidate whose score has no logged "
             "verdict, in the log's cost units (default: the mean cost of the log's "
             "verdicts, 0 without any; verdicts and judge votes cost what the log says).",
        min=0.0)] = None,
    no_predictor: Annotated[bool, typer.Option(
        "--no-predictor", help="Train without the difficulty predictor: every query's "
                               "prior is a constant (0.5 per arm), the bundle holds no "
                               "predictor and says so. For logs too small to cross-fit "
                               "it.")] = False,
    mu: Annotated[float | None, typer.Option(
        "--mu", help="Price of one second of latency (the critical path of an episode's "
                     "waves), beside lambda's price of cost; needs a log with started_at "
                     "and ended_at (default: the config's, 0: not priced).",
        min=0.0)] = None,
    widths: Annotated[str | None, typer.Option(
        "--widths", metavar="1,2,4",
        help="Parallel widths the policy may launch samples at, one wave each "
             "(default: the config's, 1: one sample per action).")] = None,
) -> None:
    """Train the learned allocator, export and calibrate its bundle, and evaluate it
    against every baseline on held-out queries.

    The safety net (on by default) compares the learned policy with every baseline on
    validation queries carved from the training queries and exports the best: where a
    baseline wins, RUN_DIR/bundle is a baseline bundle (served the same way) and the
    learned one is in RUN_DIR/learned-bundle; the report says which and why."""
    _require_extra("train", "allocator train")
    from allocator.cli.train_command import run_train

    try:
        run_train(log_path, output, config_path=config, seed=seed, timesteps=timesteps,
                  mlflow=mlflow, resume=resume, as_json=as_json, register=register,
                  alias=alias, calibrate=calibrate, target_cost=target_cost,
                  no_safety_net=no_safety_net, verify_cost=verify_cost,
                  predictor=not no_predictor, mu=mu, widths=widths)
    except AllocatorError as error:
        raise _fail(error) from None


@app.command()
def sweep(
    log_path: Annotated[Path, typer.Argument(metavar="LOGS", help="A pool log (Parquet).")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", metavar="SWEEP_DIR",
        help="The sweep's folder: tune/ (Ray's trials), mlflow.db, best-bundle/, "
             "report.json, plots, sweep.json.")],
    config: Annotated[Path, typer.Option(
        "--config", help="The sweep's TOML: tables sweep (trials, cpus_per_trial, "
                         "reports...), base and search (TrainConfig settings).")],
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the interrupted sweep SWEEP_DIR holds.")] = False,
    address: _RayAddress = None,
    register_as: Annotated[str | None, typer.Option(
        "--register-as", metavar="NAME",
        help="Register the best bundle as a new version of this MLflow model.")] = None,
    alias: _RegistryAlias = "candidate",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on "
                                          "stdout.")] = False,
) -> None:
    """Search the training settings with Ray Tune: each trial an `allocator train`
    pipeline scored on validation queries (ASHA stops the worst early, MLflow tracks
    every trial); the best trial's bundle is exported to SWEEP_DIR/best-bundle and
    evaluated on the test queries."""
    _require_extra("train", "allocator sweep")
    from allocator.cli.sweep_command import run_sweep_command

    try:
        run_sweep_command(log_path, output, config_path=config, resume=resume,
                          address=address, register=register_as, alias=alias,
                          as_json=as_json)
    except AllocatorError as error:
        raise _fail(error) from None


@app.command()
def calibrate(
    bundle: Annotated[Path, typer.Argument(metavar="BUNDLE", help="A bundle directory "
                                           "(only read: bundles are immutable).")],
    log_path: Annotated[Path, typer.Argument(metavar="LOG", help="A log over the bundle's "
                                             "arms: the training log (its validation "
                                             "queries are used) or a validation log.")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", metavar="NEW_BUNDLE",
        help="Where to write the calibrated bundle: a new directory (BUNDLE's weights "
             "and predictor, the calibration, and BUNDLE's sha256 as provenance).")],
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace a bundle already at NEW_BUNDLE (written beside it, "
                            "then renamed into place: never half-written).")] = False,
    target_cost: Annotated[float | None, typer.Option(
        "--target-cost", help="Mean cost per query to meet, in the log's units (default: "
                              "the cheapest lambda that reaches majority-of-all "
                              "accuracy).")] = None,
    tolerance: Annotated[float, typer.Option(help="Relative tolerance on the mean cost.")
                         ] = 0.05,
    orders: Annotated[int, typer.Option(help="Random orders replayed per query.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the orders.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on "
                                          "stdout.")] = False,
) -> None:
    """Find the lambda that meets a target mean cost per query (or reaches majority-of-all
    accuracy at least cost) and write a new bundle that stores it as its default, so that
    users ask for a budget, not a price: allocator calibrate BUNDLE LOG -o NEW_BUNDLE."""
    _require_extra("train", "allocator calibrate")
    from allocator.cli.calibrate_command import run_calibrate

    try:
        run_calibrate(bundle, log_path, target_cost, output=output, overwrite=overwrite,
                      tolerance=tolerance, orders=orders, seed=seed, as_json=as_json)
    except AllocatorError as error:
        raise _fail(error) from None


@app.command()
def inspect(
    bundle: Annotated[str, typer.Argument(metavar="BUNDLE", help="A bundle directory or an "
                                          "MLflow URI (models:/NAME@ALIAS).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the defaults as JSON on "
                                          "stdout.")] = False,
) -> None:
    """Print every default the oracle uses for this bundle (lambda, sample cap per arm,
    prior per arm, target-cost range) and where each comes from."""
    from allocator.cli.inspect_command import run_inspect

    try:
        run_inspect(bundle, as_json=as_json)
    except AllocatorError as error:
        raise _fail(error) from None


@app.command()
def grade(
    runs: Annotated[Path, typer.Argument(metavar="RUNS", help="A run log the executors "
                                         "recorded (JSONL).")],
    references: Annotated[Path, typer.Option(
        "--references", "-r", help="JSONL or CSV (optionally .gz) of query ids and their "
                                   "reference answers.")],
    out: Annotated[Path | None, typer.Option("--output", "-o", help="Where to write the "
                                             "graded log (default: in place).")] = None,
    query_col: Annotated[str, typer.Option(help="Query id column of the references.")
                         ] = "query_id",
    reference_col: Annotated[str, typer.Option(help="Reference answer column.")
                             ] = "reference",
    extract: Annotated[str | None, typer.Option(
        metavar="KIND", help="Normalise references with this answer extractor (number, "
                             "choice, date...), as the executors normalised answers.")] = None,
    regrade: Annotated[bool, typer.Option(help="Grade rows that have a grade already too.")
                       ] = False,
    drop_ungraded: Annotated[bool, typer.Option(help="Drop rows left without a grade.")
                             ] = False,
) -> None:
    """Grade the rows of recorded runs against reference answers, so that `allocator
    ingest` and `allocator train` accept them."""
    from allocator.cli.grade_command import run_grade

    try:
        run_grade(runs, references, out=out, query_col=query_col,
                  reference_col=reference_col, extract=extract, regrade=regrade,
                  drop_ungraded=drop_ungraded)
    except AllocatorError as error:
        raise _fail(error) from None


@app.command()
def synth(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the log.")],
    queries: Annotated[int, typer.Option(help="Number of simulated queries.")] = 400,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    scores: Annotated[bool, typer.Option(help="Add simulated verifier scores.")] = False,
    refine_rounds: Annotated[int, typer.Option(help="Simulated refinement rounds.")] = 0,
) -> None:
    """Write a simulated log (clearly labelled as such) for trying the tools out."""
    import dataclasses

    from allocator.console import stderr_console
    from allocator.logs import write_log
    from allocator.logs.synthetic import SyntheticConfig, generate

    config = dataclasses.replace(
        SyntheticConfig(), n_queries=queries, with_scores=scores, refine_rounds=refine_rounds
    )
    log = generate(config, seed=seed)
    write_log(log, output)
    stderr_console().print(f"wrote {log!r} to {output} (SIMULATED data, not real LLM runs)")


@app.command()
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the demo's "
                                         "files (a previous demo's files there are "
                                         "replaced).")] = Path("demo-output"),
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Run the main job end to end on a built-in SIMULATED log (two priced arms, a
    verifier on the cheap one, a prompt length that predicts difficulty) and print the
    results."""
    _require_extra("train", "allocator demo")
    from allocator.cli.demo import run_demo

    try:
        run_demo(output, seed=seed)
    except AllocatorError as error:
        raise _fail(error) from None


@app.command()
def serve(
    source: Annotated[str, typer.Argument(
        metavar="SOURCE", help="A bundle directory (from `allocator train`) or an MLflow URI "
                               "(models:/NAME@ALIAS, models:/NAME/VERSION, runs:/...).")],
    host: Annotated[str, typer.Option(help="Interface to bind (loopback by default).")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    token_env: Annotated[str, typer.Option(
        metavar="VAR", help="Environment variable holding the bearer token clients must "
                            "send (Authorization: Bearer ...); unset or empty is an error "
                            "unless --no-auth.")] = "ALLOCATOR_TOKEN",
    no_auth: Annotated[bool, typer.Option(
        "--no-auth", help="Serve without authentication (only then may the token "
                          "variable be unset).")] = False,
    reload_interval: Annotated[float | None, typer.Option(
        metavar="SECONDS", help="Poll the source this often and swap in a new bundle when "
                                "it changed (the alias moved); default: only on POST "
                                "/v1/admin/reload.")] = None,
    tracking_uri: Annotated[str | None, typer.Option(
        help="MLflow tracking/registry URI for an MLflow SOURCE (default: "
             "MLFLOW_TRACKING_URI).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
) -> None:
    """Serve the budget oracle over HTTP (POST /v1/decide, /v1/budget, /v1/allocate;
    GET /v1/health; schema at /docs). Needs the 'serve' extra."""

    from rich.markup import escape  # the messages hold brackets: [serve], ['a', 'b']

    try:
        from allocator.service import run_server
    except ImportError as error:
        raise _fail(ImportError(escape(str(error)))) from None
    token = _serve_token(token_env, no_auth)
    try:
        run_server(source, host=host, port=port, token=token,
                   tracking_uri=tracking_uri, reload_interval=reload_interval,
                   log_level=log_level)
    except AllocatorError as error:
        raise _fail(AllocatorError(escape(str(error)))) from None


def _serve_token(token_env: str, no_auth: bool) -> str | None:
    """The bearer token from ``token_env``; fail closed when it is unset or empty, unless
    ``no_auth`` says to serve without one (then a set token is a contradiction)."""
    import os

    token = os.environ.get(token_env, "")
    if no_auth and token:
        raise _fail(AllocatorError(
            f"--no-auth was given but {token_env} holds a token. Fix: drop --no-auth to "
            f"require the token, or unset {token_env}."))
    if not no_auth and not token.strip():
        state = "is empty" if token_env in os.environ else "is not set"
        raise _fail(AllocatorError(
            f"the token variable {token_env} {state}: refusing to serve without "
            f"authentication. Fix: export {token_env}=<a secret> (or name another variable "
            "with --token-env), or pass --no-auth to serve without a token on purpose."))
    return None if no_auth else token


def main() -> None:
    """Entry point of the ``allocator`` console script."""
    app()
