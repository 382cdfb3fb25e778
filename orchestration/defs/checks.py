"""Blocking asset checks: bad data must not flow into expensive stages."""


import dagster as dg

from orchestration.defs.resources import AnomSeerProject


@dg.asset_check(asset="synthetic_series", blocking=True, description="No NaN/inf; intervals valid; labels known.")
def series_are_clean(project: AnomSeerProject) -> dg.AssetCheckResult:
    from anomseer.checks import check_series

    problems = check_series(project.root_path())
    return dg.AssetCheckResult(passed=not problems, metadata={"problems": dg.MetadataValue.json(problems[:20])})


@dg.asset_check(asset="rendered_images", blocking=True, description="Exactly one image per series.")
def one_image_per_series(project: AnomSeerProject) -> dg.AssetCheckResult:
    from anomseer.checks import check_images

    problems = check_images(project.root_path())
    return dg.AssetCheckResult(passed=not problems, metadata={"problems": dg.MetadataValue.json(problems[:20])})


@dg.asset_check(asset="expert_traces", blocking=True, description="Every trace verifies against its series.")
def every_trace_verifies(project: AnomSeerProject) -> dg.AssetCheckResult:
    from anomseer.checks import check_traces

    problems = check_traces(project.root_path())
    return dg.AssetCheckResult(passed=not problems, metadata={"problems": dg.MetadataValue.json(problems[:20])})


@dg.definitions
def checks() -> dg.Definitions:
    return dg.Definitions(asset_checks=[series_are_clean, one_image_per_series, every_trace_verifies])
