"""Command-line interface: thin click commands, one library call each.

Exit codes (all commands): 0 success; 2 usage error (click); 3 input error (bad DICOM, bad
YAML, unknown metric). ``sbrt-qa check`` exits with its verdict: 0 per protocol, 10 minor
deviation, 11 major deviation, 12 not evaluable (required input missing).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from .errors import SbrtQaError

EXIT_INPUT_ERROR = 3
EXIT_VERDICT = {"per_protocol": 0, "minor_deviation": 10, "major_deviation": 11, "not_evaluable": 12}


def _fail(exc: Exception) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(EXIT_INPUT_ERROR)


def _write(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=not text.endswith("\n"))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sbrt-qa")
@click.option("-v", "--verbose", count=True, help="Log progress (-v info, -vv debug) to stderr.")
def main(verbose: int) -> None:
    """sbrt-qa: SBRT plan QA - DVHs and protocol constraint checks from DICOM RT.

    Dose in Gy, volume in cc, lengths in mm.
    """
    level = logging.WARNING if not verbose else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


@main.command()
@click.argument("plan_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--structure", "-s", "structures", multiple=True,
              help="Structure (ROI) name; repeat for several. Default: all with contours.")
@click.option("--metrics", "-m", default="Dmin,Dmean,Dmax,D95%,D2%,D0.03cc", show_default=True,
              help="Comma-separated metrics: Dmax, Dmean, D95%, D2cc, V20Gy[%], V20Gy[cc], "
                   "V100%[%], CV21Gy[cc], DC700cc ...")
@click.option("--rx", "rx_gy", type=float, default=None,
              help="Prescription dose in Gy for metrics relative to it (default: from the RTPLAN).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write to this file instead of standard output.")
@click.option("--slab", is_flag=True, default=False,
              help="Slab model between contour planes instead of shape interpolation.")
def dvh(plan_dir, structures, metrics, rx_gy, fmt, output, slab):
    """Compute DVH metrics of the structures of PLAN_DIR."""
    from .report.dvh_table import dvh_report

    try:
        text = dvh_report(plan_dir, structures=list(structures), metrics=metrics, rx_gy=rx_gy,
                          fmt=fmt, interpolate=not slab)
    except SbrtQaError as exc:
        _fail(exc)
    _write(text, output)


@main.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
def samples(out_dir):
    """Write the synthetic sample plans (DICOM + expected.yaml) into OUT_DIR."""
    from .samples import write_samples

    for p in write_samples(out_dir):
        click.echo(str(p))


@main.command()
@click.argument("plan_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--protocol", "protocol_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Protocol YAML (default: the trial protocol in constraints/).")
@click.option("--site", "site_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Site YAML: overrides, extra constraints, ROI name mapping.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "html"]), default="table",
              show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write to this file instead of standard output.")
def check(plan_dir, protocol_file, site_file, fmt, output):
    """Check the plan in PLAN_DIR against the protocol: a graded pass/deviation report.

    \b
    Exit codes: 0 per protocol, 10 minor deviation, 11 major deviation,
    12 not evaluable (required input missing), 3 input error, 2 usage error.
    """
    from .dicom import load_plan
    from .evaluate import evaluate_plan
    from .protocol import load_protocol
    from .report import check_report as r

    try:
        protocol = load_protocol(protocol_file, site=site_file)
        ev = evaluate_plan(load_plan(plan_dir), protocol)
    except SbrtQaError as exc:
        _fail(exc)
    if fmt == "table":
        color = output is None and sys.stdout.isatty()
        text = r.render_table(ev, color=color)
    else:
        text = {"json": r.render_json, "csv": r.render_csv, "html": r.render_html}[fmt](ev)
    _write(text, output)
    sys.exit(EXIT_VERDICT[ev.verdict])


@main.group()
def protocol():
    """Protocol files: print the schema, validate a file."""


@protocol.command()
def schema():
    """Print the JSON Schema of protocol, constraint-set and site files."""
    from .protocol import protocol_json_schema

    click.echo(json.dumps(protocol_json_schema(), indent=2))


@protocol.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--site", "site_file", type=click.Path(exists=True, dir_okay=False), default=None)
def validate(file, site_file):
    """Validate a protocol/constraint/site FILE: every error with file, line and key path."""
    from .protocol import validate_protocol_file

    issues = validate_protocol_file(file, site=site_file)
    for issue in issues:
        click.echo(str(issue))
    if issues:
        click.echo(f"{len(issues)} problem(s)", err=True)
        sys.exit(EXIT_INPUT_ERROR)
    click.echo(f"{file}: valid")


if __name__ == "__main__":  # pragma: no cover
    main()
