"""dvc.yaml and the Dagster asset graph are the same lineage (names, upstreams, outputs, params)."""

from pathlib import Path

import yaml

from anomseer.stages import STAGES, dvc_pipeline

ROOT = Path(__file__).resolve().parents[1]


def test_dvc_yaml_is_generated_from_the_lineage():
    committed = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    assert committed == dvc_pipeline(), "dvc.yaml drifted: run `anomseer dvc-yaml > dvc.yaml`"


def test_dagster_assets_match_dvc_stages():
    from orchestration.definitions import defs

    d = defs()
    graph = d.resolve_asset_graph()
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == set(dvc)
    def paths(entries):
        return [e if isinstance(e, str) else next(iter(e)) for e in entries]

    outs_to_stage = {o: name for name, st in dvc.items() for o in paths(st.get("outs", []) + st.get("metrics", []))}
    for name, st in dvc.items():
        node = graph.get(__import__("dagster").AssetKey(name))
        upstream = {k.to_user_string() for k in node.parent_keys}
        dvc_upstream = {outs_to_stage[d] for d in st["deps"] if d in outs_to_stage}
        assert upstream == dvc_upstream, name
        meta = node.metadata
        assert list(meta["outputs"].value) == paths(st.get("outs", [])), name
        assert list(meta["params_sections"].value) == st["params"], name


def test_every_stage_has_a_runner_and_a_cli_command():
    from anomseer.cli import build_parser
    from anomseer.stages import RUNNERS

    assert set(RUNNERS) == set(STAGES)
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(STAGES) <= set(sub.choices)
