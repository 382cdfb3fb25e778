"""One asset per lineage stage, generated from :data:`anomseer.stages.STAGES`.

Each asset only calls :func:`anomseer.stages.run_stage` and turns the returned summary into
metadata; heavy imports happen inside the stage functions, so loading definitions stays fast.
"""


import dagster as dg

from anomseer.stages import STAGES, Stage
from orchestration.defs.metadata import stage_metadata
from orchestration.defs.resources import AnomSeerProject

GROUP = "anomseer"


def _make_asset(stage: Stage) -> dg.AssetsDefinition:
    @dg.asset(
        name=stage.name,
        deps=list(stage.upstream),
        group_name=GROUP,
        description=stage.description,
        kinds={"python"},
        metadata={"outputs": dg.MetadataValue.json(list(stage.outs)), "params_sections": dg.MetadataValue.json(list(stage.params))},
    )
    def _asset(context: dg.AssetExecutionContext, project: AnomSeerProject) -> dg.MaterializeResult:
        from anomseer.stages import run_stage

        params = project.params()
        context.log.info(f"running stage {stage.name} (profile {params.profile}) in {project.root}")
        summary = run_stage(stage.name, params, project.root_path())
        return dg.MaterializeResult(metadata=stage_metadata(stage.name, summary, project.root_path()))

    return _asset


stage_assets = [_make_asset(s) for s in STAGES.values()]


@dg.definitions
def assets() -> dg.Definitions:
    return dg.Definitions(assets=stage_assets, jobs=[dg.define_asset_job("all_stages", selection=dg.AssetSelection.groups(GROUP))])
