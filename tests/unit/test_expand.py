"""Variant expansion: the product of the axes, filtered by constraints, with from_model axes and tuning overrides."""
from __future__ import annotations

import pytest

from gemforge.gen.spec import expand, parse_spec
from gemforge.runtime.config import model_configs
from gemforge.runtime.errors import SpecError


def spec(**fields):
    data = {"op": "t", "template": "t.comp.j2", "name": "t", "bindings": [{"name": "x", "access": "read"}],
            "axes": {}}
    data.update(fields)
    return parse_spec(data, "t.yaml")


def names(variants):
    return [v.name for v in variants]


def test_product_of_axes_in_declaration_order():
    s = spec(name="t_{format}_b{bucket}", axes={"format": ["f32", "q8_0"], "bucket": [16, 32, 64]})
    assert names(expand(s)) == ["t_f32_b16", "t_f32_b32", "t_f32_b64", "t_q8_0_b16", "t_q8_0_b32", "t_q8_0_b64"]


def test_no_axes_gives_one_variant_with_the_params():
    [v] = expand(spec(params={"wg_size": 128, "unroll": 4}))
    assert (v.name, dict(v.values), v.axes) == ("t", {"wg_size": 128, "unroll": 4}, {})


def test_constraints_filter_the_product_and_see_params():
    s = spec(name="t_{format}_b{bucket}", axes={"format": ["f32", "q4_0"], "bucket": [16, 32, 64]},
             params={"tile": 32},
             constraints=["not (format == 'q4_0' and bucket > tile)", "bucket * 2 != 64"])
    assert names(expand(s)) == ["t_f32_b16", "t_f32_b64", "t_q4_0_b16"]


def test_constraints_can_exclude_everything():
    s = spec(name="t_b{bucket}", axes={"bucket": [16, 32]}, constraints=["bucket > 256"])
    assert expand(s) == []


def test_from_model_axes_take_the_configured_models_values():
    s = spec(name="t_d{head_dim}_h{hidden}", axes={"head_dim": {"from_model": "head_dim"},
                                                 "hidden": {"from_model": "hidden"}})
    got = names(expand(s, {"head_dim": (256, 128, 256), "hidden": (640,)}))
    assert got == ["t_d128_h640", "t_d256_h640"]   # sorted, duplicates removed


def test_from_model_axes_from_the_real_model_configs():
    from gemforge.gen.build import model_values
    models = model_configs()
    s = spec(name="t_d{head_dim}", axes={"head_dim": {"from_model": "head_dim"}})
    assert [v.axes["head_dim"] for v in expand(s, model_values(models))] == \
        sorted({m.head_dim for m in models.values()})


def test_from_model_axis_without_models_is_an_error():
    s = spec(name="t_d{head_dim}", axes={"head_dim": {"from_model": "head_dim"}})
    with pytest.raises(SpecError, match=r"field 'axes.head_dim': no configured model provides 'head_dim'"):
        expand(s, {})


def test_in_name_axes_write_their_text_in_the_name_and_their_value_everywhere_else():
    s = spec(name="t_{format}{input}", axes={"format": ["f32", "q8_0"],
                                             "input": {"values": ["plain", "geglu"],
                                                       "in_name": {"plain": "", "geglu": "_geglu"}}},
             constraints=["not (format == 'f32' and input == 'geglu')"])
    vs = expand(s)
    assert names(vs) == ["t_f32", "t_q8_0", "t_q8_0_geglu"]
    assert [v.axes for v in vs] == [{"format": "f32", "input": "plain"}, {"format": "q8_0", "input": "plain"},
                                    {"format": "q8_0", "input": "geglu"}]


@pytest.mark.parametrize("axis,message", [
    ({"values": ["a", "b"], "in_name": {"a": ""}},
     r"field 'axes.input.in_name': must map each of \['a', 'b'\] to the text the artifact name writes for it"),
    ({"values": ["a", "b"], "in_name": {"a": "_x", "b": "_x"}},
     r"field 'axes.input.in_name': two values write the same text .* so artifact names would collide"),
    ({"values": ["a", "b"]}, r"field 'axes.input': a mapping axis with 'values' takes 'values' and 'in_name'"),
    ({"values": [], "in_name": {}}, r"field 'axes.input.values': must be a non-empty list of strings"),
])
def test_bad_in_name_axes_are_errors(axis, message):
    with pytest.raises(SpecError, match=message):
        spec(name="t{input}", axes={"input": axis})


def test_bindings_with_when_follow_the_variant():
    s = spec(name="t_{mode}", axes={"mode": ["plain", "add"]},
             bindings=[{"name": "x", "access": "read"}, {"name": "r", "access": "read", "when": "mode == 'add'"},
                       {"name": "y", "access": "write"}])
    plain, add = expand(s)
    assert [b.name for b in plain.bindings] == ["x", "y"]
    assert [b.name for b in add.bindings] == ["x", "r", "y"]


def test_tuning_overrides_replace_param_defaults_and_mark_the_name():
    s = spec(name="t_{mode}", axes={"mode": ["a", "b"]}, params={"wg_size": 64}, constraints=["wg_size <= 256"])
    default = expand(s)
    tuned = expand(s, overrides={"wg_size": 128}, tuning_key="h200")
    assert [dict(v.values) for v in default] == [{"mode": "a", "wg_size": 64}, {"mode": "b", "wg_size": 64}]
    assert names(tuned) == ["t_a@h200", "t_b@h200"]
    assert [v.values["wg_size"] for v in tuned] == [128, 128]
    assert expand(s, overrides={"wg_size": 512}, tuning_key="x") == []   # the constraints still apply


def test_plan_includes_tuned_variants_next_to_the_defaults(project):
    from gemforge.gen.build import load_tuning, plan
    project.write("configs/tuning/dev.yaml", "entries:\n  scale:\n    scale_add: {wg_size: 128}\n")
    specs = project.specs()
    got = plan(specs, model_configs(project.configs / "models"), project.glsl, "cc",
               load_tuning(project.configs / "tuning", specs))
    assert [(p.name, p.variant.values["wg_size"]) for p in got if p.variant.spec.op == "scale"] == \
        [("scale_plain", 64), ("scale_add", 64), ("scale_add@dev", 128)]
    assert "local_size_x = 128" in next(p.source for p in got if p.name == "scale_add@dev")


def test_artifact_name_collision_is_an_error(project):
    from gemforge.gen.build import plan
    from .conftest import SCALE_YAML
    project.write("configs/ops/scale2.yaml", SCALE_YAML.replace("op: scale", "op: scale2")
                  .replace("mode: [plain, add]", "mode: [add]"))
    with pytest.raises(SpecError, match=r"two variants share the artifact name\(s\) \['scale_add'\]"):
        plan(project.specs(), model_configs(project.configs / "models"), project.glsl, "cc")
